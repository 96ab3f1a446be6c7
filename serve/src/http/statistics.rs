//! Triton's statistics extension: `GET /v2/models/stats`, `/v2/models/{name}/stats` and
//! `/v2/models/{name}/versions/1/stats` (see [`crate::stats`] for what is counted).

use super::errors::ApiError;
use super::v2::VERSION;
use super::{resource, AppState};
use actix_web::{web, HttpResponse};
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v2/models/stats").route(web::get().to(all)))
        .service(resource("/v2/models/{name}/stats").route(web::get().to(one)))
        .service(resource("/v2/models/{name}/versions/{version}/stats").route(web::get().to(one_version)));
}

async fn all(state: web::Data<AppState>) -> HttpResponse {
    let stats: Vec<_> = state.registry.models().iter().map(|m| m.batcher().stats().snapshot(&m.name, VERSION)).collect();
    HttpResponse::Ok().json(json!({ "model_stats": stats }))
}

async fn one(state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    stats_of(&state, &name, "")
}

async fn one_version(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (name, version) = path.into_inner();
    stats_of(&state, &name, &version)
}

fn stats_of(state: &AppState, name: &str, version: &str) -> Result<HttpResponse, ApiError> {
    let model = state.model_at(name, version)?;
    Ok(HttpResponse::Ok().json(json!({ "model_stats": [model.batcher().stats().snapshot(&model.name, VERSION)] })))
}
