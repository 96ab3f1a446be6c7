//! A real client against `serve`: the official KServe V2 / Triton Python client (JSON and
//! binary tensors). The page in headless Chromium is `serve_page.rs`.
//!
//! The client comes from `scripts/setup.sh` (`.venv-tools` with tritonclient[http]); a missing
//! tool fails the test with the command that installs it.

mod common;

use common::*;
use std::process::Command;

fn server() -> &'static Server {
    Server::shared(&[])
}

#[test]
fn tritonclient_works_with_json_and_binary_tensors() {
    let s = server();
    let python = repo_root().join(".venv-tools/bin/python");
    assert!(python.is_file(), "{} is missing: run `bash scripts/setup.sh`", python.display());
    let n = 4;
    let input = cifar_models::testdata::images(n, 23);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.f32");
    std::fs::write(&file, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let out = Command::new(&python)
        .arg(repo_root().join("tests/python/triton_client.py"))
        .arg(s.addr.to_string())
        .arg("resnet-light")
        .arg(&file)
        .arg(n.to_string())
        .output()
        .expect("running the Python client");
    assert!(out.status.success(), "triton_client.py failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    assert_eq!((v["live"].as_bool(), v["ready"].as_bool(), v["model_ready"].as_bool()), (Some(true), Some(true), Some(true)));
    assert_eq!(v["metadata"]["inputs"][0]["shape"], serde_json::json!([-1, 3, 32, 32]));
    let reference = direct_logits(&s.models.join("resnet-light.onnx"), &input, n);
    for mode in ["json", "binary", "default"] {
        let logits: Vec<f32> = serde_json::from_value::<Vec<f64>>(v[mode].clone()).unwrap().into_iter().map(|x| x as f32).collect();
        let diff = max_abs_diff(&logits, &reference);
        assert!(diff <= 1e-5, "{mode}: max |diff| {diff:e}");
    }
    let err = v["error"].as_str().expect("a bad shape raises in the client");
    assert!(err.contains("shape"), "{err}");
}
