//! `serve` end to end over HTTP: every endpoint, agreement with a direct ONNX Runtime run,
//! batching, metrics, and every kind of bad input (the server keeps serving after each).
//!
//! One server per test process (`Server::shared`) serving a seeded fresh export of
//! resnet-light twice: as `resnet-light` (the default) and as `batching`, which only the
//! batching test uses so that its batch-size histogram is its own.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn server() -> &'static Server {
    Server::shared(&["batching"])
}

/// A good request after a bad one still succeeds.
fn still_serving(s: &Server) {
    let r = post(&s.u("/v1/classify"), "image/png", &png(40, 30));
    assert_eq!(r.status, 200, "the server stopped serving: {}", r.text());
}

fn predictions(v: &Value, image: usize) -> Vec<(String, f64)> {
    v["results"][image]["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions in {v}"))
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_string(), p["probability"].as_f64().unwrap()))
        .collect()
}

#[test]
fn health_readiness_page_and_server_metadata() {
    let s = server();
    let r = get(&s.u("/healthz"));
    assert_eq!((r.status, r.json()["status"].clone()), (200, json!("ok")));
    let r = get(&s.u("/readyz"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["models"], json!(["batching", "resnet-light"]));
    assert_eq!(get(&s.u("/v2/health/live")).status, 200);
    assert_eq!(get(&s.u("/v2/health/ready")).status, 200);
    let meta = get(&s.u("/v2")).json();
    assert_eq!(meta["name"], "cifar-serve");
    assert!(meta["extensions"].as_array().unwrap().contains(&json!("binary_tensor_data")));

    let page = get(&s.u("/"));
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'none'"));
    let html = page.text();
    assert!(html.contains("<svg id=\"chart\"") && html.contains("/v1/models") && html.contains("/explain"));
    for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import"] {
        assert!(!html.contains(external), "the page loads an external asset ({external})");
    }
}

#[test]
fn models_are_listed_with_their_metadata() {
    let s = server();
    let list = get(&s.u("/v1/models")).json();
    assert_eq!(list["default"], "resnet-light");
    let models = list["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let m = get(&s.u("/v1/models/resnet-light")).json();
    assert_eq!(m["name"], "resnet-light");
    assert_eq!(m["architecture"], "resnet-light");
    assert_eq!(m["default"], true);
    assert_eq!(m["params"], 310_474);
    assert_eq!(m["macs_per_image"].as_u64().unwrap() / 1_000_000, 69); // 69.44 MMACs
    assert!((m["seed_gmacs_batch128"].as_f64().unwrap() - 8.95).abs() < 0.01, "{m}");
    assert_eq!(m["val_acc"], Value::Null, "a fresh export has no accuracy");
    assert_eq!(m["input"]["shape"], json!([-1, 3, 32, 32]));
    assert_eq!(m["output"]["shape"], json!([-1, 10]));
    assert_eq!(m["classes"][3], "cat");
    assert_eq!(m["device"], "cpu");
    assert_eq!(m["precision"], "f32");

    let r = get(&s.u("/v1/models/no-such-model"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no-such-model"));

    let v2 = get(&s.u("/v2/models/resnet-light")).json();
    assert_eq!(v2["inputs"][0], json!({"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}));
    assert_eq!(v2["outputs"][0], json!({"name": "logits", "datatype": "FP32", "shape": [-1, 10]}));
    assert_eq!(v2["versions"], json!(["1"]));
    assert_eq!(v2["parameters"]["precision"], "f32");
    assert_eq!(get(&s.u("/v2/models/resnet-light/versions/1")).json(), v2);
    assert_eq!(get(&s.u("/v2/models/resnet-light/ready")).status, 200);
    assert_eq!(get(&s.u("/v2/models/resnet-light/versions/1/ready")).status, 200);
    assert_eq!(get(&s.u("/v2/models/resnet-light/versions/2")).status, 404);
    assert_eq!(get(&s.u("/v2/models/nope/ready")).status, 404);
    assert_eq!(get(&s.u("/v2/models/nope")).status, 404);
}

#[test]
fn classify_accepts_raw_multipart_and_json_bodies_alike() {
    let s = server();
    let img = picture(48, 40, 3);
    let png = encode(&img, image::ImageFormat::Png);
    let raw = post(&s.u("/v1/classify"), "image/png", &png);
    assert_eq!(raw.status, 200, "{}", raw.text());
    let raw = raw.json();
    assert_eq!(raw["model"], "resnet-light");
    assert!(raw["latency_ms"].as_f64().unwrap() >= 0.0);
    let expected = predictions(&raw, 0);
    assert_eq!(expected.len(), 5, "top_k defaults to 5");
    assert!(expected.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {expected:?}");

    // Content-Type is not needed: images are recognised by their content.
    let named = post(&s.u("/v1/models/resnet-light/classify"), "application/octet-stream", &png).json();
    assert_eq!(predictions(&named, 0), expected);

    let jpeg = encode(&img, image::ImageFormat::Jpeg);
    let (ct, body) = multipart(&[("image", &png), ("note", b"ignored"), ("image", &jpeg)]);
    let multi = post(&s.u("/v1/classify?top_k=3"), &ct, &body);
    assert_eq!(multi.status, 200, "{}", multi.text());
    let multi = multi.json();
    assert_eq!(multi["results"].as_array().unwrap().len(), 2);
    assert_eq!(predictions(&multi, 0), expected[..3].to_vec());
    assert_eq!(predictions(&multi, 1).len(), 3);

    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let body = json!({"images": [b64.clone(), format!("data:image/png;base64,{b64}")]}).to_string();
    let js = post(&s.u("/v1/models/resnet-light/classify?top_k=10"), "application/json", body.as_bytes());
    assert_eq!(js.status, 200, "{}", js.text());
    let js = js.json();
    let all = predictions(&js, 1);
    assert_eq!(all.len(), 10);
    assert!((all.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-4, "probabilities sum to 1");
    assert_eq!(all[..5].to_vec(), expected);
    // top_k beyond the classes is capped.
    assert_eq!(predictions(&post(&s.u("/v1/classify?top_k=50"), "image/png", &png).json(), 0).len(), 10);
}

#[test]
fn every_accepted_format_of_any_size_classifies() {
    let s = server();
    for (format, w, h) in [
        (image::ImageFormat::Png, 1, 1),
        (image::ImageFormat::Jpeg, 640, 480),
        (image::ImageFormat::Bmp, 33, 97),
        (image::ImageFormat::Gif, 32, 32),
        (image::ImageFormat::WebP, 100, 60),
    ] {
        let r = post(&s.u("/v1/classify"), "application/octet-stream", &encode(&picture(w, h, 5), format));
        assert_eq!(r.status, 200, "{format:?} {w}×{h}: {}", r.text());
    }
}

#[test]
fn classify_equals_a_direct_run_on_the_documented_preprocessing() {
    let s = server();
    let png = png(70, 50);
    let meta = get(&s.u("/v1/models/resnet-light")).json();
    let f = |k: &str| -> [f32; 3] { serde_json::from_value(meta[k].clone()).unwrap() };
    let norm = cifar_serve::preprocess::Normalisation { mean: f("mean"), std: f("std") };
    let input = cifar_serve::preprocess::preprocess(&png, &norm).unwrap();
    let probs = cifar_serve::predict::softmax(&direct_logits(&s.models.join("resnet-light.onnx"), &input, 1));
    let answer = post(&s.u("/v1/classify?top_k=10"), "image/png", &png).json();
    for p in answer["results"][0]["predictions"].as_array().unwrap() {
        let id = p["class_id"].as_u64().unwrap() as usize;
        assert!((p["probability"].as_f64().unwrap() as f32 - probs[id]).abs() < 1e-5, "class {id}: {p} vs {}", probs[id]);
    }
}

#[test]
fn v2_logits_equal_a_direct_onnx_runtime_run_json_and_binary() {
    let s = server();
    let n = 3;
    let input = cifar_models::testdata::images(n, 11);
    let reference = direct_logits(&s.models.join("resnet-light.onnx"), &input, n);

    let body = json!({"id": "req-1", "inputs": [{"name": "input", "shape": [n, 3, 32, 32], "datatype": "FP32", "data": input}]});
    let r = post(&s.u("/v2/models/resnet-light/infer"), "application/json", body.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["model_name"], "resnet-light");
    assert_eq!(v["outputs"][0]["shape"], json!([n, 10]));
    let logits: Vec<f32> = serde_json::from_value(v["outputs"][0]["data"].clone()).unwrap();
    let diff = max_abs_diff(&logits, &reference);
    assert!(diff <= 1e-5, "JSON: max |diff| {diff:e}");

    // The binary extension both ways, on the versioned path.
    let head = json!({"inputs": [{"name": "input", "shape": [n, 3, 32, 32], "datatype": "FP32",
        "parameters": {"binary_data_size": n * 3072 * 4}}],
        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}]})
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend(input.iter().flat_map(|v| v.to_le_bytes()));
    let len = head.len().to_string();
    let r = post_with(
        &s.u("/v2/models/resnet-light/versions/1/infer"),
        &[("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", &len)],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let head_len: usize = r.header("inference-header-content-length").expect("binary answer header").parse().unwrap();
    let head: Value = serde_json::from_slice(&r.body[..head_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], n * 10 * 4);
    let logits: Vec<f32> = r.body[head_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let diff = max_abs_diff(&logits, &reference);
    assert!(diff <= 1e-5, "binary: max |diff| {diff:e}");
}

#[test]
fn v2_tensors_of_wrong_shape_datatype_or_length_are_400() {
    let s = server();
    let url = s.u("/v2/models/resnet-light/infer");
    let one = cifar_models::testdata::images(1, 1);
    let cases = vec![
        json!({"inputs": [{"name": "input", "shape": [1, 3, 28, 28], "datatype": "FP32", "data": one}]}),
        json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "INT64", "data": one}]}),
        json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": one[..100]}]}),
        json!({"inputs": [{"name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32", "data": one}]}),
        json!({"inputs": [{"name": "image", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": one}]}),
        json!({"inputs": []}),
        json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": one}], "outputs": [{"name": "probs"}]}),
    ];
    for body in cases {
        let r = post(&url, "application/json", body.to_string().as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        r.error();
    }
    let r = post(&url, "application/json", b"{not json");
    assert_eq!(r.status, 400);
    r.error();
    // Binary: declared size wrong for the shape, and binary section shorter than declared.
    for (declared, sent) in [(3072 * 4 - 4, 3072 * 4 - 4), (3072 * 4, 3072 * 4 - 1), (3072 * 4, 3072 * 4 + 8)] {
        let head = json!({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
            "parameters": {"binary_data_size": declared}}]})
        .to_string();
        let mut body = head.clone().into_bytes();
        body.extend(std::iter::repeat_n(0u8, sent));
        let len = head.len().to_string();
        let r = post_with(&url, &[("Inference-Header-Content-Length", &len)], &body);
        assert_eq!(r.status, 400, "declared {declared}, sent {sent}: {}", r.text());
        r.error();
    }
    let r = post_with(&url, &[("Inference-Header-Content-Length", "999999")], b"{}");
    assert_eq!(r.status, 400);
    assert_eq!(post(&s.u("/v2/models/nope/infer"), "application/json", b"{}").status, 404);
    still_serving(s);
}

#[test]
fn bad_images_are_refused_and_the_server_keeps_serving() {
    let s = server();
    let url = s.u("/v1/classify");
    let good = png(64, 64);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", vec![], 400, "empty"),
        ("text", b"this is not an image at all".to_vec(), 400, "not an image"),
        ("truncated PNG", good[..good.len() / 2].to_vec(), 400, "decoded"),
        ("TIFF", b"II*\0\x08\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(), 415, "not supported"),
    ];
    for (what, body, status, needle) in cases {
        let r = post(&url, "application/octet-stream", &body);
        assert_eq!(r.status, status, "{what}: {}", r.text());
        let msg = r.error();
        assert!(msg.contains(needle), "{what}: {msg}");
        still_serving(s);
    }
    let (ct, body) = multipart(&[("photo", &good)]);
    let r = post(&url, &ct, &body);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("image"));
    let (ct, body) = multipart(&[("image", &good), ("image", b"garbage")]);
    let r = post(&url, &ct, &body);
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("image 2 of 2"), "the failing image is named");
    for body in [&b"{\"images\": [\"%%%\"]}"[..], b"{\"pictures\": []}", b"[1, 2"] {
        let r = post(&url, "application/json", body);
        assert_eq!(r.status, 400, "{}", r.text());
        r.error();
    }
    for q in ["top_k=0", "top_k=-1", "top_k=five"] {
        let r = post(&format!("{url}?{q}"), "image/png", &good);
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        r.error();
    }
    let r = post(&s.u("/v1/models/no-such-model/classify"), "image/png", &good);
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no-such-model"));
    still_serving(s);
}

/// A 10,000×10,000 greyscale PNG of zeros: ~100 KB on the wire, 100 MB (300 MB as RGB) once
/// decoded.
fn png_bomb() -> Vec<u8> {
    use image::ImageEncoder;
    let side = 10_000u32;
    let pixels = vec![0u8; (side * side) as usize];
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(&mut out, image::codecs::png::CompressionType::Best, image::codecs::png::FilterType::NoFilter)
        .write_image(&pixels, side, side, image::ExtendedColorType::L8)
        .unwrap();
    out
}

#[test]
fn a_decompression_bomb_is_refused_quickly() {
    let s = server();
    let bomb = png_bomb();
    assert!(bomb.len() < 1 << 20, "the bomb is small on the wire ({} bytes)", bomb.len());
    let started = Instant::now();
    let r = post(&s.u("/v1/classify"), "image/png", &bomb);
    let took = started.elapsed();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.error().contains("too large"));
    // Refused from the header: far less than decoding 100 MB of pixels would take.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    still_serving(s);
}

#[test]
fn bodies_over_the_limit_are_413() {
    let s = server();
    let limit = 8 << 20; // the default --max-body, 8 MiB
    // Declared too large: refused from the header, before the body is sent.
    let head = format!("POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n", limit + 1);
    let (status, text) = raw_exchange(s.addr, &head, Vec::new());
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("\"error\"") && text.contains("--max-body"), "{text}");
    // Streamed without a length: refused once the limit is crossed.
    let head = "POST /v2/models/resnet-light/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut body = Vec::new();
    let chunk = vec![b'7'; 1 << 20];
    for _ in 0..9 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = raw_exchange(s.addr, head, body);
    assert_eq!(status, 413, "{text}");
    still_serving(s);
}

/// With the default policy (no gathering delay) batches form from the requests that arrive
/// while a batch runs: 32 requests at once cannot all run alone.
#[test]
fn concurrent_requests_are_batched() {
    let s = server();
    let url = s.u("/v1/models/batching/classify");
    let body = png(32, 32);
    for _round in 0..2 {
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (url, body) = (url.clone(), body.clone());
                std::thread::spawn(move || post(&url, "image/png", &body).status)
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 200);
        }
    }
    let text = get(&s.u("/metrics")).text();
    let count = metric(&text, "cifar_serve_batch_size_count{model=\"batching\"}").expect("batch-size histogram");
    let singles = metric(&text, "cifar_serve_batch_size_bucket{model=\"batching\",le=\"1\"}").unwrap();
    let images = metric(&text, "cifar_serve_batch_size_sum{model=\"batching\"}").unwrap();
    assert_eq!(images, 64.0, "every image ran once");
    assert!(singles < count, "no batch held more than one image: {count} batches of 64 images");
    assert!(count < 64.0, "{count} batches for 64 images");
}

#[test]
fn metrics_count_requests_by_model_endpoint_and_status() {
    let s = server();
    post(&s.u("/v1/classify"), "image/png", &png(32, 32));
    get(&s.u("/v1/models/unknown-model"));
    get(&s.u("/no/such/route"));
    let r = get(&s.u("/metrics"));
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("cifar_serve_"), "one prefix for every metric: {line}");
    }
    for name in [
        "cifar_serve_requests_total",
        "cifar_serve_request_duration_seconds_bucket",
        "cifar_serve_queue_time_seconds_bucket",
        "cifar_serve_batch_size_bucket",
        "cifar_serve_inference_duration_seconds_bucket",
        "cifar_serve_queue_depth",
        "cifar_serve_images_total",
        "cifar_serve_ready 1",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    let ok = metric(&text, "cifar_serve_requests_total{endpoint=\"/v1/classify\",model=\"resnet-light\",status=\"200\"}");
    assert!(ok.is_some_and(|v| v >= 1.0), "{text}");
    assert!(text.contains("endpoint=\"/v1/models/{name}\",model=\"unknown\",status=\"404\""), "{text}");
    assert!(text.contains("endpoint=\"unmatched\",model=\"\",status=\"404\""), "{text}");
}

#[test]
fn unknown_routes_and_methods_answer_json() {
    let s = server();
    let r = get(&s.u("/v3/nothing"));
    assert_eq!(r.status, 404);
    assert!(r.error().contains("/v3/nothing"));
    let r = get(&s.u("/v1/classify"));
    assert_eq!(r.status, 405);
    assert!(r.error().contains("GET"));
    let r = post(&s.u("/v1/models"), "application/json", b"{}");
    assert_eq!(r.status, 405);
    r.error();
}

/// An int8 file (from `train quantize`, calibrated on a few generated training images) serves
/// beside its f32 source, and both say which they are.
#[test]
fn int8_files_are_served_and_say_so() {
    let models = model_dir(&[]);
    let data = process_temp_dir("quantize-data");
    let records: Vec<u8> = (0..32u32).flat_map(|i| std::iter::once((i % 10) as u8).chain((0..3072u32).map(move |p| ((p * 7 + i * 31) % 256) as u8))).collect();
    std::fs::write(data.join("data_batch_1.bin"), records).unwrap();
    let out = std::process::Command::new(binary("cifar-train", "train"))
        .args(["quantize", "--calibration-images", "32", "--max-accuracy-drop", "off", "--onnx"])
        .arg(models.join("resnet-light.onnx"))
        .arg("--out")
        .arg(models.join("resnet-light-int8.onnx"))
        .arg("--data-dir")
        .arg(&data)
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "train quantize failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let s = Server::start(&models, &["--default", "resnet-light"]);
    let list = get(&s.u("/v1/models")).json();
    let precision: Vec<(&str, &str)> = list["models"].as_array().unwrap().iter().map(|m| (m["name"].as_str().unwrap(), m["precision"].as_str().unwrap())).collect();
    assert_eq!(precision, [("resnet-light", "f32"), ("resnet-light-int8", "int8")]);
    let m = get(&s.u("/v1/models/resnet-light-int8")).json();
    assert_eq!(m["architecture"], "resnet-light");
    assert_eq!(m["quantization"]["calibration_images"], 32);
    assert_eq!(m["test_acc"], Value::Null, "not measured: no test file");
    assert_eq!(get(&s.u("/v2/models/resnet-light-int8")).json()["parameters"]["precision"], "int8");
    let r = post(&s.u("/v1/models/resnet-light-int8/classify"), "image/png", &png(32, 32));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(predictions(&r.json(), 0).len(), 5);
}
