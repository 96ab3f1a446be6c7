//! The load driver's clients: one kept-alive HTTP/1.1 connection per client, all clients as
//! tasks on one thread (hyper on a current-thread tokio runtime), as `wrk` drives a server.
//!
//! A blocking client thread per connection (ureq, before) cost about six times `wrk`'s CPU per
//! request; on a 2-core machine the server paid for that, so the report understated it.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A request that takes longer counts as failed (`timeout`).
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

type Connection = SendRequest<Full<Bytes>>;

/// What a client (or, merged, a run of clients) saw.
#[derive(Default)]
pub(super) struct Tally {
    /// Seconds per successful request.
    pub samples: Vec<f64>,
    /// Answers by status code; `timeout` and `transport` for requests without an answer.
    pub statuses: BTreeMap<String, u64>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
    }
}

/// Why a request got no HTTP answer.
#[derive(Debug)]
pub(super) enum Failure {
    Timeout,
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

fn transport(e: impl std::fmt::Display) -> Failure {
    Failure::Transport(e.to_string())
}

/// The runtime every driver call runs on: one thread, so that all clients together cost the
/// machine one core at most.
pub(super) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// A request to `authority` (`host:port`) for `path`: a GET without `body`, else a POST of it;
/// with `key`, as `Authorization: Bearer KEY`.
fn request(authority: &str, path: &str, body: Option<&Bytes>, key: Option<&str>) -> Result<Request<Full<Bytes>>, Failure> {
    let mut builder = Request::builder().uri(path).header(HOST, authority);
    if let Some(key) = key {
        builder = builder.header(AUTHORIZATION, format!("Bearer {key}"));
    }
    match body {
        None => builder.method("GET").body(Full::new(Bytes::new())),
        Some(b) => builder.method("POST").header(CONTENT_TYPE, "application/octet-stream").body(Full::new(b.clone())),
    }
    .map_err(transport)
}

async fn connect(authority: &str) -> Result<Connection, Failure> {
    let stream = TcpStream::connect(authority).await.map_err(transport)?;
    // Requests are small and answered at once: do not let Nagle hold them back.
    stream.set_nodelay(true).map_err(transport)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(transport)?;
    tokio::spawn(async move {
        // Ends when the server closes the connection; the next request reconnects.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends `req` on `conn` (connecting first when there is none, or it was closed) and reads the
/// whole answer: its status and body.
async fn exchange(conn: &mut Option<Connection>, authority: &str, req: Request<Full<Bytes>>) -> Result<(u16, Bytes), Failure> {
    let sender = match conn {
        Some(s) if !s.is_closed() => s,
        _ => conn.insert(connect(authority).await?),
    };
    if sender.ready().await.is_err() {
        // Closed between requests (a keep-alive timeout): one fresh connection.
        *sender = connect(authority).await?;
        sender.ready().await.map_err(transport)?;
    }
    let resp = sender.send_request(req).await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(transport)?.to_bytes();
    Ok((status, body))
}

/// One request on a fresh connection, within [`REQUEST_TIMEOUT`].
pub(super) async fn get(authority: &str, path: &str, key: Option<&str>) -> Result<(u16, Bytes), Failure> {
    let req = request(authority, path, None, key)?;
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut None, authority, req)).await.map_err(|_| Failure::Timeout)?
}

/// One client: POSTs `body` to `path`, one request after another on one kept-alive connection,
/// until `deadline`. A request counts once its whole answer has arrived.
pub(super) async fn client(authority: String, path: String, body: Bytes, key: Option<String>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn = None;
    while Instant::now() < deadline {
        let t = Instant::now();
        let answer = match request(&authority, &path, Some(&body), key.as_deref()) {
            Ok(req) => tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut conn, &authority, req)).await.unwrap_or(Err(Failure::Timeout)),
            Err(e) => Err(e),
        };
        let elapsed = t.elapsed().as_secs_f64();
        let key = match answer {
            Ok((200, _)) => {
                tally.samples.push(elapsed);
                "200".to_string()
            }
            Ok((status, _)) => status.to_string(),
            Err(failure) => {
                // The connection may be mid-answer: start the next request on a fresh one.
                conn = None;
                if matches!(failure, Failure::Transport(_)) {
                    // A refused or reset connection fails at once: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    "transport".into()
                } else {
                    "timeout".into()
                }
            }
        };
        *tally.statuses.entry(key).or_default() += 1;
    }
    tally
}
