//! The HTTP load driver, against a running server's `/v1/models/{name}/classify`, in two runs
//! of `duration` each: one keep-alive client sending one image after another (the batch-1
//! latency over HTTP), then `concurrency` such clients at once (throughput, and latency under
//! load).
//!
//! Loopback only, and bounded in clients and time: this is a measuring tool, not a way to
//! flood someone else's server.

use super::http_client::{self, Tally};
use super::stats::Percentiles;
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::{Duration, Instant};

pub const MAX_CONCURRENCY: usize = 256;
pub const MAX_DURATION: Duration = Duration::from_secs(300);
/// Side of the generated test picture: larger than 32 so that decoding and resizing do work.
const PICTURE_SIDE: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum HttpLoadError {
    #[error("--url {url}: {reason}; expected http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT")]
    BadUrl { url: String, reason: String },
    #[error("--url {0}: not a loopback address; the load driver only drives servers on this machine")]
    NotLoopback(String),
    #[error("cannot reach {url}: {reason} (is `serve` running there?)")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {reason}; expected the model list of `serve`")]
    NotServe { url: String, reason: String },
    #[error("cannot start the load driver's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("--image {path}: {reason}; give an image file (PNG, JPEG, BMP, GIF or WebP)")]
    Image { path: String, reason: String },
}

/// A base URL (`http://host:port`) whose host is this machine, checked when parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopbackUrl {
    /// `host:port`, as the clients connect to it and name it in `Host`.
    authority: String,
}

impl FromStr for LoopbackUrl {
    type Err = HttpLoadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| HttpLoadError::BadUrl { url: s.to_string(), reason: reason.into() };
        let uri: hyper::Uri = s.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("the scheme must be http (serve speaks plain HTTP)"));
        }
        if !matches!(uri.path_and_query().map(|p| p.as_str()), None | Some("" | "/")) {
            return Err(bad("give the server's base URL, without a path or query"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = match bare.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            // A name counts only if every address it resolves to is a loopback one.
            Err(_) => bare.eq_ignore_ascii_case("localhost")
                && (bare, port).to_socket_addrs().is_ok_and(|mut a| a.all(|a| a.ip().is_loopback())),
        };
        if !loopback {
            return Err(HttpLoadError::NotLoopback(s.to_string()));
        }
        Ok(Self { authority: format!("{host}:{port}") })
    }
}

impl std::fmt::Display for LoopbackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// How hard and how long to drive.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    pub url: LoopbackUrl,
    /// Clients of the throughput run, each with one request in flight (capped at
    /// [`MAX_CONCURRENCY`]).
    pub concurrency: usize,
    /// Of each run, per model (capped at [`MAX_DURATION`]).
    pub duration: Duration,
    /// The image every request carries.
    pub payload: Payload,
    /// Sent as `Authorization: Bearer KEY` (`serve bench --api-key-file`).
    pub api_key: Option<String>,
}

/// The image the clients send: a file, or [`sample_png`].
#[derive(Clone, Debug)]
pub struct Payload {
    /// Where it came from, for the report: the file's path, or a description.
    pub source: String,
    pub bytes: Vec<u8>,
}

impl Payload {
    pub fn sample() -> Self {
        Self { source: format!("generated {PICTURE_SIDE}×{PICTURE_SIDE} PNG"), bytes: sample_png() }
    }

    /// Any image file the server decodes (it recognises the format from the content).
    pub fn file(path: &std::path::Path) -> Result<Self, HttpLoadError> {
        let bytes = std::fs::read(path).map_err(|e| HttpLoadError::Image { path: path.display().to_string(), reason: e.to_string() })?;
        if bytes.is_empty() {
            return Err(HttpLoadError::Image { path: path.display().to_string(), reason: "the file is empty".into() });
        }
        Ok(Self { source: path.display().to_string(), bytes })
    }
}

/// One keep-alive client, one request at a time: the HTTP counterpart of batch-1 latency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SingleClient {
    /// Wall time from the first request to the last answer.
    pub duration_s: f64,
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    pub errors: u64,
    /// Latency of the successful requests; null when none succeeded.
    pub latency: Option<Percentiles>,
}

/// What the clients saw for one model. Every request carries one image. The top-level figures
/// are the `concurrency` run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpLoad {
    /// The endpoint driven.
    pub endpoint: String,
    pub concurrency: usize,
    /// Wall time from the first request to the last answer.
    pub duration_s: f64,
    pub requests: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Everything else: other statuses and transport failures.
    pub errors: u64,
    /// Answers by status code; `transport` for requests that got no HTTP answer.
    pub statuses: BTreeMap<String, u64>,
    /// Images classified per second (`ok / duration_s`).
    pub images_per_s: f64,
    /// Client-side latency of the successful requests; null when none succeeded.
    pub latency: Option<Percentiles>,
    /// The run with one keep-alive client, before the concurrent one.
    pub single_client: SingleClient,
    /// `single_client` p50 minus the in-process batch-1 p50 of the same file: what HTTP,
    /// decoding and batching add to one image. Null without both figures.
    pub overhead_b1_ms: Option<f64>,
    /// `images_per_s` over the best in-process images/s of any batch size: the share of the
    /// runtime's own throughput that reaches clients. Null without both figures.
    pub throughput_ratio: Option<f64>,
}

impl HttpLoad {
    /// Sets the two comparisons with the in-process figures of the same file:
    /// `batch1_p50_ms` (None when batch size 1 was not timed) and the best images/s.
    pub fn compare_with(&mut self, batch1_p50_ms: Option<f64>, best_images_per_s: Option<f64>) {
        let single_p50 = self.single_client.latency.map(|l| l.p50_ms);
        self.overhead_b1_ms = single_p50.zip(batch1_p50_ms).map(|(http, ort)| http - ort);
        self.throughput_ratio = best_images_per_s.filter(|&b| b > 0.0).map(|best| self.images_per_s / best);
    }
}

/// Names of the models the server at `url` serves.
pub fn served_models(url: &LoopbackUrl, key: Option<&str>) -> Result<Vec<String>, HttpLoadError> {
    let list = format!("{url}/v1/models");
    let runtime = http_client::runtime().map_err(HttpLoadError::Runtime)?;
    let answer = runtime.block_on(http_client::get(&url.authority, "/v1/models", key));
    let (status, bytes) = answer.map_err(|e| HttpLoadError::Unreachable { url: list.clone(), reason: e.to_string() })?;
    let not_serve = |reason: String| HttpLoadError::NotServe { url: list.clone(), reason };
    if status != 200 {
        return Err(not_serve(format!("status {status}")));
    }
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| not_serve(e.to_string()))?;
    let models = body["models"].as_array().ok_or_else(|| not_serve("no `models` list".into()))?;
    Ok(models.iter().filter_map(|m| m["name"].as_str().map(str::to_string)).collect())
}

/// Drives `/v1/models/{model}/classify`: one client for `plan.duration`, then
/// `plan.concurrency` clients for as long. The comparisons with in-process figures are left
/// null for the caller ([`HttpLoad::compare_with`]).
pub fn drive(plan: &LoadPlan, model: &str) -> Result<HttpLoad, HttpLoadError> {
    let concurrency = plan.concurrency.clamp(1, MAX_CONCURRENCY);
    let path = format!("/v1/models/{model}/classify");
    let single = clients(plan, &path, 1)?;
    let many = clients(plan, &path, concurrency)?;
    let endpoint = format!("{}{path}", plan.url);
    let ok = many.ok();
    Ok(HttpLoad {
        endpoint,
        concurrency,
        duration_s: many.elapsed_s,
        requests: many.requests(),
        ok,
        errors: many.requests() - ok,
        images_per_s: ok as f64 / many.elapsed_s.max(1e-9),
        latency: Percentiles::of_seconds(&many.tally.samples),
        statuses: many.tally.statuses,
        single_client: SingleClient {
            duration_s: single.elapsed_s,
            requests: single.requests(),
            ok: single.ok(),
            errors: single.requests() - single.ok(),
            latency: Percentiles::of_seconds(&single.tally.samples),
        },
        overhead_b1_ms: None,
        throughput_ratio: None,
    })
}

/// What one run of clients saw.
struct Run {
    tally: Tally,
    elapsed_s: f64,
}

impl Run {
    fn requests(&self) -> u64 {
        self.tally.statuses.values().sum()
    }

    fn ok(&self) -> u64 {
        self.tally.statuses.get("200").copied().unwrap_or(0)
    }
}

/// `concurrency` clients, each with its own kept-alive connection, for `plan.duration`.
fn clients(plan: &LoadPlan, path: &str, concurrency: usize) -> Result<Run, HttpLoadError> {
    let duration = plan.duration.min(MAX_DURATION);
    let runtime = http_client::runtime().map_err(HttpLoadError::Runtime)?;
    let body = Bytes::from(plan.payload.bytes.clone());
    let started = Instant::now();
    let deadline = started + duration;
    let tally = runtime.block_on(async {
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| tokio::spawn(http_client::client(plan.url.authority.clone(), path.to_string(), body.clone(), plan.api_key.clone(), deadline)))
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            // A client task only ends by returning its tally; a panic in one would be a bug.
            if let Ok(t) = task.await {
                tally.merge(t);
            }
        }
        tally
    });
    Ok(Run { tally, elapsed_s: started.elapsed().as_secs_f64() })
}

/// A deterministic 64×64 PNG (a colour field with a disc): the server decodes, crops, resizes
/// and normalises it like any upload.
pub fn sample_png() -> Vec<u8> {
    let side = PICTURE_SIDE;
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let c = side as i64 / 2;
        let inside = (x as i64 - c).pow(2) + (y as i64 - c).pow(2) < (c * 2 / 3).pow(2);
        let base = [(x * 255 / side) as u8, (y * 255 / side) as u8, 90];
        image::Rgb(if inside { [200, base[0], base[1]] } else { base })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding a small in-memory RGB image as PNG cannot fail.
    let _ = image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for good in ["http://127.0.0.1:8080", "http://127.0.0.1:8080/", "http://[::1]:9000", "http://127.1.2.3:1", "http://localhost:8080"] {
            assert!(good.parse::<LoopbackUrl>().is_ok(), "{good}");
        }
        assert_eq!("http://127.0.0.1:8080/".parse::<LoopbackUrl>().unwrap().to_string(), "http://127.0.0.1:8080");
        for remote in ["http://10.0.0.1:8080", "http://example.com", "http://8.8.8.8", "http://[2001:db8::1]:80"] {
            assert!(matches!(remote.parse::<LoopbackUrl>(), Err(HttpLoadError::NotLoopback(_))), "{remote}");
        }
        for bad in ["https://127.0.0.1:8443", "127.0.0.1:8080", "http://127.0.0.1:8080/v1/models", "http://127.0.0.1:1/?x=1", "not a url"] {
            assert!(matches!(bad.parse::<LoopbackUrl>(), Err(HttpLoadError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn the_sample_is_a_png_the_server_accepts() {
        let png = sample_png();
        let norm = crate::preprocess::Normalisation { mean: [0.5; 3], std: [0.25; 3] };
        assert_eq!(crate::preprocess::preprocess(&png, &norm).unwrap().len(), crate::IMAGE_LEN);
    }

    #[test]
    fn comparisons_with_the_runtime_are_differences_and_ratios() {
        let latency = Percentiles::of_seconds(&[0.0008]);
        let single = SingleClient { duration_s: 1.0, requests: 1, ok: 1, errors: 0, latency };
        let mut r = HttpLoad {
            endpoint: "e".into(),
            concurrency: 64,
            duration_s: 1.0,
            requests: 900,
            ok: 900,
            errors: 0,
            statuses: BTreeMap::from([("200".to_string(), 900)]),
            images_per_s: 900.0,
            latency,
            single_client: single,
            overhead_b1_ms: None,
            throughput_ratio: None,
        };
        r.compare_with(Some(0.5), Some(1000.0));
        assert!((r.overhead_b1_ms.unwrap() - 0.3).abs() < 1e-9 && (r.throughput_ratio.unwrap() - 0.9).abs() < 1e-9, "{r:?}");
        r.compare_with(None, None);
        assert_eq!((r.overhead_b1_ms, r.throughput_ratio), (None, None));
    }

    #[test]
    fn an_image_file_is_the_payload() {
        let dir = std::env::temp_dir().join(format!("payload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.png");
        std::fs::write(&path, sample_png()).unwrap();
        let p = Payload::file(&path).unwrap();
        assert_eq!((p.source.as_str(), p.bytes), (path.to_str().unwrap(), sample_png()));
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(Payload::file(&path), Err(HttpLoadError::Image { .. })));
        assert!(Payload::file(&dir.join("missing.png")).unwrap_err().to_string().contains("missing.png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_closed_port_is_counted_not_fatal() {
        // Bind then drop: the port is (almost certainly) closed afterwards.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}").parse().unwrap();
        let plan = LoadPlan { url, concurrency: 2, duration: Duration::from_millis(100), payload: Payload::sample(), api_key: None };
        let mut r = drive(&plan, "m").unwrap();
        assert_eq!(r.ok, 0);
        assert!(r.requests > 0 && r.errors == r.requests && r.latency.is_none(), "{r:?}");
        let single = &r.single_client;
        assert!(single.requests > 0 && single.errors == single.requests && single.latency.is_none(), "{single:?}");
        r.compare_with(Some(0.5), Some(1000.0));
        assert_eq!((r.overhead_b1_ms, r.throughput_ratio), (None, Some(0.0)), "no single-client latency to compare");
        assert!(served_models(&plan.url, None).is_err());
    }
}
