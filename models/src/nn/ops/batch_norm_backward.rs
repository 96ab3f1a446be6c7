//! The backward of training-mode batch norm (+ReLU): one pass summing Σ g and Σ g·x̂ per
//! channel, one pass writing the input gradient from them.

use super::batch_norm::{channel_totals, nc_p, planes_per_task, shifted_sums, BatchStats};
use super::simd::multiversion;
use super::storage::{num_like::NumLike, output_vec, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, OnceLock};

/// Σ g and Σ g·(x - mean) over a plane, g = dy masked by `y > 0` when a mask is given.
#[inline(always)]
fn grad_sums<T: NumLike>(x: &[T], dy: &[T], mask: Option<&[T]>, mean: T) -> (f64, f64) {
    const L: usize = 16;
    let (mut s, mut q) = ([T::ZERO; L], [T::ZERO; L]);
    let len = x.len().min(dy.len());
    let n = len / L * L;
    // Fixed-size chunks let the compiler drop bounds checks and vectorise the lanes.
    let lanes = |v: &[T], c: usize| -> [T; L] { v[c * L..c * L + L].try_into().unwrap_or([T::ZERO; L]) };
    match mask {
        None => {
            for c in 0..n / L {
                let (xa, ga) = (lanes(x, c), lanes(dy, c));
                for i in 0..L {
                    s[i] += ga[i];
                    q[i] += ga[i] * (xa[i] - mean);
                }
            }
        }
        Some(y) => {
            for c in 0..n / L {
                let (xa, ga, ya) = (lanes(x, c), lanes(dy, c), lanes(y, c));
                for i in 0..L {
                    let g = if ya[i] > T::ZERO { ga[i] } else { T::ZERO };
                    s[i] += g;
                    q[i] += g * (xa[i] - mean);
                }
            }
        }
    }
    let (mut s64, mut q64) = (0f64, 0f64);
    for j in n..len {
        let g = if mask.is_some_and(|y| !(y[j] > T::ZERO)) { T::ZERO } else { dy[j] };
        s64 += g.to_f64();
        q64 += (g * (x[j] - mean)).to_f64();
    }
    for i in 0..L {
        s64 += s[i].to_f64();
        q64 += q[i].to_f64();
    }
    (s64, q64)
}

multiversion!(fn grad_sums_mv<T>(x: &[T], dy: &[T], mask: Option<&[T]>, mean: T) -> (f64, f64) => grad_sums);

/// A batch norm input kept by the op that produced it (a fused conv) instead of an autograd
/// operand; the backward ops read it in place of their first operand.
pub type SavedInput = Arc<OnceLock<CpuStorage>>;

/// `(dx, dweight, dbias)` of batch norm (+ReLU) with batch statistics `stats`, from the input
/// `x` (or `saved`, when set), the weight, the output `y` and its gradient.
///
/// `dx_sums`, when given, receives the per-channel sums of dx (a conv bias gradient).
pub fn backward(x: &Tensor, saved: Option<SavedInput>, stats: Arc<BatchStats>, eps: f64, relu: bool, w: &Tensor, y: &Tensor, grad: &Tensor, dx_sums: Option<Arc<OnceLock<Vec<f64>>>>) -> Result<(Tensor, Tensor, Tensor)> {
    let dy = grad.contiguous()?;
    // With the ReLU fused, both passes mask dy by y > 0 as they read it; without, the
    // third operand is unused.
    let mask = if relu { y } else { &dy };
    let x = if saved.is_some() { &dy } else { x };
    let sums = x.apply_op3_no_bwd(&dy, mask, &BatchNormGradSums { stats: stats.clone(), eps, relu, saved: saved.clone() })?;
    // dx = γσ⁻¹·(dy - Σdy/N - x̂·Σ(dy·x̂)/N) = k1·dy + k2·(x - mean) + k3 per channel
    // (centring before scaling keeps f32 exact when |mean| ≫ σ).
    let gamma = w.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let s = sums.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let count = stats.count as f64;
    let k = (0..gamma.len())
        .map(|ch| {
            let inv_std = 1.0 / (stats.var[ch] + eps).sqrt();
            let k1 = gamma[ch] * inv_std;
            [k1, -k1 * inv_std * s[0][ch] / count, -k1 * s[1][ch] / count, stats.mean[ch]]
        })
        .collect();
    let dx = x.apply_op3_no_bwd(&dy, mask, &BatchNormInputGrad { k: Arc::new(k), relu, saved, dx_sums })?;
    Ok((dx, sums.get(0)?, sums.get(1)?))
}

/// The first operand's data, or the saved input in its place.
fn input_slice<'a, T: NumLike>(saved: &'a Option<SavedInput>, s: &'a CpuStorage, l: &Layout, len: usize, op: &str) -> Result<&'a [T]> {
    let x = match saved {
        Some(saved) => match saved.get().and_then(T::slice) {
            Some(x) => x,
            None => bail!("{op}: saved input missing or of another dtype"),
        },
        None => slice_of::<T>(s, l, op)?,
    };
    if x.len() != len {
        bail!("{op}: input has {} values, the gradient {len}", x.len());
    }
    Ok(x)
}

/// `(x, dy, y) → [[Σ g·x̂], [Σ g]]`, shape `[2, C]`, where g is dy, masked by y > 0 when the
/// forward had a ReLU.
#[derive(Clone, Debug)]
struct BatchNormGradSums {
    stats: Arc<BatchStats>,
    eps: f64,
    relu: bool,
    saved: Option<SavedInput>,
}

impl CustomOp3 for BatchNormGradSums {
    fn name(&self) -> &'static str {
        "batch-norm-grad-sums"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let (n, c, p) = nc_p(l1, self.name())?;
            if l1.shape() != l2.shape() || l1.shape() != l3.shape() || self.stats.mean.len() != c {
                bail!("{}: input {:?}, gradient {:?} and statistics do not match", self.name(), l1.dims(), l2.dims());
            }
            let st = &self.stats;
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = input_slice::<T>(&self.saved, s1, l1, l2.shape().elem_count(), self.name())?;
                let dy = slice_of::<T>(s2, l2, self.name())?;
                let y = slice_of::<T>(s3, l3, self.name())?;
                let mean: Vec<T> = st.mean.iter().map(|&m| T::from_f64(m)).collect();
                let partial: Vec<(f64, f64)> = (0..n * c)
                    .into_par_iter()
                    .with_min_len(planes_per_task(p))
                    .map(|i| {
                        let r = i * p..(i + 1) * p;
                        let mask = if self.relu { Some(&y[r.clone()]) } else { None };
                        grad_sums_mv(&x[r.clone()], &dy[r], mask, mean[i % c])
                    })
                    .collect();
                // Σ dy·x̂ = Σ dy·(x - mean) / σ
                let sums: Vec<(f64, f64)> = channel_totals(&partial, n, c)
                    .into_iter()
                    .enumerate()
                    .map(|(ch, (s, q))| (q / (st.var[ch] + self.eps).sqrt(), s))
                    .collect();
                let mut v: Vec<T> = sums.iter().map(|s| T::from_f64(s.0)).collect();
                v.extend(sums.iter().map(|s| T::from_f64(s.1)));
                T::storage(v)
            });
            Ok((out, Shape::from((2, c))))
        })
    }
}

/// `(x, dy, y) → dx` from per-channel coefficients `[k1, k2, k3, mean]`:
/// `dx = k1·g + k2·(x - mean) + k3`, g as in [`BatchNormGradSums`].
#[derive(Clone, Debug)]
struct BatchNormInputGrad {
    k: Arc<Vec<[f64; 4]>>,
    relu: bool,
    saved: Option<SavedInput>,
    /// When set, receives the per-channel sums of dx.
    dx_sums: Option<Arc<OnceLock<Vec<f64>>>>,
}

impl CustomOp3 for BatchNormInputGrad {
    fn name(&self) -> &'static str {
        "batch-norm-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let (_, c, p) = nc_p(l1, self.name())?;
            if l1.shape() != l2.shape() || l1.shape() != l3.shape() || self.k.len() != c {
                bail!("{}: input {:?}, gradient {:?} and coefficients do not match", self.name(), l1.dims(), l2.dims());
            }
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = input_slice::<T>(&self.saved, s1, l1, l2.shape().elem_count(), self.name())?;
                let dy = slice_of::<T>(s2, l2, self.name())?;
                let y = slice_of::<T>(s3, l3, self.name())?;
                let k: Vec<[T; 4]> = self.k.iter().map(|k| k.map(T::from_f64)).collect();
                let mut dx = output_vec(x.len());
                let want_sums = self.dx_sums.is_some();
                let plane_sums: Vec<(f64, f64)> = dx
                    .par_chunks_mut(p)
                    .with_min_len(planes_per_task(p))
                    .enumerate()
                    .map(|(i, d)| {
                        let [k1, k2, k3, m] = k[i % c];
                        let r = i * p..(i + 1) * p;
                        let (x, dy) = (&x[r.clone()], &dy[r.clone()]);
                        if self.relu {
                            for (((d, &g), &v), &y) in d.iter_mut().zip(dy).zip(x).zip(&y[r]) {
                                let g = if y > T::ZERO { g } else { T::ZERO };
                                *d = k1 * g + k2 * (v - m) + k3;
                            }
                        } else {
                            for ((d, &g), &v) in d.iter_mut().zip(dy).zip(x) {
                                *d = k1 * g + k2 * (v - m) + k3;
                            }
                        }
                        // The plane is still in cache: summing it here spares the conv bias
                        // gradient a pass over the whole tensor.
                        (if want_sums { shifted_sums(d, T::ZERO).0 } else { 0.0 }, 0.0)
                    })
                    .collect();
                if let Some(out) = &self.dx_sums {
                    let n = x.len() / (c * p);
                    let _ = out.set(channel_totals(&plane_sums, n, c).into_iter().map(|t| t.0).collect());
                }
                T::storage(dx)
            });
            Ok((out, l1.shape().clone()))
        })
    }
}
