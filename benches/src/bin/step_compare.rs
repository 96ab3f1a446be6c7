//! Side by side: img/s of one training step (batch 128, 2 threads) of each model here and,
//! when `.venv-torch` exists (benches/scripts/make-torch-venv.sh), in PyTorch
//! (benches/scripts/torch_step.py), with the ratio.
//!
//!     cargo run --release -p cifar-benches --bin step_compare -- --models all --iters 5

use anyhow::{bail, Context, Result};
use cifar_benches::{set_threads, tune_allocator, TrainStep};
use cifar_models::MODEL_NAMES;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

struct Args {
    models: Vec<String>,
    iters: usize,
    warmup: usize,
    batch: usize,
    threads: usize,
    torch: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args { models: vec![], iters: 5, warmup: 1, batch: 128, threads: 2, torch: true };
    let mut models = "all".to_string();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => models = val()?,
            "--iters" => a.iters = val()?.parse()?,
            "--warmup" => a.warmup = val()?.parse()?,
            "--batch" => a.batch = val()?.parse()?,
            "--threads" => a.threads = val()?.parse()?,
            "--no-torch" => a.torch = false,
            "-h" | "--help" => {
                println!("step_compare [--models all|a,b] [--iters N] [--warmup N] [--batch N] [--threads N] [--no-torch]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    a.models = if models == "all" { MODEL_NAMES.iter().map(|s| s.to_string()).collect() } else { models.split(',').map(str::to_string).collect() };
    if let Some(bad) = a.models.iter().find(|m| !MODEL_NAMES.contains(&m.as_str())) {
        bail!("unknown model {bad}; valid: {}", MODEL_NAMES.join(", "));
    }
    if a.iters == 0 || a.batch < 2 {
        bail!("--iters must be at least 1 and --batch at least 2");
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ours(model: &str, a: &Args) -> Result<f64> {
    let mut s = TrainStep::new(model, a.batch, 0)?;
    for _ in 0..a.warmup {
        s.step()?;
    }
    let mut times = Vec::new();
    for _ in 0..a.iters {
        let t = Instant::now();
        s.step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(a.batch as f64 / median(times))
}

fn torch(a: &Args) -> Result<Option<HashMap<String, f64>>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv-torch/bin/python");
    if !a.torch || !python.exists() {
        return Ok(None);
    }
    let out = Command::new(python)
        .arg(root.join("benches/scripts/torch_step.py"))
        .args(["--models", &a.models.join(","), "--iters", &a.iters.to_string(), "--warmup", &a.warmup.to_string()])
        .args(["--batch", &a.batch.to_string(), "--threads", &a.threads.to_string()])
        .output()
        .context("running torch_step.py")?;
    if !out.status.success() {
        bail!("torch_step.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut rates = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("torch_step.py printed {line}"))?;
        if let (Some(m), Some(r)) = (v["model"].as_str(), v["img_s"].as_f64()) {
            rates.insert(m.to_string(), r);
        }
    }
    Ok(Some(rates))
}

fn main() -> Result<()> {
    tune_allocator();
    let a = parse()?;
    set_threads(a.threads);
    let mut rows = Vec::new();
    for m in &a.models {
        let r = ours(m, &a)?;
        eprintln!("{m}: {r:.1} img/s");
        rows.push((m.clone(), r));
    }
    let theirs = torch(&a)?;
    println!("batch {}, {} threads, median of {} steps after {} warm-up", a.batch, a.threads, a.iters, a.warmup);
    println!("{:<16} {:>12} {:>12} {:>8}", "model", "ours img/s", "torch img/s", "ratio");
    for (m, r) in rows {
        match theirs.as_ref().and_then(|t| t.get(&m)) {
            Some(t) => println!("{m:<16} {r:>12.1} {t:>12.1} {:>8.2}", r / t),
            None => println!("{m:<16} {r:>12.1} {:>12} {:>8}", "-", "-"),
        }
    }
    if theirs.is_none() {
        println!("(no PyTorch: run benches/scripts/make-torch-venv.sh for the side-by-side)");
    }
    Ok(())
}
