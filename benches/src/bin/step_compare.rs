//! Side by side: img/s of one training step (batch 128, 2 threads) of each model here and,
//! when `.venv-torch` exists (benches/scripts/make-torch-venv.sh), in PyTorch
//! (benches/scripts/torch_step.py), with the ratio.
//!
//!     cargo run --release -p cifar-benches --bin step_compare -- --models all --iters 20 --warmup 3 --rounds 2
//!
//! The table gives each side's GMAC/s against the f32 matmul ceiling measured in the same
//! run (the gemm crate's and PyTorch's).
//!
//! Each model is timed here and in PyTorch, `--rounds` times alternately (the side that goes
//! first swapped every round), and the best round of each counts: on a shared machine other
//! processes only ever slow a round down, and alternating exposes both sides to the same load.

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
            // The side that goes first swaps every round, so a drifting host favours neither.
            let time_torch = || python.as_ref().map(|p| torch(p, m, &a)).transpose();
            let torch_first = round % 2 == 1;
            let t_first = if torch_first { time_torch()? } else { None };
            let r = ours(m, &a)?;
            best_ours = best_ours.max(r);
            let t = if torch_first { t_first } else { time_torch()? };
            if let Some(t) = t {
                best_torch = Some(best_torch.unwrap_or(0.0).max(t));
            }
            let t = t.map_or("-".to_string(), |t| format!("{t:.1}"));
            eprintln!("{m} round {}: ours {r:.1} img/s, torch {t}", round + 1);
        }
        rows.push((m.clone(), best_ours, best_torch));
    }
    let ceilings = Ceilings::measure(python.as_ref(), &a)?;
    print_table(&a, &rows, &ceilings)?;
    if python.is_none() && a.torch {
        println!("(no PyTorch: run benches/scripts/make-torch-venv.sh for the side-by-side)");
    }
    Ok(())
}

/// Side of the square f32 matmul that measures the machine's ceiling.
const SGEMM_N: usize = 4096;

/// The f32 matmul ceiling of this machine on the run's threads, measured in the same run as
/// the models: the gemm crate our convs call, and PyTorch's (oneDNN/MKL) where it is here.
struct Ceilings {
    ours: f64,
    torch: Option<f64>,
}

impl Ceilings {
    fn measure(python: Option<&PathBuf>, a: &Args) -> Result<Self> {
        let torch = match python {
            Some(p) => Some(torch_sgemm(p, a)?),
            None => None,
        };
        Ok(Self { ours: our_sgemm_gmac_s(SGEMM_N)?, torch })
    }

    fn best(&self) -> f64 {
        self.ours.max(self.torch.unwrap_or(0.0))
    }
}

/// GMAC/s of the best of 6 `n × n × n` products in the gemm crate, which our convs call.
fn our_sgemm_gmac_s(n: usize) -> Result<f64> {
    let lhs: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let rhs: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut dst = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let t = Instant::now();
        // SAFETY: three distinct row-major n × n buffers of exactly n² elements each.
        unsafe {
            gemm::gemm(n, n, n, dst.as_mut_ptr(), 1, n as isize, false, lhs.as_ptr(), 1, n as isize, rhs.as_ptr(), 1, n as isize, 0f32, 1f32, false, false, false, gemm::Parallelism::Rayon(threads));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((n * n * n) as f64 / best / 1e9)
}

fn torch_sgemm(python: &PathBuf, a: &Args) -> Result<f64> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/torch_step.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--sgemm", &SGEMM_N.to_string(), "--threads", &a.threads.to_string()])
        .output()
        .context("running torch_step.py --sgemm")?;
    if !out.status.success() {
        bail!("torch_step.py --sgemm failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).with_context(|| format!("torch_step.py --sgemm printed {stdout:?}"))?;
    v["sgemm_gmac_s"].as_f64().context("no sgemm_gmac_s")
}

/// A training step's multiply-adds per image: the forward's conv+fc MACs and the two backward
/// products (input and weight gradient), each as many.
fn train_macs_per_image(model: &str) -> Result<f64> {
    Ok(3.0 * cifar_models::count(&cifar_models::build(model)?).macs_per_image as f64)
}

fn print_table(a: &Args, rows: &[(String, f64, Option<f64>)], c: &Ceilings) -> Result<()> {
    println!("CPU: {}", cifar_benches::this_cpu());
    println!(
        "batch {}, {} threads, median of {} steps after {} warm-up, best of {} alternating round(s)",
        a.batch, a.threads, a.iters, a.warmup, a.rounds
    );
    let torch = c.torch.map_or("-".into(), |t| format!("{t:.1}"));
    println!("f32 matmul ceiling ({SGEMM_N}³, {} threads): gemm crate {:.1} GMAC/s, PyTorch {torch} GMAC/s", a.threads, c.ours);
    println!("GMAC/s counts a step as 3 × the forward's conv+fc MACs; % is of the better ceiling");
    println!("{:<16} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>7}", "model", "ours img/s", "torch img/s", "ratio", "ours GMAC/s", "torch GMAC/s", "ours %", "torch %");
    let mut log_ratios = Vec::new();
    for (m, r, t) in rows {
        let macs = train_macs_per_image(m)?;
        let (ours_g, pct) = (r * macs / 1e9, |g: f64| 100.0 * g / c.best());
        match t {
            Some(t) => {
                log_ratios.push((r / t).ln());
                let torch_g = t * macs / 1e9;
                println!("{m:<16} {r:>11.1} {t:>11.1} {:>7.2} {ours_g:>11.1} {torch_g:>11.1} {:>6.0}% {:>6.0}%", r / t, pct(ours_g), pct(torch_g));
            }
            None => println!("{m:<16} {r:>11.1} {:>11} {:>7} {ours_g:>11.1} {:>11} {:>6.0}% {:>7}", "-", "-", "-", pct(ours_g), "-"),
        }
    }
    if !log_ratios.is_empty() {
        println!("geometric mean of the ratios: {:.2}", (log_ratios.iter().sum::<f64>() / log_ratios.len() as f64).exp());
    }
    Ok(())
}
