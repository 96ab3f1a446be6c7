//! Triton's model repository extension over REST: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{name}/load` and `.../unload` (what `tritonclient`'s
//! `get_model_repository_index`, `load_model` and `unload_model` call). The repository is the
//! models folder; a load reads `NAME.onnx` from it and swaps it in (see [`crate::registry`]).

use super::body::read_limited;
use super::errors::ApiError;
use super::{resource, AppState};
use crate::registry::{IndexEntry, LoadError, Registry};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v2/repository/index").route(web::post().to(index)))
        .service(resource("/v2/repository/models/{name}/load").route(web::post().to(load)))
        .service(resource("/v2/repository/models/{name}/unload").route(web::post().to(unload)));
}

/// Load and unload bodies are small JSON objects; more is a mistake.
const CONTROL_BODY_LIMIT: usize = 64 * 1024;

#[derive(Deserialize, Default)]
struct IndexRequest {
    /// Only the models that are (or are not) ready.
    #[serde(default)]
    ready: Option<bool>,
}

#[derive(Deserialize, Default)]
struct ControlRequest {
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// A JSON body that may be empty.
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8], what: &str) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the {what} request is not valid JSON: {e}")))
}

/// The index, optionally only ready (or only unavailable) models.
pub fn filtered_index(registry: &Registry, ready: Option<bool>) -> Vec<IndexEntry> {
    registry.index().into_iter().filter(|e| ready.is_none_or(|r| r == (e.state == "READY"))).collect()
}

async fn index(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&req, payload, CONTROL_BODY_LIMIT).await?;
    let request: IndexRequest = optional_json(&body, "repository index")?;
    Ok(HttpResponse::Ok().json(filtered_index(&state.registry, request.ready)))
}

/// Triton lets a load carry a config and model files; this server loads only what the folder
/// holds, so such a request is refused rather than half-honoured.
pub fn check_load_parameters<'a>(mut keys: impl Iterator<Item = &'a str>) -> Result<(), ApiError> {
    match keys.find(|k| *k == "config" || k.starts_with("file:")) {
        Some(key) => Err(ApiError::BadRequest(format!(
            "load parameter `{key}` is not supported: models load only from the server's model folder (copy NAME.onnx there, then load NAME)"
        ))),
        None => Ok(()),
    }
}

/// Loads (or reloads) `name` on a blocking thread: opening and warming up a session takes a
/// while and must not hold an HTTP worker.
async fn load_model(registry: Arc<Registry>, name: String) -> Result<(), ApiError> {
    let result = web::block({
        let name = name.clone();
        move || registry.load_model(&name)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the load of `{name}` stopped: {e}")))?;
    result.map_err(|err| load_error(name, err))
}

/// A failed load in the error table: a name the folder does not hold is not found; a file
/// that does not load is a bad request (the index keeps the reason).
pub fn load_error(name: String, err: LoadError) -> ApiError {
    match err {
        LoadError::NoFile { .. } | LoadError::BadName(_) => ApiError::NotInRepository { name, reason: err.to_string() },
        other => ApiError::LoadFailed { name, reason: other.to_string() },
    }
}

async fn load(state: web::Data<AppState>, name: web::Path<String>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&req, payload, CONTROL_BODY_LIMIT).await?;
    let request: ControlRequest = optional_json(&body, "load")?;
    check_load_parameters(request.parameters.keys().map(String::as_str))?;
    load_model(state.registry.clone(), name.into_inner()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}

async fn unload(state: web::Data<AppState>, name: web::Path<String>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let body = read_limited(&req, payload, CONTROL_BODY_LIMIT).await?;
    // `unload_dependents` has no meaning here (models have no dependents); other keys neither.
    let _: ControlRequest = optional_json(&body, "unload")?;
    unload_model(&state.registry, &name)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({})))
}

pub fn unload_model(registry: &Registry, name: &str) -> Result<(), ApiError> {
    registry
        .unload_model(name, "unloaded by request: POST /v2/repository/models/NAME/load loads it again", false)
        .map_err(|missing| ApiError::missing(name, missing))
}
