//! `train speed`: how fast a model trains on this device, measured on the step every run takes
//! ([`crate::fit::train_step`]: training-mode forward, loss, backward, the recipe's optimizer),
//! on one fixed synthetic batch, after warm-up steps. The batch's data does not change the
//! speed, and training on one batch again and again must lower its loss: the losses are
//! reported so that a reader sees the step learns (finite, falling), not only how fast it runs.

use crate::error::TrainError;
use crate::fit::train_step;
use crate::optim::Optimizer;
use crate::recipe::Recipe;
use candle_core::{DType, Device, Tensor};
use cifar_models::metadata::IMAGE_SHAPE;
use cifar_models::nn::{Kernels, Network};
use cifar_models::testdata;
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Clone, Copy, Debug)]
pub struct SpeedOptions {
    pub batch_size: usize,
    /// Timed steps (after the warm-up).
    pub steps: usize,
    /// Untimed steps first: kernel compilation (PTX to the GPU's code), cuDNN's algorithm
    /// search and the allocators' first growth happen there.
    pub warmup: usize,
    /// Mixed precision: bf16 compute on f32 master weights, as `train --precision bf16`.
    pub bf16: bool,
    pub kernels: Kernels,
}

/// One model's measurement, one JSON line of `train speed`.
#[derive(Clone, Debug, Serialize)]
pub struct StepSpeed {
    pub model: String,
    pub device: String,
    pub precision: &'static str,
    pub kernels: &'static str,
    /// Whether this binary runs convolutions through cuDNN (the `cudnn` feature) on CUDA.
    pub cudnn: bool,
    pub batch_size: usize,
    pub steps: usize,
    pub warmup: usize,
    /// `batch_size` / the median timed step, as `benches/scripts/torch_step.py` reports PyTorch.
    pub img_s: f64,
    pub step_ms_median: f64,
    pub step_ms_mean: f64,
    /// The loss of every step, warm-up included, in order.
    pub losses: Vec<f32>,
    /// Every loss finite and the last below the first.
    pub learns: bool,
}

/// Times `opts.steps` training steps of `model` on `device` after `opts.warmup` untimed ones.
pub fn measure(model: &str, device: &Device, device_name: &str, opts: &SpeedOptions) -> Result<StepSpeed, TrainError> {
    let recipe = Recipe::seed(model);
    let mut net = Network::with_kernels(cifar_models::build(model)?, recipe.seed, DType::F32, device, opts.kernels)?;
    if opts.bf16 {
        net.set_compute_dtype(DType::BF16)?;
    }
    let mut opt = Optimizer::for_recipe(net.named_trainable(), &recipe)?;
    let (x, y) = fixed_batch(opts.batch_size, device)?;
    let mut losses = Vec::with_capacity(opts.warmup + opts.steps);
    let mut times = Vec::with_capacity(opts.steps);
    for i in 0..opts.warmup + opts.steps {
        let t = Instant::now();
        let (_, loss) = train_step(&net, &mut opt, &x, &y, recipe.lr, &recipe)?;
        if i >= opts.warmup {
            times.push(t.elapsed().as_secs_f64());
        }
        losses.push(loss);
    }
    let (median, mean) = median_and_mean(&mut times);
    let learns = losses.iter().all(|l| l.is_finite()) && losses.last() < losses.first();
    Ok(StepSpeed {
        model: model.to_string(),
        device: device_name.to_string(),
        precision: if opts.bf16 { "bf16" } else { "f32" },
        kernels: match opts.kernels {
            Kernels::Fast => "fast",
            Kernels::Portable => "portable",
        },
        cudnn: cfg!(feature = "cudnn") && !device.is_cpu(),
        batch_size: opts.batch_size,
        steps: opts.steps,
        warmup: opts.warmup,
        img_s: opts.batch_size as f64 / median,
        step_ms_median: median * 1e3,
        step_ms_mean: mean * 1e3,
        losses,
        learns,
    })
}

/// Distinct grating images (not noise: a net can fit them) and their labels, on `device`.
fn fixed_batch(n: usize, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let [c, h, w] = IMAGE_SHAPE;
    let x = Tensor::from_vec(testdata::patterns(n, 1), (n, c, h, w), device)?;
    let y = Tensor::from_vec(testdata::labels(n, 10, 1), n, device)?;
    Ok((x, y))
}

fn median_and_mean(times: &mut [f64]) -> (f64, f64) {
    if times.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times.iter().sum::<f64>() / times.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_measurement_times_every_step_and_the_step_learns() {
        let opts = SpeedOptions { batch_size: 8, steps: 3, warmup: 2, bf16: false, kernels: Kernels::Fast };
        let s = measure("resnet-light", &Device::Cpu, "cpu", &opts).unwrap();
        assert_eq!((s.losses.len(), s.steps, s.warmup, s.precision, s.cudnn), (5, 3, 2, "f32", false));
        assert!(s.step_ms_median > 0.0 && s.step_ms_mean > 0.0, "{s:?}");
        assert!((s.img_s - 8.0 / (s.step_ms_median / 1e3)).abs() < 1e-6 * s.img_s);
        // Five AdamW steps at the seed's rate on one batch of eight images lower its loss.
        assert!(s.learns, "{:?}", s.losses);
    }

    #[test]
    fn median_of_an_even_count_takes_the_upper_middle_and_nothing_timed_is_nan() {
        assert_eq!(median_and_mean(&mut [4.0, 1.0, 3.0, 2.0]), (3.0, 2.5));
        assert!(median_and_mean(&mut []).0.is_nan());
    }
}
