//! ONNX Runtime's own throughput on one model file, through the server's backend (same
//! session options as `serve`), for comparison with the HTTP figures:
//!
//!     cargo run --release -p cifar-serve --example ort_throughput -- MODEL.onnx [BATCH] [SECONDS] [THREADS]
//!
//! Prints images/s and the per-call p50 at that batch size.

use cifar_serve::backend::Backend;
use cifar_serve::ort::{OrtBackend, OrtOptions};
use cifar_serve::{Device, IMAGE_LEN};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().ok_or_else(|| anyhow::anyhow!("usage: ort_throughput MODEL.onnx [BATCH] [SECONDS] [THREADS]"))?;
    let batch: usize = args.get(1).map_or(Ok(128), |s| s.parse())?;
    let seconds: f64 = args.get(2).map_or(Ok(10.0), |s| s.parse())?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = args.get(3).map_or(Ok(cores), |s| s.parse())?;
    let (_, env) = cifar_onnxrt::init(None, cifar_onnxrt::Flavor::Cpu)?;
    let opts = OrtOptions { device: Device::Cpu, allow_cpu_fallback: false, threads, spin: Default::default() };
    let (mut backend, meta) = OrtBackend::load(&env, &std::fs::read(path)?, &opts)?;
    let input = vec![0.1f32; batch * IMAGE_LEN];
    backend.run(&input, batch)?; // warm-up
    let mut calls = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        let t = Instant::now();
        backend.run(&input, batch)?;
        calls.push(t.elapsed().as_secs_f64());
    }
    let total = started.elapsed().as_secs_f64();
    calls.sort_by(f64::total_cmp);
    println!(
        "{} ({}): batch {batch}, {threads} threads, {} calls in {total:.1} s: {:.0} images/s, p50 {:.1} ms per call",
        path,
        meta.model,
        calls.len(),
        (calls.len() * batch) as f64 / total,
        calls[calls.len() / 2] * 1e3
    );
    Ok(())
}
