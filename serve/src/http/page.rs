//! `GET /`: one self-contained page (inline CSS and script, no external assets): the served
//! models' accuracy against MACs beside the seed's points with latency measured on demand, every
//! model's top 5 for a dropped, pasted, picked or photographed image, and each model's
//! occlusion map over it. It uses only the public API, with the tab's API key when the server
//! wants one. `tests/tests/serve_page.rs` drives it in headless Chromium.

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
