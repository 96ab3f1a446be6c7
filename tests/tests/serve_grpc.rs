//! KServe V2 over gRPC (`serve --grpc-bind`) with the official Triton clients, gRPC and HTTP
//! side by side: the wire contract, health, metadata, inference parity, bad input, API keys,
//! the model repository and statistics.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

const KEY: &str = "grpc-test-key";

fn python() -> std::path::PathBuf {
    let python = repo_root().join(".venv-tools/bin/python");
    assert!(python.is_file(), "{} is missing: run `bash scripts/setup.sh`", python.display());
    python
}

#[test]
fn the_proto_matches_tritons_published_definition() {
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/grpc_proto_check.py"))
        .arg(repo_root().join("serve/proto/grpc_service.proto"))
        .output()
        .expect("running grpc_proto_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the proto differs from Triton's:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    // Every RPC served is checked, and so is every message they use.
    assert_eq!(v["rpcs"], 10, "{v}");
    assert!(v["messages"].as_u64().unwrap() >= 30 && v["fields"].as_u64().unwrap() >= 90, "{v}");
}

fn logits(v: &Value) -> Vec<f32> {
    serde_json::from_value::<Vec<f64>>(v.clone()).unwrap().into_iter().map(|x| x as f32).collect()
}

fn failure(v: &Value) -> (String, String) {
    assert!(v.is_object(), "expected the call to fail: {v}");
    (v["status"].as_str().unwrap().to_string(), v["message"].as_str().unwrap().to_string())
}

#[test]
fn tritonclient_grpc_and_http_agree_under_keys_with_repository_and_statistics() {
    let models = model_dir(&["spare"]);
    std::fs::write(models.join("keys"), format!("{KEY}\n")).unwrap();
    let keys = models.join("keys");
    let s = Server::start(&models, &["--grpc-bind", "127.0.0.1:0", "--api-key-file", keys.to_str().unwrap(), "--max-body", "1MiB"]);
    let grpc = s.grpc.expect("serve prints `grpc listening on ADDR`");
    let n = 3;
    let input = cifar_models::testdata::images(n, 31);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.f32");
    std::fs::write(&file, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = Command::new(python())
        .arg(repo_root().join("tests/python/triton_grpc.py"))
        .args([s.addr.to_string(), grpc.to_string(), "resnet-light".into(), "spare".into()])
        .arg(&file)
        .args([n.to_string(), KEY.to_string()])
        .output()
        .expect("running triton_grpc.py");
    assert!(out.status.success(), "triton_grpc.py failed:\n{}\n{}\nserver log:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr), s.log());
    let v: Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");

    // Keys: health open; no key or a wrong one is UNAUTHENTICATED / 401, with the reason.
    assert_eq!((v["live_without_key"].as_bool(), v["ready_without_key"].as_bool()), (Some(true), Some(true)));
    for (case, status) in [("grpc_no_key", "StatusCode.UNAUTHENTICATED"), ("grpc_wrong_key", "StatusCode.UNAUTHENTICATED"), ("http_no_key", "401"), ("http_wrong_key", "401")] {
        let (got, message) = failure(&v[case]);
        assert_eq!(got, status, "{case}: {message}");
        assert!(message.contains(if case.ends_with("no_key") { "Authorization: Bearer" } else { "not valid" }), "{case}: {message}");
    }

    // Metadata as over REST.
    let extensions = v["server_metadata"]["extensions"].as_array().unwrap();
    for ext in ["binary_tensor_data", "statistics", "model_repository"] {
        assert!(extensions.iter().any(|e| e == ext), "{ext} in {extensions:?}");
    }
    assert_eq!(v["metadata"]["inputs"][0]["shape"], serde_json::json!(["-1", "3", "32", "32"]), "int64 shapes print as strings in proto JSON");
    assert_eq!(v["metadata"]["outputs"][0]["name"], "logits");
    assert_eq!(v["model_ready"], true);

    // Inference: both gRPC forms, HTTP and ONNX Runtime agree.
    let reference = direct_logits(&models.join("resnet-light.onnx"), &input, n);
    let http = logits(&v["http"]);
    for form in ["grpc_raw", "grpc_contents"] {
        let got = logits(&v[form]);
        assert!(max_abs_diff(&got, &http) <= 1e-6, "{form} vs tritonclient.http: {:e}", max_abs_diff(&got, &http));
        assert!(max_abs_diff(&got, &reference) <= 1e-5, "{form} vs ONNX Runtime: {:e}", max_abs_diff(&got, &reference));
    }
    assert_eq!(v["grpc_contents_shape"], serde_json::json!([n, 10]));

    // Bad input: a status that says what was wrong, and the server serves on.
    for (case, status, needle) in [
        ("shape", "INVALID_ARGUMENT", "expected [N, 3, 32, 32]"),
        ("dtype", "INVALID_ARGUMENT", "FP64"),
        ("bytes", "INVALID_ARGUMENT", "needs 12288"),
        ("model", "NOT_FOUND", "no-such-model"),
        ("too_large", "RESOURCE_EXHAUSTED", "limit of 1048576 bytes (--max-body)"),
    ] {
        let (got, message) = failure(&v["bad"][case]);
        assert_eq!(got, status, "{case}: {message}");
        assert!(message.contains(needle), "{case}: {message}");
    }
    let (got, message) = failure(&v["bad"]["version"]);
    assert_eq!(got, "StatusCode.NOT_FOUND", "{message}");
    assert!(max_abs_diff(&logits(&v["after_bad"]), &reference[..10]) <= 1e-5);

    // The repository over both protocols.
    let names = |index: &Value| index.as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap().to_string(), m["state"].as_str().unwrap().to_string())).collect::<Vec<_>>();
    let ready = vec![("resnet-light".to_string(), "READY".to_string()), ("spare".to_string(), "READY".to_string())];
    assert_eq!(names(&v["index_grpc"]), ready);
    assert_eq!(names(&v["index_http"]), ready);
    assert_eq!(v["spare_ready_after_unload"], false);
    let unloaded = &v["spare_index_after_unload"][0];
    assert_eq!(unloaded["state"], "UNAVAILABLE");
    assert!(unloaded["reason"].as_str().unwrap().contains("unloaded"), "{unloaded}");
    let (got, message) = failure(&v["spare_infer_after_unload"]);
    assert_eq!(got, "StatusCode.NOT_FOUND", "{message}");
    assert!(message.contains("not serving"), "{message}");
    assert_eq!((v["spare_ready_after_http_load"].as_bool(), v["spare_ready_after_grpc_load"].as_bool()), (Some(true), Some(true)));
    for (case, status) in [("load_missing_grpc", "StatusCode.NOT_FOUND"), ("load_missing_http", "404"), ("load_with_config", "StatusCode.INVALID_ARGUMENT")] {
        let (got, message) = failure(&v[case]);
        assert_eq!(got, status, "{case}: {message}");
    }

    // Statistics: the same counts through both clients (the later HTTP read sees the same
    // successes: nothing ran between the two reads).
    let successes = |stats: &Value| stats["model_stats"][0]["inference_stats"]["success"]["count"].to_string().trim_matches('"').parse::<u64>().unwrap();
    assert_eq!(successes(&v["stats_grpc"]), 4, "raw, contents, HTTP, after_bad: {}", v["stats_grpc"]);
    assert_eq!(successes(&v["stats_http"]), 4);
    assert_eq!(v["stats_all_grpc"], serde_json::json!(["resnet-light", "spare"]));

    // gRPC calls are counted under their own series.
    let metrics = get(&s.u("/metrics")).text();
    assert_eq!(metric(&metrics, "cifar_serve_grpc_requests_total{code=\"Ok\",method=\"ModelInfer\",model=\"resnet-light\"}"), Some(3.0), "{metrics}");
    assert!(metric(&metrics, "cifar_serve_grpc_requests_total{code=\"Unauthenticated\",method=\"ModelMetadata\",model=\"resnet-light\"}").is_some_and(|c| c >= 2.0));
    assert!(metric(&metrics, "cifar_serve_images_total{model=\"resnet-light\"}").is_some_and(|c| c >= 7.0));
}
