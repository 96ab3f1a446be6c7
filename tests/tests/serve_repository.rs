//! The live model repository: `serve --watch` following the folder (add, break, swap under
//! load, remove) and the load API's confinement to the folder.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A resnet-light with other weights than `model_dir`'s (seed 8, not 7), exported once.
fn other_weights() -> PathBuf {
    static FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let file = process_temp_dir("other").join("resnet-light-seed8.onnx");
        export_seeded("resnet-light", 8, &file);
        file
    })
    .clone()
}

/// Writes `bytes` as `dir/name` in one step (a rename), as deployment tools do.
fn install(dir: &Path, name: &str, bytes: &[u8]) {
    let part = dir.join(format!(".{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, dir.join(name)).unwrap();
}

fn infer_body(input: &[f32]) -> Vec<u8> {
    json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": input}]}).to_string().into_bytes()
}

/// The logits of one image through V2 JSON; the status when it fails.
fn infer(s: &Server, model: &str, input: &[f32]) -> Result<Vec<f32>, (u16, String)> {
    let r = post(&s.u(&format!("/v2/models/{model}/infer")), "application/json", &infer_body(input));
    if r.status != 200 {
        return Err((r.status, r.text()));
    }
    Ok(serde_json::from_value::<Vec<f64>>(r.json()["outputs"][0]["data"].clone()).unwrap().into_iter().map(|x| x as f32).collect())
}

fn index(s: &Server) -> Vec<Value> {
    let r = post(&s.u("/v2/repository/index"), "application/json", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

fn entry(s: &Server, name: &str) -> Option<Value> {
    index(s).into_iter().find(|e| e["name"] == name)
}

#[test]
fn watch_follows_the_folder_and_swaps_without_failing_a_request() {
    let models = model_dir(&[]);
    let s = Server::start(&models, &["--watch", "--watch-interval-ms", "100"]);
    let image = cifar_models::testdata::images(1, 5);
    let a = direct_logits(&models.join("resnet-light.onnx"), &image, 1);
    let b = direct_logits(&other_weights(), &image, 1);
    assert!(max_abs_diff(&a, &b) > 1e-2, "the two models must answer differently for the test to mean anything");

    // A new file appears in the index and serves.
    let b_bytes = std::fs::read(other_weights()).unwrap();
    install(&models, "second.onnx", &b_bytes);
    wait_until("second.onnx is loaded", || entry(&s, "second").is_some_and(|e| e["state"] == "READY"));
    assert!(max_abs_diff(&infer(&s, "second", &image).unwrap(), &b) <= 1e-5);

    // A broken file leaves the old model serving; the index and a metric say why.
    install(&models, "second.onnx", b"not an ONNX model");
    wait_until("the broken reload is reported", || entry(&s, "second").is_some_and(|e| e["reason"].as_str().unwrap_or("").contains("last load failed")));
    let e = entry(&s, "second").unwrap();
    assert_eq!(e["state"], "READY", "{e}");
    assert!(max_abs_diff(&infer(&s, "second", &image).unwrap(), &b) <= 1e-5, "the old model still answers");
    let metrics = get(&s.u("/metrics")).text();
    assert_eq!(metric(&metrics, "cifar_serve_model_loads_total{model=\"second\",outcome=\"failed\"}"), Some(1.0), "{metrics}");
    assert!(s.log().contains("second: the last load failed"), "logged");

    // Removed: 404 once the watcher has seen it, and gone from the index.
    std::fs::remove_file(models.join("second.onnx")).unwrap();
    wait_until("second is unloaded", || get(&s.u("/v2/models/second")).status == 404);
    assert!(entry(&s, "second").is_none());

    // A swap under load: every request succeeds and answers as one of the two models.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url, body) = (stop.clone(), s.u("/v2/models/resnet-light/infer"), infer_body(&image));
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let r = post(&url, "application/json", &body);
                    answers.push((r.status, r.text()));
                }
                answers
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    install(&models, "resnet-light.onnx", &b_bytes);
    wait_until("the new weights answer", || infer(&s, "resnet-light", &image).is_ok_and(|l| max_abs_diff(&l, &b) <= 1e-5));
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, Ordering::Release);
    let (mut old, mut new) = (0, 0);
    for answers in clients.into_iter().map(|c| c.join().unwrap()) {
        for (status, text) in answers {
            assert_eq!(status, 200, "a request failed during the swap: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            let l: Vec<f32> = serde_json::from_value::<Vec<f64>>(v["outputs"][0]["data"].clone()).unwrap().into_iter().map(|x| x as f32).collect();
            match (max_abs_diff(&l, &a) <= 1e-4, max_abs_diff(&l, &b) <= 1e-4) {
                (true, _) => old += 1,
                (_, true) => new += 1,
                _ => panic!("an answer from neither model: {l:?}"),
            }
        }
    }
    assert!(old > 0 && new > 0, "requests ran on both sides of the swap ({old} old, {new} new)");
    assert!(s.log().contains("model resnet-light: reloaded"), "{}", s.log());
}

#[test]
fn loads_stay_inside_the_model_folder() {
    let models = model_dir(&[]);
    let s = Server::start(&models, &[]);
    // Links made after start-up (at start-up a file that cannot be served stops the server).
    let outside = process_temp_dir("outside");
    std::fs::copy(models.join("resnet-light.onnx"), outside.join("secret.onnx")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.onnx"), models.join("escape.onnx")).unwrap();
    // A link to a file inside the folder is fine.
    std::os::unix::fs::symlink(models.join("resnet-light.onnx"), models.join("alias.onnx")).unwrap();
    let load = |name: &str| post(&s.u(&format!("/v2/repository/models/{name}/load")), "application/json", b"{}");

    let r = load("escape");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("outside the model folder"), "{}", r.text());
    assert_eq!(get(&s.u("/v2/models/escape")).status, 404);
    for name in ["%2E%2E", "..%2Fresnet-light", "%2Fetc%2Fpasswd", ".hidden"] {
        let r = load(name);
        assert_eq!(r.status, 404, "{name}: {}", r.text());
    }
    assert_eq!(load("alias").status, 200);
    assert_eq!(get(&s.u("/v2/models/alias/ready")).status, 200);
    // Load bodies that ask for what this server cannot do are refused, not half-honoured.
    let r = post(&s.u("/v2/repository/models/alias/load"), "application/json", br#"{"parameters": {"config": "{}"}}"#);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("model folder"), "{}", r.text());
    // Unload, then the index says so and the name answers 404 with the reason.
    assert_eq!(post(&s.u("/v2/repository/models/alias/unload"), "application/json", b"").status, 200);
    let r = get(&s.u("/v2/models/alias"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("unloaded by request"), "{}", r.text());
    assert_eq!(entry(&s, "alias").unwrap()["state"], "UNAVAILABLE");
    assert_eq!(post(&s.u("/v2/repository/models/nobody/unload"), "application/json", b"").status, 404);
    let ready: Vec<Value> = serde_json::from_slice(&post(&s.u("/v2/repository/index"), "application/json", br#"{"ready": true}"#).body).unwrap();
    assert!(ready.iter().all(|e| e["state"] == "READY") && ready.iter().any(|e| e["name"] == "resnet-light"), "{ready:?}");
}
