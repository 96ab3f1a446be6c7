//! Liveness and readiness for orchestrators.

use super::{resource, AppState};
use actix_web::{web, HttpResponse, ResponseError};
use serde_json::json;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz))).service(resource("/readyz").route(web::get().to(readyz)));
}

/// The process answers HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Every model is loaded and warm (the port opens only then) and no shutdown has begun.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let models: Vec<String> = state.registry.models().iter().map(|m| m.name.clone()).collect();
    if state.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready", "models": models}))
    } else {
        super::errors::ApiError::Draining.error_response()
    }
}
