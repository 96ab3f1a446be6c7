//! KServe V2 over gRPC (`serve --grpc-bind`): Triton's `GRPCInferenceService`, the part in
//! `proto/grpc_service.proto`, on its own thread and tokio runtime beside the HTTP server.
//! Requests reach the same registry, batchers, limits, keys and metrics as REST; errors come
//! from the same table ([`crate::http::errors`]), each row with its gRPC status code.

mod convert;
mod service;

use crate::http::errors::{ApiError, ErrorKind};
use crate::http::AppState;
use actix_web::web;
use futures_util::StreamExt;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use tonic::codegen::http;
use tonic::Code;

/// The code generated from `proto/grpc_service.proto`.
pub mod proto {
    tonic::include_proto!("inference");
}

/// The gRPC status of each row of the error table.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::BadRequest | ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
        ErrorKind::Unauthorized => Code::Unauthenticated,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::Conflict => Code::Aborted,
        ErrorKind::PayloadTooLarge | ErrorKind::TooManyRequests => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
        ErrorKind::Unavailable => Code::Unavailable,
    }
}

/// The error as a gRPC status: its code from the table, the same message as over REST.
pub fn status(err: &ApiError) -> tonic::Status {
    tonic::Status::new(code(err.kind()), err.to_string())
}

/// tonic refuses a message over the size limit before any handler sees it, with OUT_OF_RANGE;
/// the error table says RESOURCE_EXHAUSTED (as gRPC's own servers do), with REST's message.
fn over_limit(mut res: http::Response<tonic::body::Body>, limit: usize) -> http::Response<tonic::body::Body> {
    let headers = res.headers_mut();
    let tonic_limit = tonic::Status::from_header_map(headers)
        .is_some_and(|s| s.code() == Code::OutOfRange && s.message().starts_with("Error, decoded message length too large"));
    if tonic_limit {
        headers.remove("grpc-message");
        let _ = status(&ApiError::BodyTooLarge { limit }).add_header(headers);
    }
    res
}

/// The running gRPC server.
pub struct GrpcServer {
    stop: tokio::sync::watch::Sender<bool>,
    done: mpsc::Receiver<()>,
}

impl GrpcServer {
    /// Serves on `listener` (already bound) from a new thread with `threads` runtime workers;
    /// messages are limited to `max_message` bytes, as request bodies are over REST.
    pub fn start(listener: TcpListener, state: web::Data<AppState>, threads: usize, max_message: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads.max(1)).thread_name("grpc").enable_all().build()?;
        listener.set_nonblocking(true)?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new().name("grpc-server".into()).spawn(move || {
            let result = runtime.block_on(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(tokio::net::TcpListener::from_std(listener)?).map(|conn| {
                    // Requests are small and answered at once: Nagle would only add delay.
                    if let Ok(stream) = &conn {
                        let _ = stream.set_nodelay(true);
                    }
                    conn
                });
                let svc = proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(service::Inference::new(state))
                    .max_decoding_message_size(max_message)
                    .max_encoding_message_size(max_message);
                tonic::transport::Server::builder()
                    .layer(tower::util::MapResponseLayer::new(move |res| over_limit(res, max_message)))
                    .add_service(svc)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
                    .map_err(std::io::Error::other)
            });
            if let Err(err) = result {
                tracing::error!("gRPC server stopped: {err}");
            }
            let _ = finished.send(());
        })?;
        Ok(Self { stop, done })
    }

    /// Stops accepting, lets calls in flight finish (up to `timeout`), then returns.
    pub fn stop(self, timeout: Duration) {
        let _ = self.stop.send(true);
        if self.done.recv_timeout(timeout).is_err() {
            tracing::warn!("gRPC calls still running after {} s; stopping without them", timeout.as_secs());
        }
    }
}
