//! `GET /v1/models/{name}/benchmark` end to end: percentiles per batch size, 400 on bad
//! parameters, 409 while another benchmark runs, and live traffic served meanwhile.

mod common;

use common::*;
use std::time::{Duration, Instant};

fn server() -> &'static Server {
    Server::shared(&[])
}

/// A benchmark, waiting out (bounded) any other test's benchmark in this process.
fn benchmark(query: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = get(&server().u(&format!("/v1/models/resnet-light/benchmark{query}")));
        if r.status != 409 || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn percentiles_per_batch_size() {
    let r = benchmark("?batch_sizes=1,4&iters=3");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "resnet-light");
    assert_eq!(v["architecture"], "resnet-light");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["execution_provider"], "CPUExecutionProvider");
    assert!(v["threads"].as_u64().unwrap() >= 1);
    assert_eq!(v["onnxruntime_version"], cifar_onnxrt::ORT_VERSION);
    assert_eq!(v["iters"], 3);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.iter().map(|b| b["batch_size"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 4]);
    for b in results {
        assert_eq!(b["iters"], 3, "{b}");
        let p = |k: &str| b[k].as_f64().unwrap_or_else(|| panic!("no {k} in {b}"));
        assert!(0.0 < p("min_ms") && p("min_ms") <= p("p50_ms") && p("p50_ms") <= p("p95_ms") && p("p95_ms") <= p("p99_ms") && p("p99_ms") <= p("max_ms"), "{b}");
        assert!(p("images_per_s") > 0.0 && p("mean_ms") > 0.0);
    }
}

#[test]
fn bad_parameters_are_400_in_the_api_shape() {
    let s = server();
    for query in [
        "batch_sizes=0",
        "batch_sizes=abc",
        "batch_sizes=100000",
        "batch_sizes=1,1",
        "batch_sizes=1,2,3,4,5,6,7,8,9",
        "batch_sizes=",
        "iters=0",
        "iters=100000",
        "iters=-1",
        "iters=lots",
        "batch=8",
    ] {
        let r = get(&s.u(&format!("/v1/models/resnet-light/benchmark?{query}")));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        r.error();
    }
    let r = get(&s.u("/v1/models/no-such-model/benchmark?iters=1"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no-such-model"));
    assert_eq!(post(&s.u("/v1/models/resnet-light/benchmark"), "text/plain", b"").status, 405);
}

#[test]
fn one_benchmark_at_a_time_while_traffic_is_served() {
    let s = server();
    // Long enough (32 calls of 128 images) that the probes below overlap it on a fast machine;
    // the server's time budget bounds it on a slow one.
    let long = std::thread::spawn(|| benchmark("?batch_sizes=128&iters=30"));
    std::thread::sleep(Duration::from_millis(50));
    let (mut conflicts, mut classified) = (0, 0);
    while !long.is_finished() {
        let r = get(&s.u("/v1/models/resnet-light/benchmark?batch_sizes=1&iters=1"));
        match r.status {
            409 => {
                conflicts += 1;
                assert!(r.error().contains("another benchmark"), "{}", r.text());
            }
            200 => {}
            other => panic!("unexpected {other}: {}", r.text()),
        }
        // Live traffic shares the session with the benchmark and is still answered.
        let c = post(&s.u("/v1/classify"), "image/png", &png(48, 48));
        assert_eq!(c.status, 200, "{}", c.text());
        classified += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = long.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(conflicts > 0, "no 409 while a benchmark ran ({classified} classifications meanwhile)");
    // Afterwards the gate is open again.
    assert_eq!(benchmark("?batch_sizes=1&iters=1").status, 200);
}
