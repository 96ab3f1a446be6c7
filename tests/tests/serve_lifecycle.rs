//! `serve` start-up and shutdown: clear start-up errors, backpressure (429), and the drain on
//! SIGTERM. Each test starts its own server with the configuration it needs.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(binary("cifar-serve", "serve")).args(args).output().expect("running serve")
}

/// Whether the `serve` under test was built with `--features cuda` (then `--device cuda` may
/// really start on a GPU, and the CPU-only expectations below do not apply).
fn cuda_built() -> bool {
    String::from_utf8_lossy(&serve(&["--version"]).stdout).contains("CUDA execution provider: built in")
}

#[test]
fn start_up_errors_are_clear() {
    let models = model_dir(&[]);
    let m = models.to_str().unwrap();

    if !cuda_built() {
        let out = serve(&["--models", m, "--bind", "127.0.0.1:0", "--device", "cuda"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("without CUDA support") && err.contains("--allow-cpu-fallback"), "{err}");
    }

    let empty = tempfile::tempdir().unwrap();
    let out = serve(&["--models", empty.path().to_str().unwrap(), "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no *.onnx files"));

    let junk = tempfile::tempdir().unwrap();
    std::fs::write(junk.path().join("junk.onnx"), b"not a model").unwrap();
    let out = serve(&["--models", junk.path().to_str().unwrap(), "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("junk.onnx"), "the bad file is named");

    let out = serve(&["--models", m, "--bind", "127.0.0.1:0", "--default", "vgg"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("resnet-light"), "the loaded models are listed");

    // A taken port fails fast, before any model is loaded.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = serve(&["--models", m, "--bind", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn cuda_with_cpu_fallback_serves_on_the_cpu() {
    if cuda_built() {
        return; // the fallback path is only certain on a build without CUDA
    }
    let s = Server::start(&model_dir(&[]), &["--device", "cuda:0", "--allow-cpu-fallback"]);
    assert_eq!(get(&s.u("/v1/models/resnet-light")).json()["device"], "cpu");
    assert!(s.log().contains("running on the CPU"), "the fallback is logged:\n{}", s.log());
}

#[test]
fn a_full_queue_answers_429_and_sigterm_drains_in_flight_requests() {
    // A partly filled batch waits up to 1.5 s for company (--max-queue-delay-us; the default
    // runs at once), so admitted images stay queued long enough to fill a queue of 4
    // deterministically.
    let s = Server::start(&model_dir(&[]), &["--max-queue", "4", "--max-batch", "64", "--max-queue-delay-us", "1500000"]);
    let url = s.u("/v1/classify");
    let body = png(32, 32);
    let in_flight: Vec<_> = (0..4)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || post(&url, "image/png", &body))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let depth = metric(&get(&s.u("/metrics")).text(), "cifar_serve_queue_depth{model=\"resnet-light\"}");
        if depth == Some(4.0) {
            break;
        }
        assert!(Instant::now() < deadline, "the queue never filled (depth {depth:?})");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = post(&url, "image/png", &body);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("queue is full"));
    // More images in one request than the queue can ever hold: 413, not 429.
    let (ct, many) = multipart(&[("image", &body[..]); 5]);
    assert_eq!(post(&url, &ct, &many).status, 413);

    // SIGTERM while the four are still waiting for their batch: they are answered, then the
    // process exits cleanly.
    unsafe { libc::kill(s.pid(), libc::SIGTERM) };
    for t in in_flight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "an in-flight request was dropped: {}", r.text());
        assert_eq!(r.json()["results"][0]["predictions"].as_array().unwrap().len(), 5);
    }
    assert_eq!(s.wait_exit(Duration::from_secs(30)), Some(0), "serve did not exit cleanly:\n{}", s.log());
    assert!(s.log().contains("SIGTERM: draining"), "{}", s.log());
    assert!(std::net::TcpStream::connect(s.addr).is_err(), "the port is closed after shutdown");
}
