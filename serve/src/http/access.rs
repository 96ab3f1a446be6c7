//! Middleware every request passes: its request id (accepted from `x-request-id` or made,
//! carried by every log line of the request, echoed on the response) and the API-key check.

use super::errors::ApiError;
use super::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};
use tracing::Instrument;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id is kept when it is 1–128 printable ASCII characters; otherwise a new one is
/// made (ids end up in logs, so they must stay one short token).
fn client_id(value: Option<&HeaderValue>) -> Option<String> {
    let value = value?.to_str().ok()?;
    (!value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic())).then(|| value.to_string())
}

pub async fn request_id(req: ServiceRequest, next: Next<impl MessageBody>) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = client_id(req.headers().get(&REQUEST_ID)).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", id = %id);
    span.in_scope(|| tracing::debug!("{} {}", req.method(), req.path()));
    let mut res = next.call(req).instrument(span.clone()).await?;
    span.in_scope(|| tracing::debug!("answered {}", res.status()));
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// With `--api-key-file`, refuses requests to protected routes without a valid key (401, with
/// `WWW-Authenticate: Bearer`), before any work is done for them.
pub async fn require_key<B: MessageBody>(req: ServiceRequest, next: Next<B>) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let denied = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let keys = state.keys.as_ref()?;
        if !crate::auth::needs_key(req.path(), state.protect_all) {
            return None;
        }
        keys.check(req.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes)).err()
    });
    match denied {
        Some(denied) => {
            let response = ApiError::Unauthorized(denied).error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_kept_when_they_are_one_short_token() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(client_id(Some(&v("abc-123"))).as_deref(), Some("abc-123"));
        assert_eq!(client_id(Some(&v("has space"))), None);
        assert_eq!(client_id(Some(&v(&"x".repeat(129)))), None);
        assert_eq!(client_id(Some(&v(""))), None);
        assert_eq!(client_id(None), None);
    }
}
