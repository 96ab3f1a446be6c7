//! Prometheus collectors, all named `cifar_serve_*`, in a registry of the server's own (not
//! the process-global default one, so tests and embedders can run several servers).

use prometheus::{exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub const NAMESPACE: &str = "cifar_serve";

pub struct Metrics {
    pub registry: Registry,
    /// Requests by model, endpoint (route pattern) and status code.
    pub requests: IntCounterVec,
    /// Time from the request's arrival to its response, by model and endpoint.
    pub request_seconds: HistogramVec,
    /// Time an image waits in its model's queue before its batch starts.
    pub queue_seconds: HistogramVec,
    /// Images per ONNX Runtime call.
    pub batch_size: HistogramVec,
    /// Duration of one ONNX Runtime call.
    pub inference_seconds: HistogramVec,
    /// Images admitted and not yet handed to ONNX Runtime.
    pub queue_depth: IntGaugeVec,
    /// Images classified, by model.
    pub images: IntCounterVec,
    /// 1 while the server accepts work, 0 while it drains.
    pub ready: IntGauge,
    /// Model loads and reloads (start-up, the repository API, --watch), by model and outcome.
    pub model_loads: IntCounterVec,
    /// gRPC calls by model, method and status code.
    pub grpc_requests: IntCounterVec,
}

/// The collectors of one model, resolved once for the batcher's hot loop.
#[derive(Clone)]
pub struct ModelMetrics {
    pub queue_seconds: Histogram,
    pub batch_size: Histogram,
    pub inference_seconds: Histogram,
    pub queue_depth: IntGauge,
    /// Triton-style statistics (`/v2/models/NAME/stats`), kept beside the Prometheus series.
    pub stats: std::sync::Arc<crate::stats::ModelStats>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let hopts = |name: &str, help: &str, buckets: Vec<f64>| HistogramOpts::new(name, help).namespace(NAMESPACE).buckets(buckets);
        // 50 µs … ~6.5 s
        let seconds = exponential_buckets(50e-6, 2.0, 18)?;
        let batch: Vec<f64> = (0..11).map(|i| (1u32 << i) as f64).collect(); // 1 … 1024
        let m = Self {
            requests: IntCounterVec::new(opts("requests_total", "HTTP requests by model, endpoint and status"), &["model", "endpoint", "status"])?,
            request_seconds: HistogramVec::new(
                hopts("request_duration_seconds", "Request latency (HTTP, and gRPC with endpoint `grpc METHOD`), arrival to response", seconds.clone()),
                &["model", "endpoint"],
            )?,
            queue_seconds: HistogramVec::new(hopts("queue_time_seconds", "Time an image waits for its batch", seconds.clone()), &["model"])?,
            batch_size: HistogramVec::new(hopts("batch_size", "Images per ONNX Runtime call", batch), &["model"])?,
            inference_seconds: HistogramVec::new(hopts("inference_duration_seconds", "Duration of one ONNX Runtime call", seconds), &["model"])?,
            queue_depth: IntGaugeVec::new(opts("queue_depth", "Images admitted and not yet running"), &["model"])?,
            images: IntCounterVec::new(opts("images_total", "Images classified"), &["model"])?,
            ready: IntGauge::with_opts(opts("ready", "1 while accepting work, 0 while starting or draining"))?,
            model_loads: IntCounterVec::new(opts("model_loads_total", "Model loads and reloads by outcome (ok, failed)"), &["model", "outcome"])?,
            grpc_requests: IntCounterVec::new(opts("grpc_requests_total", "gRPC calls by model, method and status code"), &["model", "method", "code"])?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.request_seconds.clone()))?;
        m.registry.register(Box::new(m.queue_seconds.clone()))?;
        m.registry.register(Box::new(m.batch_size.clone()))?;
        m.registry.register(Box::new(m.inference_seconds.clone()))?;
        m.registry.register(Box::new(m.queue_depth.clone()))?;
        m.registry.register(Box::new(m.images.clone()))?;
        m.registry.register(Box::new(m.ready.clone()))?;
        m.registry.register(Box::new(m.model_loads.clone()))?;
        m.registry.register(Box::new(m.grpc_requests.clone()))?;
        Ok(m)
    }

    pub fn for_model(&self, model: &str) -> ModelMetrics {
        ModelMetrics {
            queue_seconds: self.queue_seconds.with_label_values(&[model]),
            batch_size: self.batch_size.with_label_values(&[model]),
            inference_seconds: self.inference_seconds.with_label_values(&[model]),
            queue_depth: self.queue_depth.with_label_values(&[model]),
            stats: Default::default(),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}
