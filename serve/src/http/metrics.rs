//! `GET /metrics` and the middleware that counts and times every request.

use super::{resource, AppState};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use std::time::Instant;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(metrics)));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.render() {
        Ok(text) => HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text),
        Err(e) => super::errors::ApiError::Internal(format!("rendering metrics: {e}")).error_response(),
    }
}

/// Labels are the route pattern (not the path, which would let clients create series at will)
/// and a model name only when it names a loaded model.
pub async fn record(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let endpoint = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
        let model = model_label(&state, res.request(), &endpoint);
        let status = res.status().as_u16().to_string();
        state.metrics.requests.with_label_values(&[model.as_str(), endpoint.as_str(), status.as_str()]).inc();
        state.metrics.request_seconds.with_label_values(&[model.as_str(), endpoint.as_str()]).observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

fn model_label(state: &AppState, req: &HttpRequest, endpoint: &str) -> String {
    match req.match_info().get("name") {
        Some(name) if !matches!(state.registry.lookup(name), Err(crate::registry::Missing::Unknown)) => name.to_string(),
        Some(_) => "unknown".into(),
        None if endpoint == "/v1/classify" => state.registry.default_name().to_string(),
        None => String::new(),
    }
}
