//! `GET /`: one self-contained page (inline CSS and script, no external assets) to classify an
//! image through the API. `/?selftest=1` makes the page draw an image itself and classify it,
//! which is how the tests check the page in headless Chromium.

use super::resource;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("page.html");

/// The page may talk only to this server: no external script, style, font or image can load.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(page)));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}
