//! What operators configure and read: API keys (with SIGHUP reload and `--protect-all`),
//! request ids, JSON logs, CORS, and Triton's statistics extension, over plain HTTP and with
//! the official `tritonclient`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const KEY_A: &str = "alpha-Key_1";
const KEY_B: &str = "beta.key~2";

fn key_file(dir: &Path, keys: &[&str]) -> PathBuf {
    let file = dir.join("api-keys");
    std::fs::write(&file, format!("# keys of the e2e test\n\n{}\n", keys.join("\n"))).unwrap();
    file
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn api_keys_guard_the_api_and_leave_health_open() {
    let models = model_dir(&[]);
    let keys = key_file(&models, &[KEY_A, KEY_B]);
    let s = Server::start(&models, &["--api-key-file", keys.to_str().unwrap()]);
    for open in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/", "/metrics"] {
        assert_eq!(get(&s.u(open)).status, 200, "{open} needs no key");
    }
    for path in ["/v1/models", "/v2", "/v2/models/resnet-light", "/v2/models/stats"] {
        let r = get(&s.u(path));
        assert_eq!(r.status, 401, "{path} without a key");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(r.error().contains("Authorization: Bearer"), "the 401 says what to send");
        let r = get_with(&s.u(path), &[("Authorization", &bearer("nope"))]);
        assert_eq!((r.status, r.error()), (401, "the API key is not valid".to_string()), "{path} with a wrong key");
        for key in [KEY_A, KEY_B] {
            assert_eq!(get_with(&s.u(path), &[("Authorization", &bearer(key))]).status, 200, "{path} with a right key");
        }
    }
    let img = png(32, 32);
    let r = post_with(&s.u("/v1/classify"), &[("Content-Type", "image/png")], &img);
    assert_eq!(r.status, 401, "inference needs a key too");
    let r = post_with(&s.u("/v1/classify"), &[("Content-Type", "image/png"), ("Authorization", &bearer(KEY_B))], &img);
    assert_eq!(r.status, 200, "{}", r.text());
    // 401s are counted like any answer.
    let metrics = get(&s.u("/metrics")).text();
    assert!(metric(&metrics, "cifar_serve_requests_total{endpoint=\"/v1/models\",model=\"\",status=\"401\"}").is_some_and(|n| n >= 2.0), "{metrics}");

    // SIGHUP re-reads the file; a broken file leaves the keys in force.
    std::fs::write(&keys, format!("{KEY_B}-new\n")).unwrap();
    unsafe { libc::kill(s.pid(), libc::SIGHUP) };
    let auth_ok = |key: &str| get_with(&s.u("/v1/models"), &[("Authorization", &bearer(key))]).status == 200;
    wait_until("the new key works after SIGHUP", || auth_ok(&format!("{KEY_B}-new")));
    assert!(!auth_ok(KEY_A) && !auth_ok(KEY_B), "the old keys are gone");
    std::fs::write(&keys, "# nothing\n").unwrap();
    unsafe { libc::kill(s.pid(), libc::SIGHUP) };
    wait_until("the failed reload is logged", || s.log().contains("holds no key"));
    assert!(auth_ok(&format!("{KEY_B}-new")), "a key file without keys leaves the keys in force");
    let log = s.log();
    for key in [KEY_A, KEY_B] {
        assert!(!log.contains(key), "a key reached the log:\n{log}");
    }
}

#[test]
fn protect_all_closes_the_page_and_metrics_but_not_health() {
    let models = model_dir(&[]);
    let keys = key_file(&models, &[KEY_A]);
    let s = Server::start(&models, &["--api-key-file", keys.to_str().unwrap(), "--protect-all"]);
    for path in ["/", "/metrics", "/v1/models"] {
        assert_eq!(get(&s.u(path)).status, 401, "{path}");
        assert_eq!(get_with(&s.u(path), &[("Authorization", &bearer(KEY_A))]).status, 200, "{path}");
    }
    for path in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"] {
        assert_eq!(get(&s.u(path)).status, 200, "{path}");
    }
}

#[test]
fn tritonclient_sends_keys_and_reads_statistics() {
    let models = model_dir(&[]);
    let keys = key_file(&models, &[KEY_A]);
    let s = Server::start(&models, &["--api-key-file", keys.to_str().unwrap()]);
    let python = repo_root().join(".venv-tools/bin/python");
    assert!(python.is_file(), "{} is missing: run `bash scripts/setup.sh`", python.display());
    let out = Command::new(&python)
        .arg(repo_root().join("tests/python/triton_keys.py"))
        .args([&s.addr.to_string(), "resnet-light", KEY_A])
        .output()
        .expect("running the Python client");
    assert!(out.status.success(), "triton_keys.py failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    assert_eq!(v["live_without_key"], json!(true), "health is open to the client");
    let refused = v["without_key"].as_str().expect("the client raises without a key");
    assert!(refused.contains("401") || refused.contains("API key"), "{refused}");
    assert_eq!(v["logits_shape"], json!([3, 10]));
    let stats = &v["stats"]["model_stats"][0];
    assert_eq!(stats["name"], "resnet-light");
    assert_eq!(stats["inference_count"], json!(3), "{stats}");
    assert_eq!(stats["inference_stats"]["success"]["count"], json!(1), "{stats}");
}

#[test]
fn statistics_count_requests_images_batches_and_refusals() {
    let s = Server::start(&model_dir(&["second"]), &["--max-queue", "4"]);
    let img = png(40, 30);
    for _ in 0..3 {
        assert_eq!(post(&s.u("/v1/models/resnet-light/classify"), "image/png", &img).status, 200);
    }
    let two = json!({"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32", "data": vec![0.1f32; 2 * 3 * 32 * 32]}]});
    let r = post(&s.u("/v2/models/resnet-light/infer"), "application/json", two.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // Five images, more than --max-queue 4 at once: refused whole, counted as a failure.
    let (ct, body) = multipart(&[("image", &img), ("image", &img), ("image", &img), ("image", &img), ("image", &img)]);
    assert_eq!(post(&s.u("/v1/models/resnet-light/classify"), &ct, &body).status, 413);

    let r = get(&s.u("/v2/models/resnet-light/stats"));
    assert_eq!(r.status, 200, "{}", r.text());
    let all = r.json();
    let stat = &all["model_stats"][0];
    assert_eq!(all["model_stats"].as_array().unwrap().len(), 1);
    assert_eq!((stat["name"].as_str(), stat["version"].as_str()), (Some("resnet-light"), Some("1")));
    assert_eq!(stat["inference_count"], json!(5), "images run: {stat}");
    let inf = &stat["inference_stats"];
    assert_eq!(inf["success"]["count"], json!(4), "{stat}");
    assert_eq!(inf["fail"]["count"], json!(1), "{stat}");
    assert_eq!(inf["queue"]["count"], json!(4), "{stat}");
    for key in ["success", "compute_infer", "compute_input", "compute_output"] {
        assert!(inf[key]["ns"].as_u64().unwrap() > 0, "{key}: {stat}");
    }
    // Success time covers its queue wait and its batch's compute.
    assert!(inf["success"]["ns"].as_u64() >= inf["compute_infer"]["ns"].as_u64(), "{stat}");
    let executions = stat["execution_count"].as_u64().unwrap();
    let batches = stat["batch_stats"].as_array().unwrap();
    let runs: u64 = batches.iter().map(|b| b["compute_infer"]["count"].as_u64().unwrap()).sum();
    let images: u64 = batches.iter().map(|b| b["batch_size"].as_u64().unwrap() * b["compute_infer"]["count"].as_u64().unwrap()).sum();
    assert_eq!((runs, images), (executions, 5), "{stat}");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(stat["last_inference"].as_u64().unwrap().abs_diff(now_ms) < 120_000, "{stat}");

    let every = get(&s.u("/v2/models/stats")).json();
    let names: Vec<&str> = every["model_stats"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["resnet-light", "second"]);
    assert_eq!(every["model_stats"][1]["inference_count"], json!(0));
    assert_eq!(get(&s.u("/v2/models/resnet-light/versions/1/stats")).json()["model_stats"], all["model_stats"]);
    let r = get(&s.u("/v2/models/resnet-light/versions/2/stats"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("version"));
    let r = get(&s.u("/v2/models/nothing/stats"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("nothing"));
    assert!(get(&s.u("/v2")).json()["extensions"].as_array().unwrap().contains(&json!("statistics")));
}

#[test]
fn request_ids_are_echoed_or_made_and_logged() {
    let models = model_dir(&[]);
    let s = Server::start_logging(&models, &["--log-format", "json"], "debug");
    let r = get_with(&s.u("/v1/models/nothing"), &[("x-request-id", "trace-42")]);
    assert_eq!((r.status, r.header("x-request-id")), (404, Some("trace-42")));
    let made = get(&s.u("/healthz"));
    let id = made.header("x-request-id").expect("an id is made").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_ne!(get(&s.u("/healthz")).header("x-request-id"), Some(id.as_str()), "each request its own");
    let long = "x".repeat(200);
    let r = get_with(&s.u("/healthz"), &[("x-request-id", &long)]);
    assert_ne!(r.header("x-request-id"), Some(long.as_str()), "an id too long for a log line is replaced");
    // Every log line is one JSON object; the request's lines carry its id.
    wait_until("the request is logged", || s.log().contains("trace-42"));
    let log = s.log();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|l| l["span"]["id"] == "trace-42"), "{log}");
    let start = lines.iter().find_map(|l| l["fields"]["message"].as_str().filter(|m| m.starts_with("starting:"))).expect("a start-up line");
    assert!(start.contains("models from") && start.contains("HTTP workers") && !start.contains("ServerOptions"), "in words: {start}");
}

#[test]
fn cors_lets_the_allowed_origin_call_with_a_key() {
    let models = model_dir(&[]);
    let keys = key_file(&models, &[KEY_A]);
    let s = Server::start(&models, &["--api-key-file", keys.to_str().unwrap(), "--cors-allow-origin", "http://app.example:3000"]);
    // The browser's preflight carries no key and must pass.
    let preflight = "OPTIONS /v1/models HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example:3000\r\n\
                     Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n";
    let (status, text) = raw_exchange(s.addr, preflight, Vec::new());
    let lower = text.to_ascii_lowercase();
    assert!((200..300).contains(&status), "{text}");
    assert!(lower.contains("access-control-allow-origin: http://app.example:3000"), "{text}");
    assert!(lower.contains("authorization"), "the key header is allowed: {text}");
    let r = get_with(&s.u("/v1/models"), &[("Origin", "http://app.example:3000"), ("Authorization", &bearer(KEY_A))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://app.example:3000"));
    let r = get_with(&s.u("/v1/models"), &[("Origin", "http://elsewhere.example"), ("Authorization", &bearer(KEY_A))]);
    assert_ne!(r.header("access-control-allow-origin"), Some("http://elsewhere.example"), "other origins are not allowed");
}

#[test]
fn the_page_asks_for_a_key_when_the_api_wants_one() {
    let models = model_dir(&[]);
    let keys = key_file(&models, &[KEY_A]);
    let s = Server::start(&models, &["--api-key-file", keys.to_str().unwrap()]);
    let dom = headless_dom(&s.u("/"));
    assert!(dom.contains("data-auth=\"asked\""), "the page did not ask for a key:\n{dom}");
    assert!(dom.contains("This server needs an API key."), "{dom}");
}
