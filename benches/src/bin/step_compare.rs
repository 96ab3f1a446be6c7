//! Side by side: img/s of one training step (batch 128, 2 threads) of each model here and,
//! when `.venv-torch` exists (benches/scripts/make-torch-venv.sh), in PyTorch
//! (benches/scripts/torch_step.py), with the ratio.
//!
//!     cargo run --release -p cifar-benches --bin step_compare -- --models all --iters 5
//!
//! Each model is timed here and then in PyTorch, `--rounds` times alternately, and the best
//! round of each counts: on a shared machine other processes only ever slow a round down, and
//! alternating exposes both sides to the same load.

use anyhow::{bail, Context, Result};
use cifar_benches::{set_threads, tune_runtime, TrainStep};
use cifar_models::MODEL_NAMES;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

struct Args {
    models: Vec<String>,
    iters: usize,
    warmup: usize,
    batch: usize,
    threads: usize,
    rounds: usize,
    torch: bool,
    adamw_ab: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args { models: vec![], iters: 5, warmup: 1, batch: 128, threads: 2, rounds: 1, torch: true, adamw_ab: false };
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
            "--rounds" => a.rounds = val()?.parse()?,
            "--no-torch" => a.torch = false,
            "--adamw-ab" => a.adamw_ab = true,
            "-h" | "--help" => {
                println!("step_compare [--models all|a,b] [--iters N] [--warmup N] [--batch N] [--threads N] [--rounds N] [--no-torch] [--adamw-ab]");
                println!("  --adamw-ab  instead of PyTorch, time our step with AdamW's fused CPU passes and with its tensor expression, alternately");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    a.models = if models == "all" { MODEL_NAMES.iter().map(|s| s.to_string()).collect() } else { models.split(',').map(str::to_string).collect() };
    if let Some(bad) = a.models.iter().find(|m| !MODEL_NAMES.contains(&m.as_str())) {
        bail!("unknown model {bad}; valid: {}", MODEL_NAMES.join(", "));
    }
    if a.iters == 0 || a.rounds == 0 || a.batch < 2 {
        bail!("--iters and --rounds must be at least 1, --batch at least 2");
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ours(model: &str, a: &Args) -> Result<f64> {
    Ok(ours_with(model, a, true)?.0)
}

/// img/s and the optimiser's ms per step, with AdamW fused or as tensor ops.
fn ours_with(model: &str, a: &Args, fused_adamw: bool) -> Result<(f64, f64)> {
    let mut s = TrainStep::new(model, a.batch, 0)?;
    s.set_fused_adamw(fused_adamw);
    for _ in 0..a.warmup {
        s.step()?;
    }
    s.phases = [0.0; 3];
    cifar_models::nn::ops::profile::take();
    let mut times = Vec::new();
    for _ in 0..a.iters {
        let t = Instant::now();
        s.step()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let ops = cifar_models::nn::ops::profile::take();
    if !ops.is_empty() {
        let per = |v: f64| v * 1e3 / a.iters as f64;
        let total: f64 = times.iter().sum();
        eprintln!("{model}: ms per step: total {:.1}, forward {:.1}, backward {:.1}, optimiser {:.1}", per(total), per(s.phases[0]), per(s.phases[1]), per(s.phases[2]));
        let mut ops = ops;
        ops.sort_by(|a, b| b.1.total_cmp(&a.1));
        let in_ops: f64 = ops.iter().map(|o| o.1).sum();
        for (name, secs, calls) in ops.into_iter().take(40) {
            eprintln!("  {name:<60} {:>8.1} ms {:>6} calls", per(secs), calls / a.iters as u64);
        }
        eprintln!("  {:<60} {:>8.1} ms", "(outside custom ops)", per(total - in_ops));
    }
    Ok((a.batch as f64 / median(times), s.phases[2] * 1e3 / a.iters as f64))
}

/// `--adamw-ab`: the fused optimiser against the tensor expression, alternating, best round each.
fn adamw_ab(a: &Args) -> Result<()> {
    println!("AdamW fused CPU passes vs tensor expression: batch {}, {} threads, median of {} steps, best of {} alternating round(s)", a.batch, a.threads, a.iters, a.rounds);
    println!("{:<16} {:>14} {:>14} {:>12} {:>12} {:>8}", "model", "fused opt ms", "tensor opt ms", "fused img/s", "tensor img/s", "ratio");
    for m in &a.models {
        let (mut best_f, mut best_t) = ((0f64, f64::INFINITY), (0f64, f64::INFINITY));
        for _ in 0..a.rounds {
            let f = ours_with(m, a, true)?;
            let t = ours_with(m, a, false)?;
            best_f = (best_f.0.max(f.0), best_f.1.min(f.1));
            best_t = (best_t.0.max(t.0), best_t.1.min(t.1));
        }
        println!("{m:<16} {:>14.2} {:>14.2} {:>12.1} {:>12.1} {:>8.3}", best_f.1, best_t.1, best_f.0, best_t.0, best_f.0 / best_t.0);
    }
    Ok(())
}

fn torch_python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-torch/bin/python");
    python.exists().then_some(python)
}

/// img/s of `model` in PyTorch.
fn torch(python: &PathBuf, model: &str, a: &Args) -> Result<f64> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_step.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--models", model, "--iters", &a.iters.to_string(), "--warmup", &a.warmup.to_string()])
        .args(["--batch", &a.batch.to_string(), "--threads", &a.threads.to_string()])
        .output()
        .context("running torch_step.py")?;
    if !out.status.success() {
        bail!("torch_step.py failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("torch_step.py printed {line:?}"))?;
    v["img_s"].as_f64().with_context(|| format!("no img_s in {line}"))
}

fn main() -> Result<()> {
    tune_runtime();
    let a = parse()?;
    set_threads(a.threads);
    if a.adamw_ab {
        return adamw_ab(&a);
    }
    let python = if a.torch { torch_python() } else { None };
    let mut rows = Vec::new();
    for m in &a.models {
        let (mut best_ours, mut best_torch) = (0f64, None::<f64>);
        for round in 0..a.rounds {
            let r = ours(m, &a)?;
            best_ours = best_ours.max(r);
            let t = match &python {
                Some(p) => Some(torch(p, m, &a)?),
                None => None,
            };
            if let Some(t) = t {
                best_torch = Some(best_torch.unwrap_or(0.0).max(t));
            }
            let t = t.map_or("-".to_string(), |t| format!("{t:.1}"));
            eprintln!("{m} round {}: ours {r:.1} img/s, torch {t}", round + 1);
        }
        rows.push((m.clone(), best_ours, best_torch));
    }
    println!(
        "batch {}, {} threads, median of {} steps after {} warm-up, best of {} alternating round(s)",
        a.batch, a.threads, a.iters, a.warmup, a.rounds
    );
    println!("{:<16} {:>12} {:>12} {:>8}", "model", "ours img/s", "torch img/s", "ratio");
    for (m, r, t) in rows {
        match t {
            Some(t) => println!("{m:<16} {r:>12.1} {t:>12.1} {:>8.2}", r / t),
            None => println!("{m:<16} {r:>12.1} {:>12} {:>8}", "-", "-"),
        }
    }
    if python.is_none() && a.torch {
        println!("(no PyTorch: run benches/scripts/make-torch-venv.sh for the side-by-side)");
    }
    Ok(())
}
