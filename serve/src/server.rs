//! Start-up and shutdown: bind, load and warm every model, serve, drain on SIGTERM.

use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::registry::{LoadError, Registry, RegistryOptions};
use actix_web::{middleware, web, App, HttpServer};
use std::net::{SocketAddr, TcpListener};
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
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP server: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the server until SIGTERM or SIGINT, then drains: readiness turns false, the listener
/// closes, in-flight requests finish (up to the shutdown timeout), the batchers stop.
/// `on_listening` receives the bound address once requests are accepted.
pub async fn run(opts: ServerOptions, on_listening: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    // Bind first: a taken port fails in milliseconds, not after loading every model.
    let listener = TcpListener::bind(&opts.bind).map_err(|source| ServeError::Bind { addr: opts.bind.clone(), source })?;
    let addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new()?);
    let registry = Arc::new(Registry::load(&opts.registry, &metrics)?);
    let draining = Arc::new(AtomicBool::new(false));
    let state = web::Data::new(AppState { registry: registry.clone(), metrics: metrics.clone(), max_body: opts.max_body, draining: draining.clone(), benchmark: Default::default() });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(middleware::from_fn(http::metrics::record))
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
    metrics.ready.set(1);
    on_listening(addr);
    actix_web::rt::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!("{signal}: draining in-flight requests, then stopping");
        draining.store(true, Ordering::Release);
        metrics.ready.set(0);
        handle.stop(true).await;
    });
    server.await?;
    registry.close();
    tracing::info!("stopped");
    Ok(())
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
