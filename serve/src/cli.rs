//! Command-line interface of `serve`.

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// `serve --version`: whether this build can use CUDA at all.
const LONG_VERSION: &str = if cfg!(feature = "cuda") {
    concat!(env!("CARGO_PKG_VERSION"), "\nCUDA execution provider: built in (--features cuda)")
} else {
    concat!(env!("CARGO_PKG_VERSION"), "\nCUDA execution provider: not built (CPU only)")
};

/// Serve CIFAR-10 classifiers exported by `train export` over HTTP, with ONNX Runtime.
///
/// Loads every *.onnx file of --models (the model's name is the file stem; its classes and
/// normalisation come from the file's metadata), warms each model up for every batch size it
/// will run, then listens. Requests are batched per model: the model's thread runs whatever is
/// queued as soon as it is free (up to --max-batch images), so an idle model answers at once
/// and images that arrive while a batch runs form the next one. A full queue answers 429 with
/// Retry-After; SIGTERM drains in-flight requests.
///
/// Endpoints: GET / (a page to try it), POST /v1/classify and /v1/models/{name}/classify
/// (raw image, multipart `image` parts, or JSON {"images": [base64…]}; ?top_k=5),
/// GET /v1/models[/{name}], GET /v1/models/{name}/benchmark (in-process latency, one at a
/// time), KServe V2 under /v2 (JSON and binary tensors; Triton's statistics and model
/// repository extensions), GET /metrics, /healthz, /readyz; V2 over gRPC with --grpc-bind.
/// `serve bench` writes benchmark reports (see `serve bench --help`).
///
/// Logs go to stderr (RUST_LOG=debug for more); the bound address is printed on stdout as
/// `listening on http://ADDR`. Exit status: 0 after a clean shutdown; 1 start-up failed
/// (address, models, ONNX Runtime, CUDA); 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "serve", version, long_version = LONG_VERSION, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Log lines on stderr: text for people, json (one object per line) for log collectors.
    #[arg(long, value_name = "FORMAT", env = "SERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Tools beside the server.
#[derive(Debug, Subcommand)]
pub enum Command {
    Bench(BenchArgs),
}

/// Benchmark every model of a folder and write a report: report.md, report.json (schema in the
/// README, "Benchmarks") and SVG charts.
///
/// Each *.onnx is loaded into its own ONNX Runtime session (the server's session options) and
/// timed in process, batch size by batch size: --warmup untimed calls, then --iters timed ones;
/// p50/p95/p99 per call and images/s. The report sets the models' parameter and MAC counts
/// beside the seed's published figures, and describes the machine.
///
/// With --url, a `serve` already running on this machine (loopback addresses only) is also
/// driven over HTTP, per model it serves, in two runs of --duration seconds: one keep-alive
/// client POSTing --image to /v1/models/NAME/classify one request after another (batch-1
/// latency), then --concurrency such clients (throughput). The report sets both beside the
/// in-process figures: the batch-1 overhead in ms and the share of the best in-process
/// images/s that reaches clients.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Folder of *.onnx files written by `train export`.
    #[arg(long, value_name = "DIR", env = "SERVE_MODELS")]
    pub models: PathBuf,

    /// Folder for the report (created if needed; earlier report files are replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Timed calls per batch size and model.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub iters: u32,

    /// Untimed calls per batch size and model before the timed ones.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub warmup: u32,

    /// Batch sizes to time, comma-separated.
    #[arg(long, value_name = "N,N,…", value_delimiter = ',', default_value = "1,8,32,128", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub batch_sizes: Vec<u32>,

    /// ONNX Runtime intra-op threads per session (default: all cores, as `serve`).
    #[arg(long, value_name = "N", env = "SERVE_THREADS", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// When ONNX Runtime's threads busy-wait for work: off, run (only while a call runs), always.
    #[arg(long, value_name = "WHEN", env = "SERVE_ORT_SPIN", value_enum, default_value_t = cifar_serve::ort::Spin::default())]
    pub ort_spin: cifar_serve::ort::Spin,

    /// Execution provider: cpu, cuda or cuda:N (as for `serve`).
    #[arg(long, value_name = "cpu|cuda[:N]", env = "SERVE_DEVICE", default_value = "cpu")]
    pub device: cifar_serve::Device,

    /// With --device cuda: run on the CPU, with a warning, when CUDA cannot be used.
    #[arg(long)]
    pub allow_cpu_fallback: bool,

    /// ONNX Runtime library (default: .ort/cpu/ or .ort/cuda/ as fetched by scripts/setup.sh).
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,

    /// Base URL of a running `serve` to drive over HTTP, e.g. http://127.0.0.1:8080 (loopback
    /// only).
    #[arg(long, value_name = "URL")]
    pub url: Option<cifar_serve::bench::http_load::LoopbackUrl>,

    /// With --url: clients of the throughput run, each with one request in flight (at most 256).
    #[arg(long, value_name = "C", default_value_t = 8, requires = "url", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// With --url: seconds of each run (one client, then --concurrency) per model (0.1 to 300).
    #[arg(long, value_name = "S", default_value = "10", requires = "url", value_parser = seconds)]
    pub duration: Duration,

    /// With --url: the image file every request carries (default: a generated 64×64 PNG).
    #[arg(long, value_name = "FILE", requires = "url")]
    pub image: Option<PathBuf>,

    /// With --url: send the first key of this file (as `serve --api-key-file` reads it) as
    /// `Authorization: Bearer KEY`.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub api_key_file: Option<PathBuf>,
}

fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=300.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a number of seconds from 0.1 to 300")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Folder of *.onnx files written by `train export`.
    #[arg(long, value_name = "DIR", env = "SERVE_MODELS", required = true)]
    pub models: Option<PathBuf>,

    /// Model that POST /v1/classify uses (default: the first name in alphabetical order).
    #[arg(long = "default", value_name = "NAME", env = "SERVE_DEFAULT_MODEL")]
    pub default_model: Option<String>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", env = "SERVE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Execution provider: cpu, cuda or cuda:N. CUDA needs a build with `--features cuda` and
    /// the CUDA build of ONNX Runtime; start-up fails when it cannot be used.
    #[arg(long, value_name = "cpu|cuda[:N]", env = "SERVE_DEVICE", default_value = "cpu")]
    pub device: cifar_serve::Device,

    /// With --device cuda: run on the CPU, with a warning, when CUDA cannot be used.
    #[arg(long, env = "SERVE_ALLOW_CPU_FALLBACK")]
    pub allow_cpu_fallback: bool,

    /// Most images in one ONNX Runtime call.
    #[arg(long, value_name = "N", env = "SERVE_MAX_BATCH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,

    /// Extra wait for a partly filled batch, in microseconds from its oldest request's arrival.
    /// 0 (the default) runs what is queued at once; more trades latency for larger batches.
    #[arg(long, value_name = "µs", env = "SERVE_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,

    /// Largest request body (e.g. 8MiB, 512KiB, 1000000); larger bodies get 413.
    #[arg(long, value_name = "SIZE", env = "SERVE_MAX_BODY", default_value = "8MiB")]
    pub max_body: ByteSize,

    /// Images per model admitted and not yet running; beyond it requests get 429.
    #[arg(long, value_name = "N", env = "SERVE_MAX_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queue: u32,

    /// ONNX Runtime intra-op threads per model (default: all cores).
    #[arg(long, value_name = "N", env = "SERVE_THREADS", value_parser = clap::value_parser!(u32).range(1..))]
    pub threads: Option<u32>,

    /// When ONNX Runtime's threads busy-wait for work: off, run (only while a call runs), always.
    #[arg(long, value_name = "WHEN", env = "SERVE_ORT_SPIN", value_enum, default_value_t = cifar_serve::ort::Spin::default())]
    pub ort_spin: cifar_serve::ort::Spin,

    /// HTTP worker threads (default: all cores); each decodes images on up to as many threads
    /// as there are cores.
    #[arg(long, value_name = "N", env = "SERVE_HTTP_WORKERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub http_workers: Option<u32>,

    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, value_name = "S", env = "SERVE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// ONNX Runtime library (default: .ort/cpu/ or .ort/cuda/ as fetched by scripts/setup.sh).
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,

    /// API keys, one per line (blank and # lines skipped); re-read on SIGHUP. With it, every
    /// route under /v1/ and /v2/ needs `Authorization: Bearer KEY` (401 otherwise), except the
    /// health routes (/healthz, /readyz, /v2/health/*).
    #[arg(long, value_name = "FILE", env = "SERVE_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,

    /// With --api-key-file: the page (/) and /metrics need a key too.
    #[arg(long, env = "SERVE_PROTECT_ALL", requires = "api_key_file")]
    pub protect_all: bool,

    /// A browser origin (scheme://host[:port]) allowed to call the API from its pages;
    /// repeatable (or comma-separated in the variable); `*` allows any.
    #[arg(long, value_name = "ORIGIN", env = "SERVE_CORS_ALLOW_ORIGIN", value_delimiter = ',', value_parser = origin)]
    pub cors_allow_origin: Vec<String>,

    /// Follow the models folder while serving: an added *.onnx file is loaded, a changed one
    /// reloaded (a swap: requests in flight finish on the old session), a removed one
    /// unloaded. A file that fails to load leaves the model before it serving; the repository
    /// index (POST /v2/repository/index) says why. Without it, the folder is read at start-up
    /// and POST /v2/repository/models/NAME/load (or /unload) changes what is served.
    #[arg(long, env = "SERVE_WATCH")]
    pub watch: bool,

    /// With --watch: milliseconds between scans of the folder (50 to 3600000). A file is read
    /// once two scans in a row see it unchanged, so a copy in progress is never loaded half-way.
    #[arg(long, value_name = "MS", env = "SERVE_WATCH_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=3_600_000))]
    pub watch_interval_ms: u64,

    /// Also serve KServe V2 over gRPC (Triton's GRPCInferenceService: health, metadata,
    /// inference, repository, statistics) on HOST:PORT, e.g. 127.0.0.1:8001; port 0 picks a
    /// free port (printed on stdout as `grpc listening on ADDR`). Same models, keys (as
    /// `authorization` metadata), limits and metrics as HTTP. Off by default.
    #[arg(long, value_name = "HOST:PORT", env = "SERVE_GRPC_BIND")]
    pub grpc_bind: Option<String>,
}

fn origin(s: &str) -> Result<String, String> {
    if cifar_serve::server::is_origin(s) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not an origin: scheme://host[:port] (http or https, no path), or *"))
    }
}
