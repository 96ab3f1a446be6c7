//! The HTTP layer: shared state, routes, and the app every worker builds.

pub mod access;
pub mod benchmark;
pub mod body;
pub mod errors;
pub mod explain;
pub mod health;
pub mod metrics;
pub mod page;
pub mod repository;
pub mod statistics;
pub mod v1;
pub mod v2;

use crate::metrics::Metrics;
use crate::registry::{Registry, ServedModel};
use actix_web::web;
use errors::ApiError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Set when shutdown begins: readiness turns false while in-flight requests finish.
    pub draining: Arc<AtomicBool>,
    /// One `/benchmark` at a time.
    pub benchmark: benchmark::BenchmarkGate,
    /// `--api-key-file`: the keys every protected route needs (none: all routes open).
    pub keys: Option<Arc<crate::auth::ApiKeys>>,
    /// `--protect-all`: the page and `/metrics` need a key too.
    pub protect_all: bool,
}

impl AppState {
    pub fn model(&self, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.registry.lookup(name).map_err(|missing| ApiError::missing(name, missing))
    }

    /// The model serving under `name` at `version` ("" is the latest; every model has one
    /// version, [`crate::registry::MODEL_VERSION`]), for V2 over REST and gRPC alike.
    pub fn model_at(&self, name: &str, version: &str) -> Result<Arc<ServedModel>, ApiError> {
        let model = self.model(name)?;
        if !version.is_empty() && version != crate::registry::MODEL_VERSION {
            return Err(ApiError::UnknownVersion { model: name.to_string(), version: version.to_string() });
        }
        Ok(model)
    }

    /// The model `/v1/classify` uses.
    pub fn default_model(&self) -> Result<Arc<ServedModel>, ApiError> {
        self.model(self.registry.default_name())
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
    }
}

/// A resource whose other methods answer 405 in the API's JSON shape.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(errors::method_not_allowed))
}

/// Browser clients from these origins may call the API (with their `Authorization` and the
/// V2 binary header); `*` allows any origin.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::HeaderName::from_static("inference-header-content-length"),
            access::REQUEST_ID,
        ])
        .expose_headers([access::REQUEST_ID, actix_web::http::header::HeaderName::from_static("inference-header-content-length")])
        .max_age(3600);
    if origins.iter().any(|o| o == "*") {
        return cors.allow_any_origin();
    }
    origins.iter().fold(cors, |cors, origin| cors.allowed_origin(origin))
}

/// Every route of the server.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(errors::query_error));
    page::configure(cfg);
    health::configure(cfg);
    metrics::configure(cfg);
    v1::configure(cfg);
    explain::configure(cfg);
    benchmark::configure(cfg);
    // Before v2: `/v2/models/stats` would otherwise read as the metadata of a model "stats".
    statistics::configure(cfg);
    repository::configure(cfg);
    v2::configure(cfg);
}
