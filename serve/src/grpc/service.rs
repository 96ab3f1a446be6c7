//! The RPCs. Each checks the key (but the two server health calls, as over REST), does what
//! its REST twin does, and is counted: `grpc_requests_total{model,method,code}` and the
//! latency histogram with endpoint `grpc METHOD`.

use super::convert;
use super::proto::grpc_inference_service_server::GrpcInferenceService;
use super::proto::*;
use crate::http::errors::ApiError;
use crate::http::{repository, v2, AppState};
use crate::registry::{Missing, ServedModel, MODEL_VERSION};
use actix_web::web;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

pub struct Inference {
    state: web::Data<AppState>,
}

type Answer<T> = Result<Response<T>, Status>;

impl Inference {
    pub fn new(state: web::Data<AppState>) -> Self {
        Self { state }
    }

    /// `authorization: Bearer KEY` metadata, when the server has keys.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        match &self.state.keys {
            Some(keys) => keys.check(request.metadata().get("authorization").map(|v| v.as_bytes())).map_err(ApiError::Unauthorized),
            None => Ok(()),
        }
    }

    /// Counts and times the call, and turns its error into a status.
    fn answer<T>(&self, method: &str, model: &str, started: Instant, result: Result<T, ApiError>) -> Answer<T> {
        let metrics = &self.state.metrics;
        let code = result.as_ref().map_or_else(|e| super::code(e.kind()), |_| tonic::Code::Ok);
        metrics.grpc_requests.with_label_values(&[model, method, &format!("{code:?}")]).inc();
        metrics.request_seconds.with_label_values(&[model, &format!("grpc {method}")]).observe(started.elapsed().as_secs_f64());
        result.map(Response::new).map_err(|err| {
            if err.status().is_server_error() {
                tracing::error!("gRPC {method}: {err}");
            } else {
                tracing::debug!("gRPC {method}: {code:?}: {err}");
            }
            super::status(&err)
        })
    }

    /// The model serving under `name` at `version` ("" is the latest, the only one: 1).
    fn model(&self, name: &str, version: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.state.model_at(name, version)
    }

    async fn infer(&self, request: Request<ModelInferRequest>) -> Result<ModelInferResponse, ApiError> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let model = self.model(&request.model_name, &request.model_version)?;
        let (data, n) = convert::input(&request)?;
        convert::check_outputs(&request)?;
        let logits: Vec<f32> = model.batcher().submit(data)?.wait().await?.concat();
        self.state.metrics.images.with_label_values(&[&model.name]).inc_by(n as u64);
        Ok(convert::response(&model.name, request.id, n, model.classes().len(), &logits))
    }

    fn metadata(&self, request: &Request<ModelMetadataRequest>) -> Result<ModelMetadataResponse, ApiError> {
        self.authorize(request)?;
        let model = self.model(&request.get_ref().name, &request.get_ref().version)?;
        let tensor = |name: &str, shape: Vec<i64>| model_metadata_response::TensorMetadata {
            name: name.to_string(),
            datatype: crate::tensor::DATATYPE.to_string(),
            shape,
        };
        let input_shape = [-1].into_iter().chain(crate::IMAGE_SHAPE.map(|d| d as i64)).collect();
        Ok(ModelMetadataResponse {
            name: model.name.clone(),
            versions: vec![MODEL_VERSION.to_string()],
            platform: "onnxruntime_onnx".to_string(),
            inputs: vec![tensor(crate::INPUT_NAME, input_shape)],
            outputs: vec![tensor(crate::OUTPUT_NAME, vec![-1, model.classes().len() as i64])],
        })
    }

    fn model_ready_of(&self, request: &Request<ModelReadyRequest>) -> Result<ModelReadyResponse, ApiError> {
        self.authorize(request)?;
        let r = request.get_ref();
        // Known but unloaded (or failed) is "not ready", as Triton answers; unknown is an error.
        let ready = match self.model(&r.name, &r.version) {
            Ok(_) => self.state.is_ready(),
            Err(ApiError::Unavailable { .. }) => false,
            Err(err) => return Err(err),
        };
        Ok(ModelReadyResponse { ready })
    }

    fn statistics(&self, request: &Request<ModelStatisticsRequest>) -> Result<ModelStatisticsResponse, ApiError> {
        self.authorize(request)?;
        let r = request.get_ref();
        let models = if r.name.is_empty() { self.state.registry.models() } else { vec![self.model(&r.name, &r.version)?] };
        let model_stats = models.iter().map(|m| convert::statistics(m.batcher().stats().snapshot(&m.name, MODEL_VERSION))).collect();
        Ok(ModelStatisticsResponse { model_stats })
    }

    fn index(&self, request: &Request<RepositoryIndexRequest>) -> Result<RepositoryIndexResponse, ApiError> {
        self.authorize(request)?;
        // `ready: false` is proto3's default, so it means "every model", as in Triton.
        let ready = request.get_ref().ready.then_some(true);
        let models = repository::filtered_index(&self.state.registry, ready).into_iter().map(convert::index_entry).collect();
        Ok(RepositoryIndexResponse { models })
    }

    async fn load(&self, request: Request<RepositoryModelLoadRequest>) -> Result<RepositoryModelLoadResponse, ApiError> {
        self.authorize(&request)?;
        let request = request.into_inner();
        repository::check_load_parameters(request.parameters.keys().map(String::as_str))?;
        let registry = self.state.registry.clone();
        let name = request.model_name.clone();
        // Opening and warming up a session takes a while: not on the runtime's threads.
        let result = tokio::task::spawn_blocking(move || registry.load_model(&name))
            .await
            .map_err(|e| ApiError::Internal(format!("the load of `{}` stopped: {e}", request.model_name)))?;
        result.map_err(|err| repository::load_error(request.model_name, err))?;
        Ok(RepositoryModelLoadResponse {})
    }

    fn unload(&self, request: &Request<RepositoryModelUnloadRequest>) -> Result<RepositoryModelUnloadResponse, ApiError> {
        self.authorize(request)?;
        repository::unload_model(&self.state.registry, &request.get_ref().model_name)?;
        Ok(RepositoryModelUnloadResponse {})
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Answer<ServerLiveResponse> {
        self.answer("ServerLive", "", Instant::now(), Ok(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Answer<ServerReadyResponse> {
        self.answer("ServerReady", "", Instant::now(), Ok(ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Answer<ModelReadyResponse> {
        let started = Instant::now();
        let result = self.model_ready_of(&request);
        self.answer("ModelReady", &known(&self.state, &request.get_ref().name), started, result)
    }

    async fn server_metadata(&self, request: Request<ServerMetadataRequest>) -> Answer<ServerMetadataResponse> {
        let started = Instant::now();
        let result = self.authorize(&request).map(|()| ServerMetadataResponse {
            name: "cifar-serve".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: v2::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        });
        self.answer("ServerMetadata", "", started, result)
    }

    async fn model_metadata(&self, request: Request<ModelMetadataRequest>) -> Answer<ModelMetadataResponse> {
        let started = Instant::now();
        let result = self.metadata(&request);
        self.answer("ModelMetadata", &known(&self.state, &request.get_ref().name), started, result)
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Answer<ModelInferResponse> {
        let started = Instant::now();
        let model = known(&self.state, &request.get_ref().model_name);
        let result = self.infer(request).await;
        self.answer("ModelInfer", &model, started, result)
    }

    async fn model_statistics(&self, request: Request<ModelStatisticsRequest>) -> Answer<ModelStatisticsResponse> {
        let started = Instant::now();
        let result = self.statistics(&request);
        self.answer("ModelStatistics", &known(&self.state, &request.get_ref().name), started, result)
    }

    async fn repository_index(&self, request: Request<RepositoryIndexRequest>) -> Answer<RepositoryIndexResponse> {
        let started = Instant::now();
        let result = self.index(&request);
        self.answer("RepositoryIndex", "", started, result)
    }

    async fn repository_model_load(&self, request: Request<RepositoryModelLoadRequest>) -> Answer<RepositoryModelLoadResponse> {
        let started = Instant::now();
        let model = known(&self.state, &request.get_ref().model_name);
        let result = self.load(request).await;
        self.answer("RepositoryModelLoad", &model, started, result)
    }

    async fn repository_model_unload(&self, request: Request<RepositoryModelUnloadRequest>) -> Answer<RepositoryModelUnloadResponse> {
        let started = Instant::now();
        let result = self.unload(&request);
        self.answer("RepositoryModelUnload", &known(&self.state, &request.get_ref().model_name), started, result)
    }
}

/// The model label of a call: the name when the server knows it, else empty, so that
/// clients cannot grow the metrics without bound by inventing names.
fn known(state: &AppState, name: &str) -> String {
    match state.registry.lookup(name) {
        Ok(_) | Err(Missing::Unavailable(_)) => name.to_string(),
        Err(Missing::Unknown) => String::new(),
    }
}
