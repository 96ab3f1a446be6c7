//! The project's own REST API: classify images, list models.

use super::body::{images, read_limited};
use super::errors::ApiError;
use super::{resource, AppState};
use crate::predict::{top_k, Prediction};
use crate::preprocess::{header_pixels, preprocess_into, Normalisation};
use crate::bench::report::schema::SeedPublished;
use crate::registry::ServedModel;
use crate::{IMAGE_LEN, IMAGE_SHAPE};
use cifar_models::metadata::{ModelFacts, Precision, Quantization};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Predictions per image unless `top_k` says otherwise.
pub const DEFAULT_TOP_K: usize = 5;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/classify").route(web::post().to(classify_default)))
        .service(resource("/v1/models/{name}/classify").route(web::post().to(classify_named)))
        .service(resource("/v1/models").route(web::get().to(list_models)))
        .service(resource("/v1/models/{name}").route(web::get().to(model_info)));
}

#[derive(Deserialize)]
pub struct ClassifyQuery {
    top_k: Option<usize>,
}

#[derive(Serialize)]
struct ImageResult {
    predictions: Vec<Prediction>,
}

#[derive(Serialize)]
struct ClassifyResponse<'a> {
    model: &'a str,
    /// Server-side time from the body's arrival to the answer.
    latency_ms: f64,
    /// One entry per image, in request order.
    results: Vec<ImageResult>,
}

async fn classify_default(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<ClassifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let model = state.default_model()?;
    classify(state, model, req, payload, query.top_k).await
}

async fn classify_named(
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<ClassifyQuery>,
) -> Result<HttpResponse, ApiError> {
    let model = state.model(&name)?;
    classify(state, model, req, payload, query.top_k).await
}

async fn classify(
    state: web::Data<AppState>,
    model: Arc<ServedModel>,
    req: HttpRequest,
    payload: web::Payload,
    k: Option<usize>,
) -> Result<HttpResponse, ApiError> {
    let k = match k.unwrap_or(DEFAULT_TOP_K) {
        0 => return Err(ApiError::BadRequest("top_k must be at least 1".into())),
        k => k.min(model.classes().len()),
    };
    let body = read_limited(&req, payload, state.max_body).await?;
    let started = Instant::now();
    let files = images(&req, body).await?;
    let batcher = model.batcher();
    // Refuse before decoding when the images cannot be admitted: decoding is the costly part.
    batcher.check_room(files.len())?;
    let count = files.len();
    let inputs = decode_all(files, model.norm).await?;
    let logits = batcher.submit(inputs)?.wait().await?;
    state.metrics.images.with_label_values(&[&model.name]).inc_by(count as u64);
    let results = logits.iter().map(|l| ImageResult { predictions: top_k(l, model.classes(), k) }).collect();
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    Ok(HttpResponse::Ok().json(ClassifyResponse { model: &model.name, latency_ms, results }))
}

/// Images up to this many pixels in all (well under a millisecond of decoding) are decoded on
/// the HTTP worker itself, sparing the two thread hand-offs of the blocking pool on the path
/// of every small request.
const INLINE_DECODE_PIXELS: u64 = 128 * 128;

/// The request's images as one contiguous input (what its batch job holds). Larger images go
/// to the blocking pool: decoding them is CPU work of unbounded duration that would stall
/// every connection of the worker.
async fn decode_all(files: Vec<Bytes>, norm: Normalisation) -> Result<Vec<f32>, ApiError> {
    let count = files.len();
    let inline = files_pixels(&files).is_some_and(|p| p <= INLINE_DECODE_PIXELS);
    let decode = move || {
        let mut input = vec![0f32; count * IMAGE_LEN];
        for (i, (file, out)) in files.iter().zip(input.chunks_exact_mut(IMAGE_LEN)).enumerate() {
            preprocess_into(file, &norm, out).map_err(|e| ApiError::image(i, count, e))?;
        }
        Ok(input)
    };
    if inline {
        return decode();
    }
    web::block(decode).await.map_err(|e| ApiError::Internal(format!("image decoding worker: {e}")))?
}

/// Pixels all images claim in their headers; `None` when a header cannot be read.
fn files_pixels(files: &[Bytes]) -> Option<u64> {
    files.iter().try_fold(0u64, |sum, f| Some(sum.saturating_add(header_pixels(f)?)))
}

/// What `GET /v1/models[/{name}]` says about a model.
#[derive(Serialize)]
pub struct ModelInfo<'a> {
    pub name: &'a str,
    /// The architecture the file was exported from.
    pub architecture: &'a str,
    /// `f32`, or `int8` for a file written by `train quantize`.
    pub precision: Precision,
    pub file: String,
    pub default: bool,
    #[serde(flatten)]
    pub facts: ModelFacts,
    #[serde(rename = "val_acc")]
    pub val_acc_frac: Option<f64>,
    #[serde(rename = "test_acc")]
    pub test_acc_frac: Option<f64>,
    pub epochs: Option<u64>,
    pub classes: &'a [String],
    pub input: TensorInfo,
    pub output: TensorInfo,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub device: String,
    pub threads: usize,
    pub source_commit: Option<&'a str>,
    /// Test-time augmentation inside the graph (`flip`, `flip-translate`); `macs_per_image`
    /// counts every view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta: Option<&'a str>,
    /// int8 files: how they were quantized, and the f32 source's test accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<&'a Quantization>,
    #[serde(rename = "f32_test_acc", skip_serializing_if = "Option::is_none")]
    pub f32_test_acc_frac: Option<f64>,
    /// The seed study's published figures for the architecture (null for one it has not).
    pub seed: Option<SeedPublished>,
}

#[derive(Serialize)]
pub struct TensorInfo {
    pub name: &'static str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

impl<'a> ModelInfo<'a> {
    pub fn new(model: &'a ServedModel, default: bool) -> Self {
        let m = &model.meta;
        Self {
            name: &model.name,
            architecture: &m.model,
            precision: m.precision,
            file: model.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            default,
            facts: m.facts,
            val_acc_frac: m.val_acc_frac,
            test_acc_frac: m.test_acc_frac,
            epochs: m.epochs,
            classes: &m.classes,
            input: TensorInfo { name: crate::INPUT_NAME, datatype: "FP32", shape: [-1].into_iter().chain(IMAGE_SHAPE.map(|d| d as i64)).collect() },
            output: TensorInfo { name: crate::OUTPUT_NAME, datatype: "FP32", shape: vec![-1, m.classes.len() as i64] },
            mean: m.mean,
            std: m.std,
            device: model.device.to_string(),
            threads: model.threads,
            source_commit: m.source_commit.as_deref(),
            tta: m.tta.as_deref(),
            quantization: m.quantization.as_ref(),
            f32_test_acc_frac: m.f32_test_acc_frac,
            seed: SeedPublished::for_architecture(&m.model, &m.facts),
        }
    }
}

async fn list_models(state: web::Data<AppState>) -> HttpResponse {
    let default = state.registry.default_name();
    let loaded = state.registry.models();
    let models: Vec<ModelInfo> = loaded.iter().map(|m| ModelInfo::new(m, m.name == default)).collect();
    HttpResponse::Ok().json(serde_json::json!({ "default": default, "models": models }))
}

async fn model_info(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let model = state.model(&name)?;
    Ok(HttpResponse::Ok().json(ModelInfo::new(&model, model.name == state.registry.default_name())))
}
