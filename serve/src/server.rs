//! Start-up and shutdown: bind, load and warm every model, serve, drain on SIGTERM.

use crate::auth::{ApiKeys, KeyFileError};
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::grpc::GrpcServer;
use crate::registry::{watch, LoadError, Registry, RegistryOptions};
use actix_web::{middleware, web, App, HttpServer};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    pub bind: String,
    pub registry: RegistryOptions,
    pub max_body: usize,
    pub http_workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// `--api-key-file`: keys that protected routes need (re-read on SIGHUP).
    pub api_key_file: Option<PathBuf>,
    /// `--protect-all`: the page and `/metrics` need a key too.
    pub protect_all: bool,
    /// `--cors-allow-origin`: browser origins allowed to call the API (`*`: any).
    pub cors_origins: Vec<String>,
    /// `--watch`: how often the models folder is scanned for added, changed and removed files.
    pub watch: Option<Duration>,
    /// `--grpc-bind`: also serve V2 over gRPC on this address.
    pub grpc_bind: Option<String>,
}

/// Where the server listens, once it does.
#[derive(Clone, Copy, Debug)]
pub struct Listening {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
}

impl ServerOptions {
    /// The configuration in words, for the start-up log.
    pub fn describe(&self) -> String {
        let r = &self.registry;
        let default = r.default_model.as_deref().map_or("the first by name".to_string(), |d| format!("`{d}`"));
        let wait = if r.policy.max_delay.is_zero() { "no extra wait".to_string() } else { format!("up to {} µs extra wait", r.policy.max_delay.as_micros()) };
        let keys = match &self.api_key_file {
            Some(file) if self.protect_all => format!("API keys from {} on every route but health", file.display()),
            Some(file) => format!("API keys from {} on /v1 and /v2 (health, page and /metrics open)", file.display()),
            None => "no API keys (every route open)".to_string(),
        };
        let watch = match self.watch {
            Some(every) => format!("the folder watched every {} ms", every.as_millis()),
            None => "the folder read once (POST /v2/repository/models/NAME/load reloads)".to_string(),
        };
        let grpc = self.grpc_bind.as_deref().map_or("no gRPC".to_string(), |addr| format!("gRPC on {addr}"));
        let cors = if self.cors_origins.is_empty() { "no cross-origin access".to_string() } else { format!("cross-origin access for {}", self.cors_origins.join(", ")) };
        format!(
            "models from {} (default: {default}; {watch}); {grpc}; ONNX Runtime on {}, {} intra-op threads, spinning: {}; batches of up to {} images, {wait}, \
             up to {} queued images per model; request bodies up to {} bytes; {} HTTP workers; {keys}; {cors}; {} s to drain on SIGTERM",
            r.dir.display(),
            r.ort.device,
            r.ort.threads,
            r.ort.spin.as_str(),
            r.policy.max_batch,
            r.policy.max_queue,
            self.max_body,
            self.http_workers,
            self.shutdown_timeout.as_secs()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("--grpc-bind {addr}: cannot listen: {source}")]
    GrpcBind { addr: String, source: std::io::Error },
    #[error("cannot start the gRPC server: {0}")]
    Grpc(std::io::Error),
    #[error("cannot start watching the models folder: {0}")]
    Watch(std::io::Error),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    #[error("--cors-allow-origin {0}: an origin is scheme://host[:port] (http or https, no path), or *")]
    Origin(String),
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the server until SIGTERM or SIGINT, then drains: readiness turns false, the listener
/// closes, in-flight requests finish (up to the shutdown timeout), the batchers stop.
/// `on_listening` receives the bound addresses once requests are accepted.
pub async fn run(opts: ServerOptions, on_listening: impl FnOnce(Listening)) -> Result<(), ServeError> {
    // Bind first: a taken port fails in milliseconds, not after loading every model.
    let listener = TcpListener::bind(&opts.bind).map_err(|source| ServeError::Bind { addr: opts.bind.clone(), source })?;
    let grpc_listener = opts
        .grpc_bind
        .as_ref()
        .map(|addr| TcpListener::bind(addr).map_err(|source| ServeError::GrpcBind { addr: addr.clone(), source }))
        .transpose()?;
    let listening = Listening { http: listener.local_addr()?, grpc: grpc_listener.as_ref().map(TcpListener::local_addr).transpose()? };
    // Checked before the models load: a bad flag fails in milliseconds.
    let keys = opts.api_key_file.as_deref().map(ApiKeys::load).transpose()?.map(Arc::new);
    let origins = cors_origins(&opts.cors_origins)?;
    let metrics = Arc::new(Metrics::new()?);
    let registry = Arc::new(Registry::load(&opts.registry, metrics.clone())?);
    let draining = Arc::new(AtomicBool::new(false));
    let state = web::Data::new(AppState {
        registry: registry.clone(),
        metrics: metrics.clone(),
        max_body: opts.max_body,
        draining: draining.clone(),
        benchmark: Default::default(),
        keys: keys.clone(),
        protect_all: opts.protect_all,
    });
    let state_for_grpc = state.clone();
    let server = HttpServer::new(move || {
        // Innermost first: the key check, then metrics (they count 401s too), the request id
        // (every answer carries one), and CORS outermost, so preflights need no key.
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(http::access::require_key))
            .wrap(middleware::from_fn(http::metrics::record))
            .wrap(middleware::from_fn(http::access::request_id))
            .wrap(middleware::Condition::new(!origins.is_empty(), http::cors(&origins)))
            .configure(http::routes)
            .default_service(web::to(http::errors::no_route))
    })
    .workers(opts.http_workers.max(1))
    // Image decoding runs on each worker's blocking pool (512 threads by default). Decoding is
    // CPU-bound and may hold up to the decoder's memory limit per image, so more threads than
    // cores would add memory, not speed.
    .worker_max_blocking_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
    .shutdown_timeout(opts.shutdown_timeout.as_secs())
    // Our own handler flips readiness before actix stops accepting.
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    let grpc = grpc_listener
        .map(|l| GrpcServer::start(l, state_for_grpc, opts.http_workers, opts.max_body))
        .transpose()
        .map_err(ServeError::Grpc)?;
    let stop_watching = Arc::new(AtomicBool::new(false));
    if let Some(every) = opts.watch {
        watch::spawn(registry.clone(), every, stop_watching.clone()).map_err(ServeError::Watch)?;
    }
    metrics.ready.set(1);
    on_listening(listening);
    if let Some(keys) = keys {
        actix_web::rt::spawn(reload_keys_on_sighup(keys));
    }
    actix_web::rt::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!("{signal}: draining in-flight requests, then stopping");
        draining.store(true, Ordering::Release);
        metrics.ready.set(0);
        handle.stop(true).await;
    });
    server.await?;
    stop_watching.store(true, Ordering::Release);
    if let Some(grpc) = grpc {
        grpc.stop(opts.shutdown_timeout);
    }
    registry.close();
    tracing::info!("stopped");
    Ok(())
}

/// Origins as given, each checked (actix-cors would panic on a malformed one).
fn cors_origins(origins: &[String]) -> Result<Vec<String>, ServeError> {
    if let Some(bad) = origins.iter().find(|o| !is_origin(o)) {
        return Err(ServeError::Origin(bad.clone()));
    }
    Ok(origins.iter().map(|o| o.trim_end_matches('/').to_string()).collect())
}

/// `scheme://host[:port]` with http or https and no path or query, or `*`.
pub fn is_origin(origin: &str) -> bool {
    let uri: Option<actix_web::http::Uri> = origin.parse().ok();
    origin == "*"
        || uri.is_some_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() && matches!(u.path(), "" | "/") && u.query().is_none())
}

async fn reload_keys_on_sighup(keys: Arc<ApiKeys>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler; API keys are read once, at start-up");
        return;
    };
    while hangup.recv().await.is_some() {
        match keys.reload() {
            Ok(n) => tracing::info!("SIGHUP: {n} API keys in force, from {}", keys.file().display()),
            Err(err) => tracing::error!("SIGHUP: {err}; the {} keys read before stay in force", keys.count()),
        }
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
