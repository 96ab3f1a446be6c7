//! `BatchNorm2d` in training mode on CPU: batch statistics in one pass over the input, the
//! normalisation in a second, optionally followed by a ReLU. The backward (one reduction pass
//! and one pass writing the input gradient) is in [`super::batch_norm_backward`].
//!
//! candle's formulation runs a dozen broadcasts and reductions over strided dimensions per
//! call, forward and backward.

use super::scratch::Pooled;
use super::simd::multiversion;
use super::batch_norm_backward::backward;
use super::storage::{output_vec, num_like::NumLike, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};


/// Per-channel batch mean and biased variance, in f64 whatever the tensor dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    /// Values each statistic is taken over (N·H·W).
    pub count: usize,
}

/// `(x, weight, bias) → y` with batch statistics, `y = relu?((x - mean) / √(var + eps) · w + b)`.
/// The statistics the forward computed are published through [`BatchNormTrain::stats`].
#[derive(Clone, Debug)]
pub struct BatchNormTrain {
    pub eps: f64,
    pub relu: bool,
    stats: Arc<OnceLock<BatchStats>>,
}

impl BatchNormTrain {
    pub fn new(eps: f64, relu: bool) -> Self {
        Self { eps, relu, stats: Arc::default() }
    }

    /// A handle that holds the batch statistics once the op has run.
    pub fn stats(&self) -> Arc<OnceLock<BatchStats>> {
        self.stats.clone()
    }
}

/// `(n, c, h·w)` of an NCHW layout.
pub(super) fn nc_p(l: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] => Ok((n, c, h * w)),
        ref d => bail!("{op}: expected NCHW, got {d:?}"),
    }
}

fn check_channels(l: &Layout, c: usize, what: &str, op: &str) -> Result<()> {
    if l.dims() != [c] {
        bail!("{op}: {what} has shape {:?}, expected [{c}]", l.dims());
    }
    Ok(())
}

/// Sums of `(v - shift)` and `(v - shift)²` over a plane, in T lanes then f64: shifting by
/// a sample of the channel keeps the variance free of cancellation.
#[inline(always)]
pub(super) fn shifted_sums<T: NumLike>(v: &[T], shift: T) -> (f64, f64) {
    const L: usize = 16;
    let (mut s, mut q) = ([T::ZERO; L], [T::ZERO; L]);
    let mut chunks = v.chunks_exact(L);
    for ch in &mut chunks {
        for i in 0..L {
            let d = ch[i] - shift;
            s[i] += d;
            q[i] += d * d;
        }
    }
    let (mut s64, mut q64) = (0f64, 0f64);
    for &x in chunks.remainder() {
        let d = (x - shift).to_f64();
        s64 += d;
        q64 += d * d;
    }
    for i in 0..L {
        s64 += s[i].to_f64();
        q64 += q[i].to_f64();
    }
    (s64, q64)
}

multiversion!(fn shifted_sums_mv<T>(v: &[T], shift: T) -> (f64, f64) => shifted_sums);

/// Planes per rayon task, so that tiny planes (1×1 maps) are not one task each.
pub(super) fn planes_per_task(p: usize) -> usize {
    (16384 / p.max(1)).max(1)
}

/// Per-channel totals of per-plane pairs laid out `[image][channel]`.
pub(super) fn channel_totals(partial: &[(f64, f64)], n: usize, c: usize) -> Vec<(f64, f64)> {
    let mut t = vec![(0f64, 0f64); c];
    for j in 0..n {
        for (ch, acc) in t.iter_mut().enumerate() {
            let (a, b) = partial[j * c + ch];
            acc.0 += a;
            acc.1 += b;
        }
    }
    t
}

/// Batch statistics of an `n × c × p` tensor, planes in parallel in memory order.
pub fn batch_stats<T: NumLike>(x: &[T], n: usize, c: usize, p: usize) -> BatchStats {
    let count = (n * p) as f64;
    let shift: Vec<T> = (0..c).map(|ch| x[ch * p]).collect();
    let partial: Vec<(f64, f64)> = x
        .par_chunks(p)
        .with_min_len(planes_per_task(p))
        .enumerate()
        .map(|(i, plane)| shifted_sums_mv(plane, shift[i % c]))
        .collect();
    let (mean, var) = channel_totals(&partial, n, c)
        .into_iter()
        .zip(&shift)
        .map(|((s, q), k)| {
            let m = s / count;
            (k.to_f64() + m, (q / count - m * m).max(0.0))
        })
        .unzip();
    BatchStats { mean, var, count: n * p }
}

/// `y = x·scale[c] + shift[c]`, clamped at 0 when `relu`, for every channel plane.
fn affine_planes<T: Pooled>(x: &[T], y: &mut [T], c: usize, p: usize, scale: &[T], shift: &[T], relu: bool) {
    y.par_chunks_mut(p).zip(x.par_chunks(p)).with_min_len(planes_per_task(p)).enumerate().for_each(|(i, (yo, xi))| {
        let (a, b) = (scale[i % c], shift[i % c]);
        if relu {
            for (o, &v) in yo.iter_mut().zip(xi) {
                let t = v * a + b;
                *o = if t > T::ZERO { t } else { T::ZERO };
            }
        } else {
            for (o, &v) in yo.iter_mut().zip(xi) {
                *o = v * a + b;
            }
        }
    });
}

pub fn forward<T: Pooled>(x: &[T], w: &[T], b: &[T], n: usize, c: usize, p: usize, eps: f64, relu: bool) -> (Vec<T>, BatchStats) {
    let stats = batch_stats(x, n, c, p);
    let mut scale = Vec::with_capacity(c);
    let mut shift = Vec::with_capacity(c);
    for ch in 0..c {
        let a = w[ch].to_f64() / (stats.var[ch] + eps).sqrt();
        scale.push(T::from_f64(a));
        shift.push(T::from_f64(b[ch].to_f64() - stats.mean[ch] * a));
    }
    let mut y = output_vec(x.len());
    affine_planes(x, &mut y, c, p, &scale, &shift, relu);
    (y, stats)
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let (n, c, p) = nc_p(l1, self.name())?;
            check_channels(l2, c, "weight", self.name())?;
            check_channels(l3, c, "bias", self.name())?;
            if n * p < 2 {
                bail!("BatchNorm2d in training needs more than one value per channel, got input {:?}", l1.dims());
            }
            let (out, stats) = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                let b = slice_of::<T>(s3, l3, self.name())?;
                let (y, stats) = forward(x, w, b, n, c, p, self.eps, self.relu);
                (T::storage(y), stats)
            });
            if self.stats.set(stats).is_err() {
                bail!("{}: an op instance runs once; build a new one per call", self.name());
            }
            Ok((out, l1.shape().clone()))
        })
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _b: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else { bail!("{}: backward before forward", self.name()) };
        let (dx, dw, db) = backward(x, None, Arc::new(stats.clone()), self.eps, self.relu, w, y, grad, None)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}
