//! KServe / Open Inference Protocol V2 over REST, with Triton's binary tensor data extension:
//! FP32 `input` [N,3,32,32] (already normalised) → FP32 `logits` [N,classes].
//!
//! Binary extension: when the request carries `Inference-Header-Content-Length: L`, the first
//! L bytes of the body are the JSON header and the rest holds the tensors whose
//! `parameters.binary_data_size` says how many bytes are theirs (little-endian, in input
//! order). Outputs asked for with `binary_data: true` (or the request parameter
//! `binary_data_output: true`) come back the same way.

use super::body::read_limited;
use super::errors::ApiError;
use super::{resource, AppState};
use crate::registry::ServedModel;
use crate::tensor;
use crate::{IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub const HEADER_LENGTH: &str = "Inference-Header-Content-Length";
/// The one version every model has.
pub const VERSION: &str = crate::registry::MODEL_VERSION;
/// The Triton protocol extensions served (REST and gRPC alike).
pub const EXTENSIONS: [&str; 3] = ["binary_tensor_data", "statistics", "model_repository"];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v2").route(web::get().to(server_metadata)))
        .service(resource("/v2/health/live").route(web::get().to(live)))
        .service(resource("/v2/health/ready").route(web::get().to(ready)))
        .service(resource("/v2/models/{name}").route(web::get().to(model_metadata)))
        .service(resource("/v2/models/{name}/versions/{version}").route(web::get().to(model_metadata)))
        .service(resource("/v2/models/{name}/ready").route(web::get().to(model_ready)))
        .service(resource("/v2/models/{name}/versions/{version}/ready").route(web::get().to(model_ready)))
        .service(resource("/v2/models/{name}/infer").route(web::post().to(infer)))
        .service(resource("/v2/models/{name}/versions/{version}/infer").route(web::post().to(infer)));
}

#[derive(Deserialize)]
struct ModelPath {
    name: String,
    version: Option<String>,
}

fn lookup(state: &AppState, path: &ModelPath) -> Result<Arc<ServedModel>, ApiError> {
    state.model_at(&path.name, path.version.as_deref().unwrap_or(""))
}

async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "cifar-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().finish()
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if state.is_ready() {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::ServiceUnavailable().finish()
    }
}

async fn model_metadata(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    let model = lookup(&state, &path)?;
    let input_shape: Vec<i64> = [-1].into_iter().chain(IMAGE_SHAPE.map(|d| d as i64)).collect();
    Ok(HttpResponse::Ok().json(json!({
        "name": model.name,
        "versions": [VERSION],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": input_shape}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, model.classes().len()]}],
        // The protocol's extension point: the arithmetic inside, whatever the FP32 interface.
        "parameters": {"precision": model.meta.precision},
    })))
}

async fn model_ready(state: web::Data<AppState>, path: web::Path<ModelPath>) -> Result<HttpResponse, ApiError> {
    lookup(&state, &path)?;
    Ok(if state.is_ready() { HttpResponse::Ok().finish() } else { HttpResponse::ServiceUnavailable().finish() })
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RequestInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(Deserialize)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

async fn infer(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let model = lookup(&state, &path)?;
    let body = read_limited(&req, payload, state.max_body).await?;
    let (head, binary) = split_body(&req, &body)?;
    let request: InferRequest =
        serde_json::from_slice(head).map_err(|e| ApiError::BadRequest(format!("the inference request is not valid V2 JSON: {e}")))?;
    let binary_output = wants_binary_output(&request)?;
    let (data, n) = input_tensor(&request, binary)?;
    let logits: Vec<f32> = model.batcher().submit(data)?.wait().await?.concat();
    state.metrics.images.with_label_values(&[&model.name]).inc_by(n as u64);
    Ok(respond(&model, request.id, n, logits, binary_output))
}

/// The JSON header and the binary section (empty without the extension).
fn split_body<'a>(req: &HttpRequest, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    let Some(value) = req.headers().get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let len = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("{HEADER_LENGTH} must be a byte count")))?;
    if len > body.len() {
        return Err(ApiError::BadRequest(format!("{HEADER_LENGTH} is {len}, but the body holds only {} bytes", body.len())));
    }
    Ok(body.split_at(len))
}

/// The one input, checked against the model's signature, as floats; and its batch size.
fn input_tensor(request: &InferRequest, binary: &[u8]) -> Result<(Vec<f32>, usize), ApiError> {
    let input = request.inputs.first();
    let n = tensor::check_input(
        request.inputs.len(),
        input.map_or("", |i| &i.name),
        input.map_or("", |i| &i.datatype),
        input.map_or(&[], |i| &i.shape),
    )?;
    let input = input.expect("check_input saw exactly one input");
    let data = match input.parameters.get("binary_data_size") {
        Some(size) => {
            if input.data.is_some() {
                return Err(ApiError::BadTensor("input has both `data` and `binary_data_size`".into()));
            }
            let size = size.as_u64().ok_or_else(|| ApiError::BadTensor("binary_data_size must be a byte count".into()))?;
            let expected = tensor::elements(n) as u64 * 4;
            if size != expected {
                return Err(ApiError::BadTensor(format!(
                    "binary_data_size is {size} bytes; shape {:?} of FP32 needs {expected}",
                    input.shape
                )));
            }
            tensor::f32_from_le(binary, n, &input.shape, "the binary section after the JSON header")?
        }
        None => {
            if !binary.is_empty() {
                return Err(ApiError::BadTensor(format!("{} bytes of binary data but no input declares binary_data_size", binary.len())));
            }
            let data = input.data.as_ref().ok_or_else(|| ApiError::BadTensor("input has no `data` and no `binary_data_size`".into()))?;
            // The declared shape is not trusted for the allocation; the body bounds the data.
            let mut flat = Vec::with_capacity(tensor::elements(n).min(1 << 20));
            flatten(data, &mut flat)?;
            tensor::check_count(flat.len(), n, &input.shape)?;
            flat
        }
    };
    tensor::check_finite(&data)?;
    Ok((data, n))
}

/// Row-major values of a flat or nested JSON array.
fn flatten(value: &Value, out: &mut Vec<f32>) -> Result<(), ApiError> {
    match value {
        Value::Number(x) => out.push(x.as_f64().unwrap_or(f64::NAN) as f32),
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out))?,
        other => return Err(ApiError::BadTensor(format!("FP32 data must be numbers, found {other}"))),
    }
    Ok(())
}

fn flag(params: &Map<String, Value>, key: &str) -> Option<bool> {
    params.get(key).and_then(Value::as_bool)
}

/// Whether `logits` goes back as binary data; unknown outputs and extensions are refused.
fn wants_binary_output(request: &InferRequest) -> Result<bool, ApiError> {
    let default = flag(&request.parameters, "binary_data_output").unwrap_or(false);
    let Some(outputs) = &request.outputs else { return Ok(default) };
    let mut binary = default;
    for output in outputs {
        tensor::check_output(&output.name, output.parameters.get("classification").map(|c| c.as_i64().unwrap_or(1)))?;
        binary = flag(&output.parameters, "binary_data").unwrap_or(default);
    }
    Ok(binary)
}

fn respond(model: &ServedModel, id: Option<String>, n: usize, logits: Vec<f32>, binary: bool) -> HttpResponse {
    let shape = tensor::output_shape(n, model.classes().len());
    let mut output = json!({"name": OUTPUT_NAME, "datatype": tensor::DATATYPE, "shape": shape});
    if binary {
        output["parameters"] = json!({"binary_data_size": logits.len() * 4});
    } else {
        output["data"] = json!(logits);
    }
    let mut head = json!({"model_name": model.name, "model_version": VERSION, "outputs": [output]});
    if let Some(id) = id {
        head["id"] = json!(id);
    }
    if !binary {
        return HttpResponse::Ok().json(head);
    }
    let mut body = head.to_string().into_bytes();
    let head_len = body.len();
    body.extend(logits.iter().flat_map(|v| v.to_le_bytes()));
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((HEADER_LENGTH, head_len.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IMAGE_LEN;

    fn request(json: Value) -> InferRequest {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn json_tensors_flat_or_nested() {
        let flat: Vec<f32> = (0..IMAGE_LEN).map(|i| i as f32).collect();
        let r = request(json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": flat}]}));
        assert_eq!(input_tensor(&r, &[]).unwrap().0, flat);
        let nested: Vec<Vec<f32>> = flat.chunks(32).map(<[f32]>::to_vec).collect();
        let r = request(json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [nested]}]}));
        assert_eq!(input_tensor(&r, &[]).unwrap().0, flat);
    }

    #[test]
    fn binary_tensors_are_little_endian() {
        let values: Vec<f32> = (0..2 * IMAGE_LEN).map(|i| i as f32 * 0.5).collect();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let r = request(json!({"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32",
            "parameters": {"binary_data_size": bytes.len()}}]}));
        let (data, n) = input_tensor(&r, &bytes).unwrap();
        assert_eq!((data, n), (values, 2));
        // One byte short or long.
        assert!(input_tensor(&r, &bytes[1..]).is_err());
    }

    #[test]
    fn wrong_tensors_are_named() {
        let data = vec![0f32; IMAGE_LEN];
        let cases = [
            (json!({"name": "input", "shape": [1, 3, 32, 31], "datatype": "FP32", "data": data}), "shape"),
            (json!({"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP64", "data": data}), "FP64"),
            (json!({"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32", "data": data}), "6144"),
            (json!({"name": "x", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": data}), "unknown input"),
            (json!({"name": "input", "shape": [0, 3, 32, 32], "datatype": "FP32", "data": []}), "N ≥ 1"),
            (json!({"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": ["a"]}), "numbers"),
            (json!({"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "parameters": {"binary_data_size": 12}}), "needs 12288"),
        ];
        for (input, needle) in cases {
            let err = input_tensor(&request(json!({"inputs": [input]})), &[]).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn binary_output_choice() {
        let base = json!({"inputs": []});
        assert!(!wants_binary_output(&request(base.clone())).unwrap());
        let mut r = base.clone();
        r["parameters"] = json!({"binary_data_output": true});
        assert!(wants_binary_output(&request(r)).unwrap());
        let mut r = base.clone();
        r["outputs"] = json!([{"name": "logits", "parameters": {"binary_data": true}}]);
        assert!(wants_binary_output(&request(r)).unwrap());
        let mut r = base;
        r["outputs"] = json!([{"name": "probs"}]);
        assert!(wants_binary_output(&request(r)).is_err());
    }
}
