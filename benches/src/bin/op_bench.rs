//! Per-op throughput of the CPU conv kernels on the layer shapes the seven models use, at
//! batch 128 (or `--batch`): GMAC/s of forward, input gradient and weight gradient. Dense
//! layers run im2col + gemm, or with `--direct` the direct kernel, whichever the models
//! would pick (`nn::ops::conv_plan::use_direct`), or with `--channel` the channel-vectorised
//! kernel of `nn::ops::channel_conv` (3×3 stride-1 layers with whole blocks of 32 channels).
//!
//!     cargo run --release -p cifar-benches --bin op_bench -- [--batch 128] [--iters 5] [--filter dense|grouped] [--only TEXT] [--direct|--channel]

use cifar_models::nn::ops::conv2d_backward::{input_grad_gemm, weight_grad_gemm};
use cifar_models::nn::ops::conv_geom::ConvGeom;
use cifar_models::nn::ops::{channel_conv, conv2d, grouped_conv};
use std::time::Instant;

/// (cin, cout, k, stride, h, groups)
const LAYERS: &[(usize, usize, usize, usize, usize, usize)] = &[
    (3, 32, 5, 1, 32, 1),
    (32, 32, 3, 1, 32, 1),
    (32, 64, 3, 1, 32, 1),
    (64, 64, 3, 1, 16, 1),
    (128, 128, 3, 1, 8, 1),
    (128, 256, 3, 1, 8, 1),
    (64, 128, 3, 1, 16, 1),
    (256, 256, 3, 1, 4, 1),
    (32, 64, 3, 2, 32, 1),
    (64, 16, 1, 1, 16, 1),
    (64, 256, 1, 1, 32, 1),
    (256, 128, 1, 1, 32, 1),
    (128, 256, 1, 2, 32, 1),
    (48, 12, 3, 1, 32, 1),
    (48, 12, 3, 1, 16, 1),
    (48, 12, 3, 1, 8, 1),
    (64, 16, 3, 1, 32, 1),
    (64, 64, 3, 2, 16, 1),
    (144, 48, 1, 1, 32, 1),
    (512, 1024, 1, 1, 2, 1),
    (256, 256, 3, 1, 32, 64),
    (256, 256, 3, 2, 32, 64),
    (256, 256, 3, 1, 16, 64),
    (256, 256, 3, 1, 8, 64),
    (256, 256, 3, 1, 4, 64),
];

fn time(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..iters {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() -> candle_core::Result<()> {
    cifar_benches::tune_runtime();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let n: usize = arg("--batch").and_then(|v| v.parse().ok()).unwrap_or(128);
    let iters: usize = arg("--iters").and_then(|v| v.parse().ok()).unwrap_or(5);
    let filter = arg("--filter");
    let only = arg("--only");
    if args.iter().any(|a| a == "--bn") {
        return batch_norm(n, iters);
    }
    println!("CPU: {}", cifar_benches::this_cpu());
    println!("{:<34} {:>8} {:>10} {:>10} {:>10}", "layer (batch)", "GMAC", "fwd", "dx", "dw");
    for &(cin, cout, k, s, h, groups) in LAYERS {
        let grouped = groups > 1;
        match filter.as_deref() {
            Some("dense") if grouped => continue,
            Some("grouped") if !grouped => continue,
            _ => {}
        }
        let name = format!("{cin}->{cout} k{k} s{s} {h}x{h} g{groups}");
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let g = ConvGeom::new(&[n, cin, h, h], &[cout, cin / groups, k, k], s, k / 2, groups, "bench")?;
        let fill = |len: usize, seed: usize| -> Vec<f32> { (0..len).map(|i| ((i * 7 + seed) % 23) as f32 / 23.0 - 0.5).collect() };
        let x = fill(n * cin * h * h, 1);
        let w = fill(cout * g.patch(), 2);
        let b = fill(cout, 3);
        let dy = fill(n * cout * g.out_plane(), 4);
        let gmac = g.macs() as f64 / 1e9;
        // `--direct`: dense layers through the direct kernel too, to compare with gemm.
        let (tf, tx, tw) = if args.iter().any(|a| a == "--channel") {
            if !(k == 3 && s == 1 && !grouped && cout % 32 == 0 && cin % 32 == 0 && h % 8 == 0) {
                continue;
            }
            (
                time(iters, || drop(channel_conv::forward(&x, &w, &b, &g))),
                time(iters, || drop(channel_conv::input_grad(&dy, &w, &g))),
                time(iters, || drop(channel_conv::weight_grad(&x, &dy, &g))),
            )
        } else if grouped || args.iter().any(|a| a == "--direct") {
            (
                time(iters, || drop(grouped_conv::forward(&x, &w, &b, &g))),
                time(iters, || drop(grouped_conv::input_grad(&dy, &w, &g))),
                time(iters, || drop(grouped_conv::weight_grad(&x, &dy, &g))),
            )
        } else {
            (
                time(iters, || drop(conv2d::forward_gemm(&x, &w, &b, &g))),
                time(iters, || drop(input_grad_gemm(&dy, &w, &g))),
                time(iters, || drop(weight_grad_gemm(&x, &dy, &g))),
            )
        };
        let rate = |t: f64| format!("{:>5.1} {:>4.0}ms", gmac / t, t * 1e3);
        println!("{name:<34} {gmac:>8.3} {} {} {}", rate(tf), rate(tx), rate(tw));
    }
    Ok(())
}

/// Batch norm (+ReLU) forward and backward on the largest maps: GB/s of activations moved.
fn batch_norm(n: usize, iters: usize) -> candle_core::Result<()> {
    use candle_core::{Device, Tensor, Var};
    use cifar_models::nn::batch_norm::normalize_train_act;
    for (c, h) in [(64usize, 32usize), (256, 32), (128, 8)] {
        let x = Tensor::randn(0f32, 1.0, (n, c, h, h), &Device::Cpu)?;
        let w = Var::ones(c, candle_core::DType::F32, &Device::Cpu)?;
        let b = Var::zeros(c, candle_core::DType::F32, &Device::Cpu)?;
        let xv = Var::from_tensor(&x)?;
        let mb = (n * c * h * h * 4) as f64 / 1e6;
        let mut y = None;
        let tf = time(iters, || y = Some(normalize_train_act(xv.as_tensor(), w.as_tensor(), b.as_tensor(), true, cifar_models::nn::Kernels::Fast).unwrap().0));
        let y = y.unwrap();
        let r = Tensor::randn(0f32, 1.0, y.dims(), &Device::Cpu)?;
        let loss = (&y * &r)?.sum_all()?;
        let tb = time(iters, || drop(loss.backward().unwrap()));
        println!("bn+relu {n}x{c}x{h}x{h} ({mb:.0} MB): fwd {:.1} ms, bwd (with candle's sum/mul) {:.1} ms", tf * 1e3, tb * 1e3);
    }
    Ok(())
}
