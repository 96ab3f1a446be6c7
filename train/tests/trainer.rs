//! `train --model` end to end on synthetic CIFAR-10 files: artifacts, learning, resume after
//! SIGKILL, and every refusal with its exit status.

use cifar_train::data::{write_synthetic, SyntheticSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One synthetic data set (official layout, 10,000 records per file) shared by the tests.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic(dir.path(), &SyntheticSpec { seed: 3, ..Default::default() }).unwrap();
        dir
    })
    .path()
}

/// A small but real run: resnet-light, 160 training images in batches of 32, constant lr.
fn args<'a>(out: &'a str, epochs: &'a str) -> Vec<String> {
    [
        "--model", "resnet-light", "--data-dir", data_dir().to_str().unwrap(), "--epochs", epochs,
        "--limit-train", "160", "--limit-eval", "64", "--batch-size", "32", "--milestones", "50,75",
        "--threads", "2", "--device", "cpu", "--out", out, "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn train(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train")).args(args).output().unwrap()
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The metrics without the wall-clock fields.
fn deterministic(m: &[Value]) -> Vec<Value> {
    m.iter()
        .map(|v| {
            let mut v = v.clone();
            for k in ["epoch_seconds", "train_img_s"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn full_run_writes_every_artifact_and_learns() {
    let out = tempfile::tempdir().unwrap();
    let o = train(&args(out.path().to_str().unwrap(), "2"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = out.path().join("resnet-light");
    for f in [
        "recipe.json", "metrics.jsonl", "metrics.csv", "curves.svg", "last.safetensors", "best.safetensors",
        "resume.safetensors", "state.json", "confusion.svg", "confusion.json", "summary.json", "model.onnx",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    let m = metrics(&dir);
    assert_eq!(m.len(), 2);
    for key in ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "train_img_s"] {
        assert!(m[0].get(key).is_some(), "metrics lack {key}");
    }
    let loss = |i: usize| m[i]["train_loss"].as_f64().unwrap();
    assert!(loss(1) < loss(0), "training loss should fall: {} -> {}", loss(0), loss(1));
    assert!((0.0..=1.0).contains(&m[1]["val_acc"].as_f64().unwrap()));
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3);
    assert!(csv.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,lr,epoch_seconds,train_img_s"));

    let summary: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["model"], "resnet-light");
    assert_eq!(summary["params"], 310_474);
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["seed"], 42);
    assert_eq!(summary["test_images"], 64);
    for key in ["test_acc", "best_val_acc", "wall_seconds", "device", "threads", "git_commit", "macs_per_image", "recipe"] {
        assert!(!summary[key].is_null(), "summary lacks {key}");
    }
    assert!(summary["onnx_parity_max_abs_diff"].as_f64().unwrap() <= 1e-4);
    let confusion: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("confusion.json")).unwrap()).unwrap();
    let total: u64 = confusion["counts"].as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 64);
    assert!((confusion["accuracy"].as_f64().unwrap() - summary["test_acc"].as_f64().unwrap()).abs() < 1e-12);
    let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("accuracy"));
    // The optimizer state holds moments for trainable parameters only, never running statistics.
    let resume = cifar_train::checkpoint::load_resume(&dir).unwrap();
    assert!(resume.moments.keys().all(|k| !k.contains("running")));
    assert_eq!(resume.moments.len(), 2 * resume.model.keys().filter(|k| !k.contains("running")).count());
    assert!(resume.model.contains_key("bn1.running_mean"));
    // The exported model carries what the run measured.
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    let text = String::from_utf8_lossy(&onnx);
    assert!(text.contains("cifar.test_acc") && text.contains("cifar.epochs"));
}

#[test]
fn resume_after_sigkill_equals_an_uninterrupted_run() {
    assert_resume_after_sigkill_is_exact(&[]);
}

/// The fast recipe's state (one-cycle position, EMA of the weights, alternating flips, the
/// better of raw and EMA as best) survives a kill exactly as the seed recipe's does; SGD's
/// momentum buffers too.
#[test]
fn a_resumed_fast_recipe_run_equals_an_uninterrupted_one() {
    let fast = ["--recipe", "fast", "--warmup-epochs", "0.5", "--ema-decay", "0.9", "--clip-grad-norm", "5", "--label-smoothing", "0.2"];
    let (_keep, dir) = assert_resume_after_sigkill_is_exact(&fast);
    let m = metrics(&dir);
    assert!(m.iter().all(|e| e["val_acc_ema"].is_number()), "the EMA is validated every epoch: {m:?}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(["ema", "raw"].contains(&s["evaluated_weights"].as_str().unwrap()), "{s}");
    assert_eq!(s["recipe"]["schedule"], "onecycle");
    let sgd = ["--optimizer", "sgd", "--lr", "0.05", "--nesterov", "--weight-decay", "5e-4", "--flip", "alternating"];
    assert_resume_after_sigkill_is_exact(&sgd);
}

/// Runs 3 epochs whole, and again killed (SIGKILL) after the first commit and resumed; the two
/// give the same metrics, weights and test result. Returns the resumed run's folder (and the
/// temporary folder that holds it).
fn assert_resume_after_sigkill_is_exact(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let with_extra = |out: &Path| [args(out.to_str().unwrap(), "3"), extra.iter().map(|s| s.to_string()).collect()].concat();
    let whole = tempfile::tempdir().unwrap();
    let o = train(&with_extra(whole.path()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let broken_dir = tempfile::tempdir().unwrap();
    let broken = broken_dir.path().to_path_buf();
    let dir = broken.join("resnet-light");
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(with_extra(&broken))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL) once the first epoch is committed, i.e. somewhere in the second.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !dir.join("state.json").exists() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The kill may land between the commit (resume.safetensors, then state.json) and the
    // metrics files, so the committed epoch count comes from state.json; resume must rewrite
    // the metrics from it.
    let state = std::fs::read_to_string(dir.join("state.json")).expect("the run ended before committing an epoch");
    let state: Value = serde_json::from_str(&state).unwrap();
    let done_before = state["epochs_done"].as_u64().unwrap();
    assert!(done_before < 3, "the run finished before it could be killed");
    // Always test the harder instant too: killed after the commit, before the metrics files.
    for f in ["metrics.jsonl", "metrics.csv"] {
        let _ = std::fs::remove_file(dir.join(f));
    }

    let o = train(&[with_extra(&broken), vec!["--resume".into()]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = whole.path().join("resnet-light");
    assert_eq!(deterministic(&metrics(&a)), deterministic(&metrics(&dir)), "{extra:?}");
    // Bit-identical weights, the same best checkpoint, identical test results.
    for f in ["last.safetensors", "best.safetensors"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(dir.join(f)).unwrap(), "{f} {extra:?}");
    }
    let s = |d: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap() };
    assert_eq!(s(&a)["test_acc"], s(&dir)["test_acc"]);
    (broken_dir, dir)
}

/// `--data-placement device` (the training set resident on the device, augmented there) is the
/// same run as the host loader's, bit for bit; on CPU it exercises the CUDA path's code.
#[test]
fn device_resident_data_gives_the_host_loaders_run() {
    let host = tempfile::tempdir().unwrap();
    let device = tempfile::tempdir().unwrap();
    let run = |out: &Path, placement: &str| {
        let o = train(&[args(out.to_str().unwrap(), "2"), vec!["--data-placement".into(), placement.into()]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.join("resnet-light")
    };
    let (a, b) = (run(host.path(), "host"), run(device.path(), "device"));
    assert_eq!(deterministic(&metrics(&a)), deterministic(&metrics(&b)));
    assert_eq!(std::fs::read(a.join("last.safetensors")).unwrap(), std::fs::read(b.join("last.safetensors")).unwrap());
    let s: Value = serde_json::from_str(&std::fs::read_to_string(b.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["data_on_device"], true);
    assert_eq!(s["precision"], "f32");
}

#[test]
fn refuses_to_overwrite_another_run_and_to_resume_another_recipe() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert!(train(&args(o, "1")).status.success());
    let dir = out.path().join("resnet-light");
    let before = std::fs::read(dir.join("last.safetensors")).unwrap();
    let again = train(&args(o, "1"));
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_eq!(std::fs::read(dir.join("last.safetensors")).unwrap(), before, "nothing overwritten");
    let other = train(&[args(o, "2"), vec!["--resume".into(), "--lr".into(), "0.01".into()]].concat());
    assert_eq!(other.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&other.stderr).contains("lr:"));
}

/// A one-cycle run is shaped by its length: it cannot grow on --resume (a multistep run can).
#[test]
fn a_run_shaped_by_its_length_cannot_grow_on_resume() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let onecycle = |epochs| [args(o, epochs), ["--schedule", "onecycle"].map(String::from).to_vec()].concat();
    assert!(train(&onecycle("1")).status.success());
    let longer = train(&[onecycle("2"), vec!["--resume".into()]].concat());
    assert_eq!(longer.status.code(), Some(4));
    let err = String::from_utf8_lossy(&longer.stderr);
    assert!(err.contains("epochs: run has 1, asked 2") && err.contains("only multistep runs may grow"), "{err}");
}

/// Bad recipe values stop before anything is written, with status 2 and one line naming the
/// flag; clap refuses unknown names of a schedule, optimizer or decay rule the same way.
#[test]
fn bad_recipe_values_name_their_flag() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let cases: [(&str, &[&str], &str); 10] = [
        ("2", &["--label-smoothing", "-0.1"], "--label-smoothing"),
        ("2", &["--ema-decay", "1"], "--ema-decay"),
        ("2", &["--warmup-epochs", "5"], "--warmup-epochs"),
        ("0", &[], "--epochs"),
        ("2", &["--lr", "0"], "--lr"),
        ("2", &["--lr", "-1"], "--lr"),
        ("2", &["--schedule", "linear"], "--schedule"),
        ("2", &["--optimizer", "adam"], "--optimizer"),
        ("2", &["--crop-padding", "5"], "--crop-padding"),
        ("2", &["--weight-decay-on", "norms"], "--weight-decay-on"),
    ];
    for (epochs, flags, flag) in cases {
        let o = train(&[args(o, epochs), flags.iter().map(|s| s.to_string()).collect()].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(flag), "{flags:?}: {err}");
        // clap's own refusal of an unknown name lists the possible values on more lines.
        if !["--schedule", "--optimizer", "--weight-decay-on"].contains(&flag) {
            assert_eq!(err.trim().lines().count(), 1, "{flags:?}: {err}");
        }
    }
    assert!(!out.path().join("resnet-light").exists(), "nothing written");
}

#[test]
fn diverging_loss_stops_with_status_3() {
    let out = tempfile::tempdir().unwrap();
    let o = train(&[args(out.path().to_str().unwrap(), "1"), vec!["--lr".into(), "1e30".into()]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("training diverged"));
}

#[test]
fn bad_input_is_explained() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let unknown = train(&["--model".into(), "resnet".into(), "--out".into(), o.into()]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("valid names"));
    let empty = tempfile::tempdir().unwrap();
    let missing = train(&["--model".into(), "vgg".into(), "--data-dir".into(), empty.path().to_str().unwrap().into(), "--out".into(), o.into()]);
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no CIFAR-10 found") && err.contains("--download"), "{err}");
    assert!(!PathBuf::from(o).join("vgg").join("summary.json").exists());
    let bf16_cpu = train(&[args(o, "1"), vec!["--precision".into(), "bf16".into()]].concat());
    assert_eq!(bf16_cpu.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bf16_cpu.stderr).contains("bf16 needs --device cuda"));
    let cuda = train(&["--model".into(), "vgg".into(), "--device".into(), "cuda:x".into(), "--out".into(), o.into()]);
    assert_eq!(cuda.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cuda.stderr).contains("--device cuda:x"));
}

/// `train synthetic` writes a set that `train` reads back (the GPU check's fallback data).
#[test]
fn synthetic_subcommand_writes_a_readable_set() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(&["synthetic".into(), "--out".into(), dir.path().to_str().unwrap().into(), "--seed".into(), "5".into()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let set = cifar_train::data::Cifar10::load(dir.path()).unwrap();
    assert_eq!((set.train.len(), set.test.len(), set.classes.len()), (50_000, 10_000, 10));
}

/// The portable building blocks (candle's generic ops: the CUDA path) train end to end on the
/// CPU as the fast ones do: a short run on the synthetic set (640 images, batch 32, 5 epochs of
/// the `fast` recipe, whose one-cycle schedule anneals the rate to almost nothing) ends within
/// 2 points of the fast path's validation accuracy, and its export passes the parity check.
/// The two paths' f32 rounding differs (ReLU kinks, see `models/tests/portable.rs`), so after
/// tens of steps they are different runs; what must agree is where they end. Under the seed's
/// step schedule they had not settled by then (0.895 against 1.000 on a Zen 3 with the rate
/// still at 3e-4); annealed, both end at 1.000 (measured on a Zen 4: raw and EMA weights from
/// epoch 4 on, on both paths). This is the slowest test (candle's conv backward on the CPU:
/// about 6 images/s against the fast path's 60).
#[test]
fn a_short_portable_run_learns_as_the_fast_one() {
    let run = |kernels: &str| {
        let out = tempfile::tempdir().unwrap();
        let mut a = args(out.path().to_str().unwrap(), "5");
        let at = |a: &[String], flag: &str| a.iter().position(|x| x == flag).unwrap() + 1;
        for (flag, value) in [("--limit-train", "640"), ("--limit-eval", "256")] {
            let i = at(&a, flag);
            a[i] = value.to_string();
        }
        let i = at(&a, "--milestones") - 1;
        a.drain(i..i + 2);
        a.extend(["--recipe", "fast", "--kernels", kernels].map(String::from));
        let o = train(&a);
        assert!(o.status.success(), "{kernels}: {}", String::from_utf8_lossy(&o.stderr));
        let dir = out.path().join("resnet-light");
        let summary: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        assert!(summary["onnx_parity_max_abs_diff"].as_f64().unwrap() <= 1e-4, "{kernels}: {summary}");
        metrics(&dir)
    };
    let (fast, portable) = (run("fast"), run("portable"));
    let final_val = |m: &[Value]| m.last().unwrap()["val_acc"].as_f64().unwrap();
    let (f, p) = (final_val(&fast), final_val(&portable));
    assert!(f >= 0.9 && p >= 0.9, "both should learn the synthetic classes: fast {f}, portable {p}");
    assert!((f - p).abs() <= 0.02, "validation accuracy fast {f} vs portable {p}: {fast:?} vs {portable:?}");
}
