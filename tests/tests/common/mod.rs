//! Shared by the end-to-end tests: the built binaries, seeded fresh models, a server on an
//! ephemeral loopback port, and small HTTP helpers.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the repository").to_path_buf()
}

/// A binary of the workspace. `cargo test --workspace` builds `train` and `serve` (their
/// packages have integration tests) next to this test's own folder; when run otherwise and a
/// binary is missing, it is built into a separate target folder, since the outer cargo holds
/// the lock on ours. A binary older than the workspace's sources (left by an earlier build when
/// only some test targets were rebuilt) is treated as missing: never test a stale binary.
pub fn binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let built = profile_dir.join(name);
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&built).is_some_and(|t| newest_source(&repo_root()).is_none_or(|s| s <= t)) {
        return built;
    }
    let target = repo_root().join("target").join("e2e-fallback");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", name])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(repo_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build -p {package} --bin {name} failed");
    target.join("debug").join(name)
}

/// The newest modification time of the `.rs` files and manifests the binaries are built from.
fn newest_source(root: &Path) -> Option<std::time::SystemTime> {
    fn walk(path: &Path, newest: &mut Option<std::time::SystemTime>) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if path.extension().is_some_and(|x| x == "rs") || path.file_name().is_some_and(|n| n == "Cargo.toml") {
            let t = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            *newest = (*newest).max(t);
        }
    }
    let mut newest = None;
    for krate in ["models", "onnxrt", "train", "serve"] {
        walk(&root.join(krate).join("src"), &mut newest);
        walk(&root.join(krate).join("Cargo.toml"), &mut newest);
    }
    newest
}

/// Folders to remove when the test process exits (statics are never dropped).
static CLEANUP: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_temp_dirs() {
    if let Ok(dirs) = CLEANUP.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A temporary folder that lives as long as the test process.
pub fn process_temp_dir(label: &str) -> PathBuf {
    let dir = tempfile::Builder::new().prefix(&format!("cifar-e2e-{label}-")).tempdir().expect("temp dir").keep();
    let mut dirs = CLEANUP.lock().unwrap();
    if dirs.is_empty() {
        unsafe { libc::atexit(remove_temp_dirs) };
    }
    dirs.push(dir.clone());
    dir
}

/// `train export` of a seeded fresh model.
pub fn export(model: &str, out: &Path) {
    export_seeded(model, 7, out)
}

/// `train export` of a fresh model from `seed` (other seeds, other weights).
pub fn export_seeded(model: &str, seed: u64, out: &Path) {
    let output = Command::new(binary("cifar-train", "train"))
        .args(["export", "--model", model, "--seed", &seed.to_string(), "--out"])
        .arg(out)
        .current_dir(repo_root())
        .output()
        .expect("running train export");
    assert!(output.status.success(), "train export failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// A folder with `resnet-light.onnx` (exported once per test process) and copies of it under
/// the given extra names.
pub fn model_dir(extra_names: &[&str]) -> PathBuf {
    static EXPORTED: OnceLock<PathBuf> = OnceLock::new();
    let source = EXPORTED.get_or_init(|| {
        let dir = process_temp_dir("export");
        let file = dir.join("resnet-light.onnx");
        export("resnet-light", &file);
        file
    });
    let dir = process_temp_dir("models");
    std::fs::copy(source, dir.join("resnet-light.onnx")).unwrap();
    for name in extra_names {
        std::fs::copy(source, dir.join(format!("{name}.onnx"))).unwrap();
    }
    dir
}

/// A running `serve`, killed when dropped (and by the kernel if the test process dies).
pub struct Server {
    child: Mutex<Child>,
    pub addr: SocketAddr,
    /// With `--grpc-bind`: where gRPC listens.
    pub grpc: Option<SocketAddr>,
    pub url: String,
    log: PathBuf,
    pub models: PathBuf,
}

impl Server {
    /// Starts `serve --models DIR --bind 127.0.0.1:0 ARGS` and waits until /readyz says ready.
    pub fn start(models: &Path, args: &[&str]) -> Server {
        Self::start_logging(models, args, "info")
    }

    /// As [`Server::start`], with `RUST_LOG=filter`.
    pub fn start_logging(models: &Path, args: &[&str], filter: &str) -> Server {
        let mut cmd = Command::new(binary("cifar-serve", "serve"));
        cmd.arg("--models").arg(models).args(["--bind", "127.0.0.1:0"]).args(args).env("RUST_LOG", filter);
        Self::spawn(cmd, models)
    }

    /// Runs `cmd`, which starts a `serve` on `models` however it is launched (the container's
    /// entrypoint, say), and waits until it is ready.
    pub fn spawn(mut cmd: Command, models: &Path) -> Server {
        let log = models.join(format!("serve-{}.log", std::process::id()));
        cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
        // The server must not outlive the test process, even when a test panics or is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("starting serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // `grpc listening on ADDR` (with --grpc-bind) comes before `listening on http://ADDR`.
        std::thread::spawn(move || {
            let mut grpc = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("grpc listening on ") {
                    grpc = Some(addr.trim().parse::<SocketAddr>().expect("a socket address"));
                } else if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send((addr.trim().to_string(), grpc));
                }
            }
        });
        let (addr, grpc): (SocketAddr, _) = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok((addr, grpc)) => (addr.parse().expect("a socket address"), grpc),
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let server = Server { child: Mutex::new(child), addr, grpc, url: format!("http://{addr}"), log, models: models.to_path_buf() };
        server.wait_ready();
        server
    }

    /// One server per test process (default model `resnet-light`), for the tests that do not
    /// need a special configuration.
    pub fn shared(extra_models: &'static [&'static str]) -> &'static Server {
        static SHARED: OnceLock<Server> = OnceLock::new();
        SHARED.get_or_init(|| Server::start_for_process(model_dir(extra_models), &["--default", "resnet-light"]))
    }

    /// [`Server::start`] for a server kept in a static (shared by a test binary's tests): it is
    /// started from a thread that never ends, since the kernel's parent-death signal follows
    /// the thread that spawned the child.
    pub fn start_for_process(models: PathBuf, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let _ = tx.send(Server::start(&models, &args));
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("server for the test process")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if get(&format!("{}/readyz", self.url)).status == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve never became ready:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.lock().unwrap().id() as i32
    }

    /// Waits for the process to end, returning its exit code.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// An HTTP answer, whatever its status.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A 4xx/5xx in the API's shape: JSON `{"error": "...", "error_type": "..."}`, the type
    /// being the README's name for the status; returns the message.
    pub fn error(&self) -> String {
        let body = self.json();
        let msg = body["error"].as_str().unwrap_or_else(|| panic!("no `error` in {body}"));
        assert!(!msg.is_empty());
        let expected = match self.status {
            400 => "bad_request",
            401 => "unauthorized",
            404 => "not_found",
            405 => "method_not_allowed",
            409 => "conflict",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            429 => "too_many_requests",
            500 => "internal",
            503 => "unavailable",
            other => panic!("status {other} is not in the error table: {body}"),
        };
        assert_eq!(body["error_type"].as_str(), Some(expected), "error_type of a {}: {body}", self.status);
        msg.to_string()
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into()
    })
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut resp = result.expect("HTTP request");
    let status = resp.status().as_u16();
    let headers = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.body_mut().with_config().limit(64 << 20).read_to_vec().expect("reading the body");
    Reply { status, headers, body }
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

pub fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.call())
}

pub fn post(url: &str, content_type: &str, body: &[u8]) -> Reply {
    reply(agent().post(url).header("Content-Type", content_type).send(body))
}

pub fn post_with(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send(body))
}

/// Sends raw bytes on a fresh connection (the writer ignores errors, as the server may answer
/// and close before reading everything) and returns the status line and the rest.
pub fn raw_exchange(addr: SocketAddr, head: &str, body: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let head = head.to_string();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    // Read until the end of the first response (the server closes after an error) or timeout.
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => answer.extend_from_slice(&buf[..k]),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)));
            if len.is_some_and(|len| rest.len() >= len) {
                break;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (status, text)
}

/// A test picture of `w`×`h`: a smooth colour field with a disc, deterministic.
pub fn picture(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let inside = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < (w.min(h) as f32 / 3.0).powi(2);
        let base = [(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, (seed * 40 % 256) as u8];
        image::Rgb(if inside { [base[2], 200, base[0]] } else { base })
    })
}

/// The picture encoded in `format`.
pub fn encode(img: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut out, format).expect("encoding a test image");
    out.into_inner()
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    encode(&picture(w, h, 1), image::ImageFormat::Png)
}

/// A multipart/form-data body; returns (content type, body).
pub fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "cifar-e2e-boundary-7f3a";
    let mut body = Vec::new();
    for (i, (name, data)) in parts.iter().enumerate() {
        write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f{i}\"\r\nContent-Type: application/octet-stream\r\n\r\n").unwrap();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Logits from ONNX Runtime in this process (CPU), the reference for the server's answers.
pub fn direct_logits(model: &Path, input: &[f32], n: usize) -> Vec<f32> {
    use cifar_onnxrt::ort::session::Session;
    use cifar_onnxrt::ort::value::TensorRef;
    let (_, env) = cifar_onnxrt::init(None, cifar_onnxrt::Flavor::Cpu).expect("ONNX Runtime (run scripts/setup.sh)");
    let mut session = Session::builder(&env).unwrap().commit_from_file(model).expect("loading the model");
    let tensor = TensorRef::from_array_view(([n, 3, 32, 32], input)).unwrap();
    let outputs = session.run(cifar_onnxrt::ort::inputs!["input" => tensor]).expect("ORT run");
    let (_, logits) = outputs["logits"].try_extract_tensor::<f32>().unwrap();
    logits.to_vec()
}

/// Polls `ok` until it holds (a minute at most: loads and swaps happen in the background).
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The value of one sample line of the Prometheus text, e.g.
/// `cifar_serve_batch_size_count{model="batching"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

/// Chromium's flags for a sandboxed, offline test run (no sandbox as root; no background
/// connections, which this machine's closed network refuses).
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// The DOM of `url` after headless Chromium has run its scripts (virtual time, 20 s budget).
/// Chromium comes from `scripts/setup.sh` (Debian's package).
pub fn headless_dom(url: &str) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is missing: run `bash scripts/setup.sh` (installs Debian's chromium)");
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium);
    cmd.args(["--headless"]).args(CHROMIUM_FLAGS).args(["--virtual-time-budget=20000", "--dump-dom"])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(url);
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!dom.is_empty(), "chromium printed no DOM:\n{}", String::from_utf8_lossy(&out.stderr));
    dom
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> std::process::Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    unsafe {
        cmd.pre_exec(|| {
            libc::setpgid(0, 0); // its own group, so the browser's helpers can be stopped with it
            Ok(())
        });
    }
    let child = cmd.spawn().expect("starting chromium");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("chromium output"),
        Err(_) => {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("chromium did not finish within {timeout:?}");
        }
    }
}
