//! `POST /v1/models/{name}/explain?class=top1|ID&patch=P&stride=S&format=json|png`: an
//! occlusion-sensitivity map ([`crate::explain`]) of one image. The occluded copies go through
//! the model's batcher as one request (one ONNX Runtime call when they fit `--max-batch`),
//! beside the unoccluded image, and count in the metrics like any other inference.

use super::body::{images, read_limited};
use super::errors::ApiError;
use super::{resource, AppState};
use crate::explain::{Occlusion, SensitivityMap};
use crate::predict::softmax;
use crate::preprocess::{decode, normalise, to_32x32};
use crate::registry::ServedModel;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

pub const DEFAULT_PATCH: usize = 4;
pub const DEFAULT_STRIDE: usize = 4;
/// The PNG shows the 32×32 input this many times larger.
pub const PNG_SCALE: u32 = 8;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v1/models/{name}/explain").route(web::post().to(explain)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    class: Option<String>,
    patch: Option<usize>,
    stride: Option<usize>,
    format: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    Png,
}

/// What the query asks for, checked against the model and the server's batch limit.
struct Plan {
    occlusion: Occlusion,
    /// `None`: the unoccluded image's most probable class.
    class: Option<usize>,
    format: Format,
}

fn plan(query: &ExplainQuery, classes: usize, max_batch: usize) -> Result<Plan, ApiError> {
    let bad = ApiError::BadRequest;
    let occlusion = Occlusion::new(query.patch.unwrap_or(DEFAULT_PATCH), query.stride.unwrap_or(DEFAULT_STRIDE)).map_err(bad)?;
    if occlusion.copies() > max_batch {
        return Err(bad(format!(
            "patch {} at stride {} makes {} occluded copies; this server runs at most {max_batch} per request (--max-batch): use a larger stride or patch",
            occlusion.patch,
            occlusion.stride,
            occlusion.copies()
        )));
    }
    let class = match query.class.as_deref().unwrap_or("top1") {
        "top1" => None,
        id => match id.parse::<usize>() {
            Ok(id) if id < classes => Some(id),
            _ => return Err(bad(format!("class must be `top1` or a class id from 0 to {}, got `{id}`", classes - 1))),
        },
    };
    let format = match query.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "png" => Format::Png,
        other => return Err(bad(format!("format must be `json` or `png`, got `{other}`"))),
    };
    Ok(Plan { occlusion, class, format })
}

#[derive(Serialize)]
struct ExplainResponse<'a> {
    model: &'a str,
    class_id: usize,
    label: &'a str,
    /// The class's probability for the unoccluded image.
    probability: f32,
    patch: usize,
    stride: usize,
    rows: usize,
    cols: usize,
    /// Occluded images run (rows × cols), besides the unoccluded one.
    copies: usize,
    /// `grid[r][c]`: the probability's drop when the patch at (r·stride, c·stride) (top-left
    /// pixel, y then x) is filled with the image's mean colour.
    grid: Vec<Vec<f32>>,
    /// Cell with the largest drop, `[row, col]`.
    hottest: [usize; 2],
    latency_ms: f64,
}

async fn explain(
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
    query: web::Query<ExplainQuery>,
) -> Result<HttpResponse, ApiError> {
    let model = state.model(&name)?;
    let plan = plan(&query, model.classes().len(), model.batcher().max_batch())?;
    let body = read_limited(&req, payload, state.max_body).await?;
    let started = Instant::now();
    let mut files = images(&req, body).await?;
    if files.len() != 1 {
        return Err(ApiError::BadRequest(format!("explain takes one image, got {}", files.len())));
    }
    let copies = plan.occlusion.copies();
    model.batcher().check_room(copies + 1)?;
    let file = files.remove(0);
    let seen = web::block(move || decode(&file).map(|image| to_32x32(&image).into_owned()))
        .await
        .map_err(|e| ApiError::Internal(format!("image decoding worker: {e}")))?
        .map_err(|e| ApiError::image(0, 1, e))?;
    let (class, map) = occlusion_map(&model, &plan, normalise(&seen, &model.norm)).await?;
    state.metrics.images.with_label_values(&[&model.name]).inc_by(copies as u64 + 1);
    match plan.format {
        Format::Png => png_response(&model, class, &map, &seen),
        Format::Json => Ok(json_response(&model, class, &map, started)),
    }
}

/// The chosen class, its probability and the map. The unoccluded image is queued first, the
/// copies right behind it as one request: an idle batcher runs the first at once and the
/// copies together.
async fn occlusion_map(model: &ServedModel, plan: &Plan, input: Vec<f32>) -> Result<((usize, f32), SensitivityMap), ApiError> {
    let occluded_input = plan.occlusion.occlude(&input);
    let batcher = model.batcher();
    let original = batcher.submit(input)?;
    let occluded = batcher.submit(occluded_input)?;
    let base = softmax(&original.wait().await?[0]);
    let occluded = occluded.wait().await?;
    let class = plan.class.unwrap_or_else(|| argmax(&base));
    let map = SensitivityMap::new(plan.occlusion, base[class], occluded.iter().map(|logits| softmax(logits)[class]));
    Ok(((class, base[class]), map))
}

fn argmax(values: &[f32]) -> usize {
    (0..values.len()).max_by(|&a, &b| values[a].total_cmp(&values[b]).then(b.cmp(&a))).unwrap_or(0)
}

fn json_response(model: &Arc<ServedModel>, (class, probability): (usize, f32), map: &SensitivityMap, started: Instant) -> HttpResponse {
    let (row, col) = map.hottest();
    HttpResponse::Ok().json(ExplainResponse {
        model: &model.name,
        class_id: class,
        label: model.classes().get(class).map(String::as_str).unwrap_or(""),
        probability,
        patch: map.occlusion.patch,
        stride: map.occlusion.stride,
        rows: map.occlusion.cells(),
        cols: map.occlusion.cells(),
        copies: map.occlusion.copies(),
        grid: map.grid(),
        hottest: [row, col],
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

fn png_response(model: &ServedModel, (class, _): (usize, f32), map: &SensitivityMap, seen: &image::RgbImage) -> Result<HttpResponse, ApiError> {
    let mut png = std::io::Cursor::new(Vec::new());
    map.overlay(seen, PNG_SCALE)
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| ApiError::Internal(format!("encoding the PNG: {e}")))?;
    let label = model.classes().get(class).cloned().unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("X-Explain-Class", format!("{class} {label}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(png.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(class: Option<&str>, patch: Option<usize>, stride: Option<usize>, format: Option<&str>) -> ExplainQuery {
        ExplainQuery { class: class.map(str::to_string), patch, stride, format: format.map(str::to_string) }
    }

    #[test]
    fn defaults_and_refusals() {
        let p = plan(&q(None, None, None, None), 10, 64).unwrap();
        assert_eq!((p.occlusion, p.class, p.format), (Occlusion { patch: 4, stride: 4 }, None, Format::Json));
        let p = plan(&q(Some("9"), Some(8), Some(2), Some("png")), 10, 256).unwrap();
        assert_eq!((p.occlusion.copies(), p.class, p.format), (13 * 13, Some(9), Format::Png));
        for (query, max_batch) in [
            (q(Some("10"), None, None, None), 64),
            (q(Some("cat"), None, None, None), 64),
            (q(None, Some(1), None, None), 64),
            (q(None, Some(17), Some(4), None), 64),
            (q(None, Some(4), Some(5), None), 64),
            (q(None, Some(4), Some(0), None), 64),
            (q(None, None, None, Some("svg")), 64),
            (q(None, None, None, None), 63), // 64 copies
        ] {
            let err = plan(&query, 10, max_batch).err().expect("refused");
            assert_eq!(err.status(), 400, "{err}");
        }
    }
}
