//! `serve bench` end to end: a report of seeded fresh exports of all seven models (every file,
//! the documented JSON schema, the seed's figures reproduced), and the `--url` mode against a
//! running server. Small iteration counts: these check the report, not the speed.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

/// The seed README's figures, typed here on purpose (the code takes them from
/// `cifar_models::seed`): name, params, our MMACs per image, GMACs for a batch of 128.
const SEED_TABLE: [(&str, &str, &str, &str); 7] = [
    ("vgg", "1,110,826", "87.92", "11.28"),
    ("resnet-light", "310,474", "69.44", "8.95"),
    ("resnet-heavy", "3,921,994", "130.20", "16.73"),
    ("resnext-small", "1,087,114", "148.33", "19.19"),
    ("resnext-large", "3,090,058", "164.25", "21.23"),
    ("densenet-small", "508,447", "126.51", "16.30"),
    ("densenet-large", "1,098,724", "223.56", "28.75"),
];

fn serve_bench(args: &[&str]) -> Output {
    Command::new(binary("cifar-serve", "serve")).arg("bench").args(args).current_dir(repo_root()).output().expect("running serve bench")
}

/// `serve bench` with two timed iterations after one warm-up: enough to check the report.
fn quick_bench(models: &Path, out: &Path, batch_sizes: &str, extra: &[&str]) -> Output {
    let (models, out) = (models.to_str().unwrap(), out.to_str().unwrap());
    let base = ["--models", models, "--out", out, "--iters", "2", "--warmup", "1", "--batch-sizes", batch_sizes];
    serve_bench(&[&base[..], extra].concat())
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "serve bench failed ({}):\n{stderr}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The key paths the README documents for report.json: the first word of each line of the
/// block after `<!-- report.json keys -->`.
fn documented_keys() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (_, after) = readme.split_once("<!-- report.json keys -->").expect("README documents the report.json keys");
    let block = after.split("```").nth(1).expect("a fenced block of keys");
    block.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Maps whose keys are data (HTTP statuses), not schema.
const MAPS: [&str; 1] = ["models[].http.statuses"];

/// Every key path of `v` (`a.b`, `a[].c`), and the paths whose value is null or empty.
fn key_paths(v: &Value, prefix: &str, keys: &mut BTreeSet<String>, empty: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) if !MAPS.contains(&prefix) => {
            for (k, child) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                keys.insert(path.clone());
                key_paths(child, &path, keys, empty);
            }
        }
        Value::Array(items) => {
            if items.is_empty() {
                empty.insert(prefix.to_string());
            }
            items.iter().for_each(|item| key_paths(item, &format!("{prefix}[]"), keys, empty));
        }
        Value::Null => {
            empty.insert(prefix.to_string());
        }
        _ => {}
    }
}

/// No key is undocumented, and every documented key is there unless a parent is null.
fn check_schema(report: &Value) {
    let documented = documented_keys();
    let (mut keys, mut empty) = (BTreeSet::new(), BTreeSet::new());
    key_paths(report, "", &mut keys, &mut empty);
    let undocumented: Vec<_> = keys.difference(&documented).collect();
    assert!(undocumented.is_empty(), "report.json keys missing from the README's schema: {undocumented:?}");
    for key in &documented {
        let under_null = empty.iter().any(|e| key.starts_with(&format!("{e}.")) || key.starts_with(&format!("{e}[]")));
        assert!(keys.contains(key) || under_null, "documented key `{key}` is not in the report");
    }
    assert_eq!(report["schema_version"], 1);
}

fn model<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} not in the report"))
}

fn read_report(out: &Path) -> (Value, String) {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).expect("report.json is JSON");
    (json, std::fs::read_to_string(out.join("report.md")).unwrap())
}

#[test]
fn a_report_of_the_seven_fresh_models() {
    let models = process_temp_dir("zoo");
    for (name, ..) in SEED_TABLE {
        export(name, &models.join(format!("{name}.onnx")));
    }
    let out = process_temp_dir("report");
    let stdout = ok(&quick_bench(&models, &out, "4,1", &["--threads", "2", "--ort-spin", "off"]));
    for file in ["report.md", "report.json", "latency.svg", "throughput_vs_macs.svg"] {
        let path = out.join(file);
        assert!(path.is_file() && std::fs::metadata(&path).unwrap().len() > 0, "{file} missing");
        assert!(stdout.contains(&path.display().to_string()), "{file} not announced:\n{stdout}");
    }
    for svg in ["latency.svg", "throughput_vs_macs.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.contains("<svg") && text.contains("resnet-light"), "{svg} has no chart of the models");
    }
    assert!(!out.join("accuracy_vs_gmacs.svg").exists(), "fresh exports carry no accuracy to plot");

    let (report, md) = read_report(&out);
    check_schema(&report);
    assert_eq!(report["models"].as_array().unwrap().len(), 7);
    assert_eq!(report["settings"]["batch_sizes"], serde_json::json!([1, 4]));
    assert_eq!(report["settings"]["http"], Value::Null);
    assert_eq!(report["charts"], serde_json::json!(["latency.svg", "throughput_vs_macs.svg"]));
    let machine = &report["machine"];
    assert_eq!(machine["threads"], 2);
    assert_eq!(machine["ort_spin"], "off");
    assert!(md.contains("| ONNX Runtime threads spin (`--ort-spin`) | off |"), "{md}");
    assert_eq!(machine["onnxruntime_version"], cifar_onnxrt::ORT_VERSION);
    assert_eq!(machine["execution_provider"], "CPUExecutionProvider");
    assert!(!machine["cpu_model"].as_str().unwrap().is_empty());

    for (name, params, mmacs, gmacs) in SEED_TABLE {
        let m = model(&report, name);
        let digits = params.replace(',', "");
        assert_eq!(m["params"].to_string(), digits, "{name}");
        assert_eq!(m["seed"]["params"].to_string(), digits, "{name}");
        assert_eq!(format!("{:.2}", m["gmacs_batch128"].as_f64().unwrap()), gmacs, "{name}: our GMACs");
        assert_eq!(format!("{:.2}", m["seed"]["gmacs_batch128"].as_f64().unwrap()), gmacs, "{name}: the seed's");
        assert_eq!((m["seed"]["params_match"].as_bool(), m["seed"]["gmacs_match"].as_bool()), (Some(true), Some(true)), "{name}");
        assert_eq!(format!("{:.2}", m["macs_per_image"].as_f64().unwrap() / 1e6), mmacs, "{name}");
        assert_eq!(m["val_acc_pct"], Value::Null);
        let row = format!("| `{name}` | {name} | {params} | {params} | {mmacs} | {gmacs} | {gmacs} |");
        assert!(md.contains(&row), "report.md lacks the row\n{row}\n{md}");
        let latency = m["latency"].as_array().unwrap();
        assert_eq!(latency.iter().map(|b| b["batch_size"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 4]);
        for b in latency {
            assert_eq!(b["iters"], 2);
            let (p50, p95, p99) = (b["p50_ms"].as_f64().unwrap(), b["p95_ms"].as_f64().unwrap(), b["p99_ms"].as_f64().unwrap());
            assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{name}: {b}");
            assert!(b["images_per_s"].as_f64().unwrap() > 0.0);
        }
    }
    for section in ["## Summary", "## Machine", "Two MAC conventions", "## In-process latency", "](latency.svg)", "](throughput_vs_macs.svg)"] {
        assert!(md.contains(section), "report.md lacks {section}");
    }
    assert!(!md.contains('†'), "every figure matches the seed's");
}

#[test]
fn the_url_mode_drives_a_running_server() {
    let server = Server::start(&model_dir(&[]), &[]);
    let out = process_temp_dir("report-http");
    let image = repo_root().join("model-zoo/cat.png");
    let image = image.to_str().unwrap();
    ok(&quick_bench(&server.models, &out, "1,2", &["--url", &server.url, "--concurrency", "2", "--duration", "1", "--image", image]));
    let (report, md) = read_report(&out);
    check_schema(&report);
    assert_eq!(report["settings"]["http"]["url"], server.url);
    assert_eq!(report["settings"]["http"]["concurrency"], 2);
    assert_eq!(report["settings"]["http"]["image"], image);
    let http = &model(&report, "resnet-light")["http"];
    assert!(http["ok"].as_u64().unwrap() > 0, "{http}");
    assert_eq!(http["errors"], 0, "{http}");
    assert_eq!(http["statuses"]["200"], http["ok"]);
    assert!(http["endpoint"].as_str().unwrap().ends_with("/v1/models/resnet-light/classify"));
    assert!(http["images_per_s"].as_f64().unwrap() > 0.0);
    let duration = http["duration_s"].as_f64().unwrap();
    assert!((1.0..30.0).contains(&duration), "the run is bounded by --duration: {duration}");
    assert!(http["latency"]["p99_ms"].as_f64().unwrap() >= http["latency"]["p50_ms"].as_f64().unwrap());
    assert!(md.contains("## Over HTTP") && md.contains("HTTP img/s"), "{md}");

    // The batch-1 run (one client) and the comparisons with the in-process figures.
    let single = &http["single_client"];
    assert!(single["ok"].as_u64().unwrap() > 0 && single["errors"] == 0, "{single}");
    assert!((1.0..30.0).contains(&single["duration_s"].as_f64().unwrap()), "{single}");
    let in_process = &model(&report, "resnet-light")["latency"];
    let b1 = in_process[0]["p50_ms"].as_f64().unwrap();
    let overhead = http["overhead_b1_ms"].as_f64().expect("an overhead, since batch size 1 was timed");
    assert!((overhead - (single["latency"]["p50_ms"].as_f64().unwrap() - b1)).abs() < 1e-9, "{http}");
    let best = in_process.as_array().unwrap().iter().map(|b| b["images_per_s"].as_f64().unwrap()).fold(0.0, f64::max);
    let ratio = http["throughput_ratio"].as_f64().unwrap();
    assert!((ratio - http["images_per_s"].as_f64().unwrap() / best).abs() < 1e-9, "{http}");
    for text in ["### One client (batch-1 latency)", "### 2 clients (throughput)", &format!("{ratio:.2}"), "overhead ms"] {
        assert!(md.contains(text), "report.md lacks {text}:\n{md}");
    }

    // Without batch size 1 in process there is no batch-1 figure to compare with: null.
    ok(&quick_bench(&server.models, &out, "2", &["--url", &server.url, "--concurrency", "1", "--duration", "0.2"]));
    let (report, _) = read_report(&out);
    check_schema(&report);
    let http = &model(&report, "resnet-light")["http"];
    assert_eq!(http["overhead_b1_ms"], Value::Null, "{http}");
    assert!(http["throughput_ratio"].as_f64().is_some(), "{http}");
    assert_eq!(report["settings"]["http"]["image"], "generated 64×64 PNG");

    // An image file that cannot be read is refused before measuring.
    let missing = serve_bench(&["--models", server.models.to_str().unwrap(), "--out", out.to_str().unwrap(), "--url", &server.url, "--image", "/nonexistent.png"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--image /nonexistent.png"), "{}", String::from_utf8_lossy(&missing.stderr));

    // A server that is not there fails before any measuring, and says where it looked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = serve_bench(&["--models", server.models.to_str().unwrap(), "--out", out.to_str().unwrap(), "--url", &format!("http://{closed}")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"), "{}", String::from_utf8_lossy(&out.stderr));
}
