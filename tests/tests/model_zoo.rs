//! The shipped model zoo (`model-zoo/`): every model classifies the first 1,000 CIFAR-10 test
//! images over HTTP with the accuracy its metadata claims, every shipped file's metadata carries
//! exactly what its training run reported, the README's table shows those runs, and the
//! default model is the one the zoo's rule picks from its benchmark report.
//!
//! The images are `tests/fixtures/model-zoo/test-images.jpg` (a sprite written by
//! `cargo run -p cifar-train --example zoo_fixture`), labels in `test-labels.txt`.

mod common;

use base64::Engine;
use common::{get, post, repo_root, Server};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The zoo's default model, named in `model-zoo/DEFAULT` (which `scripts/serve-zoo.sh` reads).
fn default_model() -> String {
    std::fs::read_to_string(zoo().join("DEFAULT")).expect("model-zoo/DEFAULT names the default model").trim().to_string()
}
/// ±2 points on 1,000 images: sampling noise of a 1,000-image subset (σ ≈ 1.1 pt at 85 %)
/// plus the fixture's JPEG re-encoding.
const TOLERANCE: f64 = 0.02;

fn zoo() -> PathBuf {
    repo_root().join("model-zoo")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(zoo())
        .expect("model-zoo/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    files
}

/// The zoo's ONNX files in a temporary folder (the server writes its log next to the models).
fn served_zoo() -> Server {
    let dir = common::process_temp_dir("zoo");
    for f in shipped() {
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    Server::start(&dir, &["--default", &default_model()])
}

/// The fixture's images as PNG files (lossless from the decoded sprite) and their labels.
fn fixture() -> (Vec<Vec<u8>>, Vec<u32>) {
    let dir = repo_root().join("tests/fixtures/model-zoo");
    let sprite = image::open(dir.join("test-images.jpg")).expect("fixture sprite").to_rgb8();
    let labels: Vec<u32> = std::fs::read_to_string(dir.join("test-labels.txt"))
        .unwrap()
        .trim()
        .bytes()
        .map(|b| (b - b'0') as u32)
        .collect();
    let per_row = sprite.width() / 32;
    let images = (0..labels.len() as u32)
        .map(|i| {
            let tile = image::imageops::crop_imm(&sprite, (i % per_row) * 32, (i / per_row) * 32, 32, 32).to_image();
            let mut png = Vec::new();
            tile.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            png
        })
        .collect();
    (images, labels)
}

fn summary_of(onnx: &Path) -> Value {
    let name = onnx.file_stem().unwrap().to_str().unwrap();
    let path = zoo().join(name).join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn the_default_model_is_shipped() {
    let default = default_model();
    assert!(shipped().iter().any(|p| p.file_stem().unwrap() == default.as_str()), "model-zoo/{default}.onnx is shipped");
}

/// Every shipped model answers the first 1,000 test images over HTTP (`/v1/classify` for the
/// default, `/v1/models/NAME/classify` for the others) with the accuracy its metadata claims.
#[test]
fn every_shipped_model_classifies_the_first_1000_test_images_as_its_metadata_says() {
    let default = default_model();
    let server = served_zoo();
    let (images, labels) = fixture();
    assert_eq!(labels.len(), 1000);
    let mut misses = Vec::new();
    for f in shipped() {
        let name = f.file_stem().unwrap().to_str().unwrap().to_string();
        let info = get(&server.u(&format!("/v1/models/{name}"))).json();
        let claimed = info["test_acc"].as_f64().expect("the shipped model carries its test accuracy");
        let route = if name == default { "/v1/classify?top_k=1".to_string() } else { format!("/v1/models/{name}/classify?top_k=1") };
        let acc = http_accuracy(&server, &route, &name, &images, &labels);
        eprintln!("{name}: {acc:.3} on the first 1,000 test images over HTTP; metadata says {claimed:.4} on 10,000");
        if (acc - claimed).abs() > TOLERANCE {
            misses.push(format!("{name}: HTTP accuracy {acc:.3} vs metadata test accuracy {claimed:.4}"));
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
}

/// Top-1 accuracy of the model behind `route` on `images`, sent 50 per request as base64 JSON.
fn http_accuracy(server: &Server, route: &str, name: &str, images: &[Vec<u8>], labels: &[u32]) -> f64 {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut right = 0usize;
    for (chunk, truth) in images.chunks(50).zip(labels.chunks(50)) {
        let body = json!({"images": chunk.iter().map(|png| b64.encode(png)).collect::<Vec<_>>()}).to_string();
        let r = post(&server.u(route), "application/json", body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["model"], name, "{route}");
        for (i, &t) in truth.iter().enumerate() {
            let best = v["results"][i]["predictions"][0]["class_id"].as_u64().expect("a prediction per image");
            right += (best == t as u64) as usize;
        }
    }
    right as f64 / labels.len() as f64
}

#[test]
fn every_shipped_model_carries_what_its_training_run_reported() {
    let files = shipped();
    assert!(!files.is_empty());
    let server = served_zoo();
    for f in files {
        let name = f.file_stem().unwrap().to_str().unwrap();
        let s = summary_of(&f);
        let m = get(&server.u(&format!("/v1/models/{name}"))).json();
        assert_eq!(m["architecture"], s["model"], "{name}");
        assert_eq!(m["test_acc"].as_f64(), s["test_acc"].as_f64(), "{name}: test accuracy");
        assert_eq!(m["val_acc"].as_f64(), s["best_val_acc"].as_f64(), "{name}: validation accuracy");
        assert_eq!(m["epochs"].as_u64(), s["epochs"].as_u64(), "{name}: epochs");
        assert_eq!(m["params"].as_u64(), s["params"].as_u64(), "{name}: params");
        // An int8 file's summary says how it was quantized from its run's f32 file.
        let precision = if s["quantized"].is_object() { "int8" } else { "f32" };
        assert_eq!(m["precision"], precision, "{name}: precision");
        if precision == "int8" {
            let from = s["quantized"]["from"].as_str().unwrap();
            assert!(zoo().join(from).is_file(), "{name}: quantized from model-zoo/{from}, which is shipped");
        }
        // The reports that go with it.
        for report in ["metrics.csv", "curves.svg"] {
            assert!(zoo().join(name).join(report).is_file(), "model-zoo/{name}/{report}");
        }
    }
}

/// The README's zoo table prints what each shipped run measured, and lists nothing else: its
/// recipe, epochs, CPU-hours (training wall time × threads), accuracy here and the seed's, the
/// difference in test points, params and MMACs.
#[test]
fn the_readme_table_shows_what_each_shipped_model_reported() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, after) = readme.split_once("## Model zoo").expect("README has a Model zoo section");
    let rows: Vec<&str> = after.lines().skip_while(|l| !l.starts_with("| model")).skip(2).take_while(|l| l.starts_with('|')).collect();
    let files = shipped();
    assert_eq!(rows.len(), files.len(), "one README row per shipped model:\n{}", rows.join("\n"));
    for f in files {
        let expected = readme_row(f.file_stem().unwrap().to_str().unwrap(), &summary_of(&f));
        assert!(rows.contains(&expected.as_str()), "README lacks the row\n{expected}\nin:\n{}", rows.join("\n"));
    }
}

/// The row of the file shipped as `name`; an int8 file has no validation accuracy (none was
/// measured in int8), shown as "—".
fn readme_row(name: &str, s: &Value) -> String {
    let seed = cifar_models::info(s["model"].as_str().unwrap()).unwrap().seed;
    let pct = |k: &str| s[k].as_f64().unwrap() * 100.0;
    let val = s["best_val_acc"].as_f64().map_or("—".to_string(), |v| format!("{:.2}", v * 100.0));
    let recipe = s["recipe"]["preset"].as_str().unwrap_or("seed");
    let cpu_hours = s["train_seconds"].as_f64().unwrap() * s["threads"].as_f64().unwrap() / 3600.0;
    let digits = s["params"].to_string();
    let params: String = digits.chars().enumerate().flat_map(|(i, c)| (i > 0 && (digits.len() - i) % 3 == 0).then_some(',').into_iter().chain([c])).collect();
    format!(
        "| `{name}` | {recipe} | {} | {cpu_hours:.1} | {val} / {:.2} | {:.2} / {:.2} | {:+.2} | {params} | {:.2} |",
        s["epochs"],
        pct("test_acc"),
        seed.val_acc_pct,
        seed.test_acc_pct,
        pct("test_acc") - seed.test_acc_pct,
        s["macs_per_image"].as_f64().unwrap() / 1e6
    )
}

/// `model-zoo/report/` is the benchmark of the shipped zoo (regenerated when the zoo changes),
/// and `model-zoo/DEFAULT` names what its rule picks: the most accurate model whose batch-1
/// latency there is under 2 ms.
#[test]
fn the_zoo_report_covers_the_zoo_and_picks_the_default() {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(zoo().join("report/report.json")).expect("model-zoo/report/report.json")).unwrap();
    let models = report["models"].as_array().unwrap();
    let mut reported: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    reported.sort();
    let files = shipped();
    let mut names: Vec<&str> = files.iter().map(|f| f.file_stem().unwrap().to_str().unwrap()).collect();
    // Sorted as names: as paths, `a-int8.onnx` comes before `a.onnx`.
    names.sort();
    assert_eq!(reported, names, "the report benchmarks exactly the shipped models: regenerate it");
    for m in models {
        let s = summary_of(&zoo().join(format!("{}.onnx", m["name"].as_str().unwrap())));
        let here = (s["test_acc"].as_f64().unwrap() * 1e4).round() / 100.0;
        let reported = m["test_acc_pct"].as_f64().unwrap_or(f64::NAN);
        assert!((reported - here).abs() < 1e-9, "{}: the report says {reported} %, the file {here} %: regenerate it", m["name"]);
    }
    let b1_ms = |m: &Value| m["latency"].as_array().unwrap().iter().find(|l| l["batch_size"] == 1).and_then(|l| l["p50_ms"].as_f64()).unwrap();
    let pick = models
        .iter()
        .filter(|m| b1_ms(m) < 2.0)
        .max_by(|a, b| a["test_acc_pct"].as_f64().partial_cmp(&b["test_acc_pct"].as_f64()).unwrap())
        .expect("a shipped model answers one image in under 2 ms");
    assert_eq!(pick["name"].as_str().unwrap(), default_model(), "model-zoo/DEFAULT is not the rule's pick");
    for chart in ["accuracy_vs_gmacs.svg", "latency.svg", "throughput_vs_macs.svg"] {
        assert!(zoo().join("report").join(chart).is_file(), "model-zoo/report/{chart}");
    }
    assert!(zoo().join("report/report.md").is_file());
}
