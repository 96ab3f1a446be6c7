//! Every error a request can meet, and the one table that maps each to its HTTP status and
//! machine-readable `error_type`. The body is always `{"error": "...", "error_type": "..."}`
//! (the V2 protocol's error shape, with one key more), and the message says what was expected.

use crate::batcher::{BatchError, SubmitError};
use crate::preprocess::PreprocessError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};

/// Seconds a client should wait after a 429 before retrying: batches take milliseconds, so
/// one second is ample for the queue to move without making clients wait long.
pub const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{}{source}", image_prefix(*index, *count))]
    Image { index: usize, count: usize, source: PreprocessError },
    #[error("the request body is larger than the limit of {limit} bytes (--max-body)")]
    BodyTooLarge { limit: usize },
    #[error("no model named `{0}`; GET /v1/models lists the models")]
    UnknownModel(String),
    #[error("model `{name}` is not serving: {reason}")]
    Unavailable { name: String, reason: String },
    #[error("cannot load model `{name}`: {reason}")]
    LoadFailed { name: String, reason: String },
    #[error("cannot load model `{name}`: {reason}")]
    NotInRepository { name: String, reason: String },
    #[error("model `{model}` has no version `{version}`; its only version is 1")]
    UnknownVersion { model: String, version: String },
    #[error("{0}")]
    BadTensor(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("no endpoint {method} {path}; GET / shows the page, the README lists the endpoints")]
    NoRoute { method: String, path: String },
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("another benchmark is running on this server; retry when it has finished (one at a time, so that live traffic keeps the sessions)")]
    Busy,
    #[error("{0}")]
    Unauthorized(crate::auth::Denied),
    #[error("the server is draining for shutdown")]
    Draining,
    #[error("internal error: {0}")]
    Internal(String),
}

fn image_prefix(index: usize, count: usize) -> String {
    if count > 1 {
        format!("image {} of {count}: ", index + 1)
    } else {
        String::new()
    }
}

/// The rows of the error table: each has one HTTP status and one `error_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    TooManyRequests,
    Internal,
    Unavailable,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::TooManyRequests,
        ErrorKind::Internal,
        ErrorKind::Unavailable,
    ];

    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The body's `error_type`: stable, for programs to branch on.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::TooManyRequests => "too_many_requests",
            ErrorKind::Internal => "internal",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl ApiError {
    /// The table.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        use PreprocessError as P;
        use SubmitError as S;
        match self {
            ApiError::BadRequest(_) | ApiError::BadTensor(_) => K::BadRequest,
            ApiError::Image { source, .. } => match source {
                P::Empty | P::NotAnImage | P::Corrupt(_) => K::BadRequest,
                P::Unsupported(_) => K::UnsupportedMediaType,
                P::TooLarge(_) => K::PayloadTooLarge,
            },
            ApiError::BodyTooLarge { .. } => K::PayloadTooLarge,
            ApiError::UnknownModel(_)
            | ApiError::Unavailable { .. }
            | ApiError::NotInRepository { .. }
            | ApiError::UnknownVersion { .. }
            | ApiError::NoRoute { .. } => K::NotFound,
            ApiError::LoadFailed { .. } => K::BadRequest,
            ApiError::MethodNotAllowed { .. } => K::MethodNotAllowed,
            ApiError::Submit(e) => match e {
                S::QueueFull { .. } => K::TooManyRequests,
                S::TooMany { .. } => K::PayloadTooLarge,
                S::NoImages | S::BadImage(_) => K::BadRequest,
                S::Closed => K::Unavailable,
            },
            ApiError::Batch(e) => match e {
                BatchError::Inference(_) => K::Internal,
                BatchError::Stopped => K::Unavailable,
            },
            ApiError::Busy => K::Conflict,
            ApiError::Unauthorized(_) => K::Unauthorized,
            ApiError::Draining => K::Unavailable,
            ApiError::Internal(_) => K::Internal,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// A name that serves nothing: unknown, or known and not loaded.
    pub fn missing(name: &str, missing: crate::registry::Missing) -> Self {
        match missing {
            crate::registry::Missing::Unknown => ApiError::UnknownModel(name.to_string()),
            crate::registry::Missing::Unavailable(reason) => ApiError::Unavailable { name: name.to_string(), reason },
        }
    }

    pub fn image(index: usize, count: usize, source: PreprocessError) -> Self {
        ApiError::Image { index, count, source }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!("{self}");
        } else {
            tracing::debug!("{status}: {self}");
        }
        let mut response = HttpResponse::build(status);
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(serde_json::json!({ "error": self.to_string(), "error_type": self.kind().as_str() }))
    }
}

/// The app's default service: unknown paths.
pub async fn no_route(req: HttpRequest) -> HttpResponse {
    ApiError::NoRoute { method: req.method().to_string(), path: req.path().to_string() }.error_response()
}

/// A resource's default service: known path, wrong method.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string() }.error_response()
}

/// Errors of actix's own extractors (query strings) in the same JSON shape.
pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("bad query string: {err}")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let cases: Vec<(ApiError, u16)> = vec![
            (ApiError::image(0, 1, PreprocessError::Empty), 400),
            (ApiError::image(0, 1, PreprocessError::NotAnImage), 400),
            (ApiError::image(1, 2, PreprocessError::Corrupt("eof".into())), 400),
            (ApiError::image(0, 1, PreprocessError::TooLarge("10000×10000".into())), 413),
            (ApiError::image(0, 1, PreprocessError::Unsupported(image::ImageFormat::Tiff)), 415),
            (ApiError::BodyTooLarge { limit: 10 }, 413),
            (ApiError::UnknownModel("x".into()), 404),
            (ApiError::BadTensor("shape".into()), 400),
            (SubmitError::QueueFull { depth: 1, capacity: 1 }.into(), 429),
            (SubmitError::Closed.into(), 503),
            (BatchError::Inference("x".into()).into(), 500),
            (ApiError::Busy, 409),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
        }
        // One error_type per row, each spelled once.
        let types: std::collections::BTreeSet<&str> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(types.len(), ErrorKind::ALL.len());
        let statuses: std::collections::BTreeSet<u16> = ErrorKind::ALL.iter().map(|k| k.status().as_u16()).collect();
        assert_eq!(statuses.len(), ErrorKind::ALL.len());
        assert!(ApiError::image(1, 2, PreprocessError::Empty).to_string().starts_with("image 2 of 2: "));
    }

    #[test]
    fn too_many_requests_carry_retry_after_and_json() {
        let resp = ApiError::from(SubmitError::QueueFull { depth: 4, capacity: 4 }).error_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
    }

    #[test]
    fn unauthorized_asks_for_a_bearer_token() {
        let resp = ApiError::Unauthorized(crate::auth::Denied::Missing).error_response();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
    }
}
