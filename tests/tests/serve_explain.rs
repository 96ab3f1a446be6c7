//! `POST /v1/models/{name}/explain` against a model whose answer is known: a synthetic file
//! (`tests/python/bright_patch_model.py`) in which class 3 is the sum of one 4×4 patch, fed a
//! dark picture with that patch bright. The map must find the patch, and the occluded copies
//! must run as one ONNX Runtime call.

mod common;

use common::*;
use std::process::Command;
use std::sync::OnceLock;

const CLASS: usize = 3;
/// The decisive patch: pixels y 8..12, x 20..24, cell (2, 5) of the default 4×4 / stride-4 grid.
const ROW: usize = 8;
const COL: usize = 20;
const PATCH: usize = 4;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = model_dir(&[]);
        let python = repo_root().join(".venv-tools/bin/python");
        assert!(python.is_file(), "{} is missing: run `bash scripts/setup.sh`", python.display());
        let out = Command::new(&python)
            .arg(repo_root().join("tests/python/bright_patch_model.py"))
            .arg(dir.join("resnet-light.onnx"))
            .arg(dir.join("patch.onnx"))
            .args([CLASS, ROW, COL, PATCH].map(|n| n.to_string()))
            .output()
            .expect("running bright_patch_model.py");
        assert!(out.status.success(), "bright_patch_model.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
        // The metrics test's own copy: the other tests run beside it.
        std::fs::copy(dir.join("patch.onnx"), dir.join("counted.onnx")).unwrap();
        Server::start_for_process(dir, &["--max-batch", "64"])
    })
}

/// Black, with the decisive patch white.
fn picture() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        let inside = (ROW..ROW + PATCH).contains(&(y as usize)) && (COL..COL + PATCH).contains(&(x as usize));
        image::Rgb(if inside { [255; 3] } else { [0; 3] })
    });
    encode(&img, image::ImageFormat::Png)
}

fn explain(s: &Server, model: &str, query: &str) -> Reply {
    post(&s.u(&format!("/v1/models/{model}/explain{query}")), "image/png", &picture())
}

fn cells(body: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(body["grid"].clone()).expect("grid of numbers")
}

#[test]
fn the_hottest_cell_is_the_decisive_patch() {
    let s = server();
    let r = explain(s, "patch", "");
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!((body["class_id"].as_u64(), body["label"].as_str()), (Some(CLASS as u64), Some("cat")));
    assert_eq!((body["patch"].as_u64(), body["stride"].as_u64(), body["rows"].as_u64(), body["cols"].as_u64()), (Some(4), Some(4), Some(8), Some(8)));
    assert_eq!(body["copies"].as_u64(), Some(64));
    assert!(body["probability"].as_f64().unwrap() > 0.999, "{body}");
    assert_eq!(body["hottest"], serde_json::json!([ROW / 4, COL / 4]));
    let grid = cells(&body);
    assert_eq!((grid.len(), grid[0].len()), (8, 8));
    for (r, row) in grid.iter().enumerate() {
        for (c, &drop) in row.iter().enumerate() {
            if (r, c) == (ROW / 4, COL / 4) {
                assert!(drop > 0.99, "the patch's cell drops only {drop}");
            } else {
                assert!(drop.abs() < 1e-4, "cell ({r}, {c}) drops {drop}, though it misses the patch");
            }
        }
    }
    // Overlapping 8×8 patches at stride 4: the hottest cell covers the whole decisive patch.
    let body = explain(s, "patch", "?patch=8&stride=4").json();
    assert_eq!((body["rows"].as_u64(), body["copies"].as_u64()), (Some(7), Some(49)), "{body}");
    let (y, x) = (body["hottest"][0].as_u64().unwrap() as usize * 4, body["hottest"][1].as_u64().unwrap() as usize * 4);
    assert!(y <= ROW && ROW + PATCH <= y + 8 && x <= COL && COL + PATCH <= x + 8, "hottest patch at y {y}, x {x}: {body}");
}

#[test]
fn a_chosen_class_and_the_png_overlay() {
    let s = server();
    // Class 0 has logit 0 throughout: hiding the patch raises it from ~0 to 1/9 (class 3's
    // logit turns very negative, nine classes tie).
    let body = explain(s, "patch", "?class=0").json();
    assert_eq!((body["class_id"].as_u64(), body["label"].as_str()), (Some(0), Some("airplane")));
    let drop = cells(&body)[ROW / 4][COL / 4];
    assert!((drop + 1.0 / 9.0).abs() < 1e-3, "P(airplane) should rise by 1/9, drop {drop}");

    let r = explain(s, "patch", "?format=png");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("x-explain-class"), Some("3 cat"));
    let png = image::load_from_memory_with_format(&r.body, image::ImageFormat::Png).expect("a PNG").to_rgb8();
    assert_eq!(png.dimensions(), (256, 256));
    let hot = png.get_pixel((COL as u32 + 2) * 8, (ROW as u32 + 2) * 8).0;
    assert!(hot[0] > 230 && hot[1] < 130 && hot[2] < 130, "the patch is not red: {hot:?}");
    assert_eq!(png.get_pixel(4, 250).0, [0, 0, 0], "a cell without drop keeps the picture");
}

#[test]
fn the_copies_run_as_one_onnx_runtime_call() {
    let s = server();
    let series = |name: &str| format!("cifar_serve_{name}{{model=\"counted\"}}");
    let bucket = |le: &str| format!("cifar_serve_batch_size_bucket{{model=\"counted\",le=\"{le}\"}}");
    let read = || {
        let text = get(&s.u("/metrics")).text();
        let m = |name: &str| metric(&text, name).unwrap_or(0.0);
        [m(&series("batch_size_count")), m(&series("batch_size_sum")), m(&bucket("32")), m(&bucket("64")), m(&series("images_total"))]
    };
    let before = read();
    assert_eq!(explain(s, "counted", "").status, 200);
    let after = read();
    let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    // Two calls: the unoccluded image alone (1 + 64 exceeds --max-batch 64), then all 64 copies.
    assert_eq!(delta, [2.0, 65.0, 1.0, 2.0, 65.0], "count, sum, ≤32, ≤64, images");
}

#[test]
fn bad_parameters_and_unknown_models() {
    let s = server();
    for query in [
        "?patch=1",
        "?patch=17",
        "?patch=4&stride=0",
        "?patch=4&stride=5",
        "?patch=x",
        "?class=10",
        "?class=dog",
        "?format=gif",
        "?colour=red",
        "?patch=2&stride=1", // 961 copies > --max-batch 64
    ] {
        let r = explain(s, "patch", query);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        r.error();
    }
    let msg = explain(s, "patch", "?patch=2&stride=2").error();
    assert!(msg.contains("256") && msg.contains("--max-batch"), "{msg}");
    let r = explain(s, "nope", "");
    assert_eq!(r.status, 404);
    r.error();
    let (ct, body) = multipart(&[("image", &picture()), ("image", &picture())]);
    let r = post(&s.u("/v1/models/patch/explain"), &ct, &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("one image"));
    let r = post(&s.u("/v1/models/patch/explain"), "image/png", b"not an image");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(get(&s.u("/v1/models/patch/explain")).status, 405);
}
