//! Max and average pooling (window = stride = k, no padding, floor), forward and backward on
//! CPU in one pass each.
//!
//! candle 0.11's `max_pool2d` gradient is divided by k² and its pooling gradients are wrong when
//! the size is not a multiple of k; these ops route every gradient exactly as PyTorch does:
//! max pool to the first maximum of each window (scan order), average pool evenly over the window.

use super::storage::{contiguous, float_dispatch, num_like::NumLike, output_vec, same_dtype};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// Pooling over `k×k` windows with stride `k`.
#[derive(Clone, Copy, Debug)]
pub struct Pool2d {
    pub kind: PoolKind,
    pub k: usize,
}

fn dims4(layout: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
    match layout.shape().dims() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        d => candle_core::bail!("{op}: expected NCHW input, got {d:?}"),
    }
}

fn forward<T: NumLike>(x: &[T], planes: usize, h: usize, w: usize, k: usize, kind: PoolKind) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut out = output_vec(planes * ho * wo);
    out.par_chunks_mut(ho * wo).enumerate().for_each(|(p, o)| {
        let plane = &x[p * h * w..(p + 1) * h * w];
        match (k, kind) {
            (2, PoolKind::Max) => pool2_forward_plane(plane, h, w, o, max4),
            (2, PoolKind::Avg) => pool2_forward_plane(plane, h, w, o, mean4),
            _ => forward_plane(plane, h, w, k, kind, o),
        }
    });
    out
}

/// [`forward`] on one plane, any window.
fn forward_plane<T: NumLike>(plane: &[T], h: usize, w: usize, k: usize, kind: PoolKind, o: &mut [T]) {
    let (ho, wo) = (h / k, w / k);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    for oy in 0..ho {
        for ox in 0..wo {
            let mut acc = if kind == PoolKind::Max { T::NEG_INF } else { T::ZERO };
            for dy in 0..k {
                let row = &plane[(oy * k + dy) * w + ox * k..][..k];
                for &v in row {
                    acc = match kind {
                        PoolKind::Max => max_step(acc, v),
                        PoolKind::Avg => acc + v,
                    };
                }
            }
            o[oy * wo + ox] = if kind == PoolKind::Avg { acc * inv } else { acc };
        }
    }
}

/// [`forward`] of a 2×2 pool on one plane (every pool of the seven models): two input rows at a
/// time and no per-window slicing or kind dispatch. `window` reduces the four values in the
/// general loop's order, so ties, NaN, -inf and rounding come out the same.
fn pool2_forward_plane<T: NumLike>(plane: &[T], h: usize, w: usize, o: &mut [T], window: impl Fn([T; 4]) -> T) {
    let (ho, wo) = (h / 2, w / 2);
    for (oy, out) in o.chunks_exact_mut(wo).take(ho).enumerate() {
        let (r0, r1) = (&plane[2 * oy * w..][..2 * wo], &plane[(2 * oy + 1) * w..][..2 * wo]);
        for ((y, a), b) in out.iter_mut().zip(r0.chunks_exact(2)).zip(r1.chunks_exact(2)) {
            *y = window([a[0], a[1], b[0], b[1]]);
        }
    }
}

/// The running maximum of a window after `v`: `!(v <= acc)` also lets NaN through, as PyTorch
/// propagates it.
fn max_step<T: NumLike>(acc: T, v: T) -> T {
    if !(v <= acc) { v } else { acc }
}

fn max4<T: NumLike>(v: [T; 4]) -> T {
    v.into_iter().fold(T::NEG_INF, max_step)
}

fn mean4<T: NumLike>(v: [T; 4]) -> T {
    v.into_iter().fold(T::ZERO, |acc, v| acc + v) * T::from_f64(0.25)
}

fn backward<T: NumLike>(x: &[T], g: &[T], planes: usize, h: usize, w: usize, k: usize, kind: PoolKind) -> Vec<T> {
    let (ho, wo) = (h / k, w / k);
    let mut dx = output_vec(planes * h * w);
    dx.par_chunks_mut(h * w).enumerate().for_each(|(p, d)| {
        let (plane, gp) = (&x[p * h * w..][..h * w], &g[p * ho * wo..][..ho * wo]);
        match (k, kind) {
            (2, PoolKind::Max) => max_pool2_backward_plane(plane, gp, h, w, d),
            (2, PoolKind::Avg) => avg_pool2_backward_plane(gp, h, w, d),
            _ => backward_plane(plane, gp, h, w, k, kind, d),
        }
    });
    dx
}

/// [`backward`] on one plane, any window.
fn backward_plane<T: NumLike>(plane: &[T], gp: &[T], h: usize, w: usize, k: usize, kind: PoolKind, d: &mut [T]) {
    let (ho, wo) = (h / k, w / k);
    let inv = T::from_f64(1.0 / (k * k) as f64);
    // Windows do not overlap (stride = k), so each input position receives at most one
    // gradient: written, never accumulated, after one zeroing pass for the rest.
    d.fill(T::ZERO);
    for oy in 0..ho {
        for ox in 0..wo {
            let go = gp[oy * wo + ox];
            let corner = (oy * k) * w + ox * k;
            match kind {
                PoolKind::Max => {
                    let mut best = corner;
                    for dy in 0..k {
                        for dx_ in 0..k {
                            let i = corner + dy * w + dx_;
                            if !(plane[i] <= plane[best]) {
                                best = i;
                            }
                        }
                    }
                    d[best] = go;
                }
                PoolKind::Avg => {
                    for dy in 0..k {
                        d[corner + dy * w..][..k].fill(go * inv);
                    }
                }
            }
        }
    }
}

/// [`backward`] of a 2×2 max pool on one plane (every max pool of the seven models): each
/// window's four gradients written at once, the routed one and three zeros, so no separate
/// zeroing pass and no index search; the same first-maximum rule as the general loop.
fn max_pool2_backward_plane<T: NumLike>(plane: &[T], gp: &[T], h: usize, w: usize, d: &mut [T]) {
    let (ho, wo) = (h / 2, w / 2);
    for oy in 0..ho {
        let (r0, r1) = (&plane[2 * oy * w..][..w], &plane[(2 * oy + 1) * w..][..w]);
        let (d0, d1) = d[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
        for (ox, &go) in gp[oy * wo..][..wo].iter().enumerate() {
            let (a, b, c, e) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
            let (mut best, mut at) = (a, 0);
            for (v, i) in [(b, 1), (c, 2), (e, 3)] {
                if !(v <= best) {
                    (best, at) = (v, i);
                }
            }
            let pick = |i: usize| if at == i { go } else { T::ZERO };
            (d0[2 * ox], d0[2 * ox + 1], d1[2 * ox], d1[2 * ox + 1]) = (pick(0), pick(1), pick(2), pick(3));
        }
        // An odd width leaves a last column outside every window.
        d0[2 * wo..].fill(T::ZERO);
        d1[2 * wo..].fill(T::ZERO);
    }
    d[2 * ho * w..].fill(T::ZERO);
}

/// [`backward`] of a 2×2 average pool on one plane: each window's four positions get a quarter
/// of its gradient, written once (no zeroing pass for the covered positions).
fn avg_pool2_backward_plane<T: NumLike>(gp: &[T], h: usize, w: usize, d: &mut [T]) {
    let (ho, wo) = (h / 2, w / 2);
    let quarter = T::from_f64(0.25);
    for oy in 0..ho {
        let (d0, d1) = d[2 * oy * w..(2 * oy + 2) * w].split_at_mut(w);
        for (ox, &go) in gp[oy * wo..][..wo].iter().enumerate() {
            let v = go * quarter;
            (d0[2 * ox], d0[2 * ox + 1], d1[2 * ox], d1[2 * ox + 1]) = (v, v, v, v);
        }
        // An odd width leaves a last column outside every window.
        d0[2 * wo..].fill(T::ZERO);
        d1[2 * wo..].fill(T::ZERO);
    }
    d[2 * ho * w..].fill(T::ZERO);
}

impl CustomOp1 for Pool2d {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "max-pool2d",
            PoolKind::Avg => "avg-pool2d",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            let (n, c, h, w) = dims4(layout, self.name())?;
            if self.k == 0 || h < self.k || w < self.k {
                candle_core::bail!("{}: window {} does not fit {h}x{w}", self.name(), self.k);
            }
            let (k, kind) = (self.k, self.kind);
            let out = float_dispatch!(storage, layout, self.name(), |x| forward(x, n * c, h, w, k, kind));
            Ok((out, Shape::from((n, c, h / k, w / k))))
        })
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&grad, &Pool2dBackward(*self))?))
    }
}

/// The gradient of [`Pool2d`] with respect to its input: (input, output gradient) → input gradient.
struct Pool2dBackward(Pool2d);

impl CustomOp2 for Pool2dBackward {
    fn name(&self) -> &'static str {
        "pool2d-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            let (n, c, h, w) = dims4(l1, self.name())?;
            let Pool2d { kind, k } = self.0;
            if l2.shape().dims() != [n, c, h / k, w / k] {
                candle_core::bail!("{}: gradient shape {:?} does not match", self.name(), l2.shape());
            }
            let name = self.name();
            let out = match (s1, s2) {
                (CpuStorage::F32(x), CpuStorage::F32(g)) => CpuStorage::F32(backward(
                    contiguous(x, l1, name)?,
                    contiguous(g, l2, name)?,
                    n * c, h, w, k, kind,
                )),
                (CpuStorage::F64(x), CpuStorage::F64(g)) => CpuStorage::F64(backward(
                    contiguous(x, l1, name)?,
                    contiguous(g, l2, name)?,
                    n * c, h, w, k, kind,
                )),
                _ => candle_core::bail!("{name}: unsupported dtype {:?}", s1.dtype()),
            };
            Ok((out, l1.shape().clone()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2×2 pools equal the general loops where the rule matters: ties (the first maximum
    /// in scan order wins), NaN (it wins, as PyTorch propagates it), -inf, signed zeros, and odd
    /// sizes (the uncovered last row and column get zero gradient).
    #[test]
    fn the_2x2_pools_equal_the_general_loops() {
        for (h, w) in [(4, 4), (5, 7), (6, 3), (2, 2)] {
            let vals = [1.0, 1.0, f64::NAN, -1.0, 2.0, f64::NEG_INFINITY, 2.0, 0.5, -0.0, 0.0];
            let plane: Vec<f64> = (0..h * w).map(|i| vals[(i * 7 + i / 3) % vals.len()]).collect();
            let gp: Vec<f64> = (0..(h / 2) * (w / 2)).map(|i| i as f64 + 1.0).collect();
            let (mut fast, mut general) = (vec![f64::NAN; h * w], vec![f64::NAN; h * w]);
            max_pool2_backward_plane(&plane, &gp, h, w, &mut fast);
            backward_plane(&plane, &gp, h, w, 2, PoolKind::Max, &mut general);
            assert_eq!(fast, general, "max backward {h}x{w}: {plane:?}");
            let (mut fast, mut general) = (vec![f64::NAN; h * w], vec![f64::NAN; h * w]);
            avg_pool2_backward_plane(&gp, h, w, &mut fast);
            backward_plane(&plane, &gp, h, w, 2, PoolKind::Avg, &mut general);
            assert_eq!(fast, general, "avg backward {h}x{w}");
            // Bit patterns, so NaN results and zero signs compare too.
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for (kind, window) in [(PoolKind::Max, max4 as fn([f64; 4]) -> f64), (PoolKind::Avg, mean4)] {
                let (mut fast, mut general) = (vec![0.0; gp.len()], vec![0.0; gp.len()]);
                pool2_forward_plane(&plane, h, w, &mut fast, window);
                forward_plane(&plane, h, w, 2, kind, &mut general);
                assert_eq!(bits(&fast), bits(&general), "{kind:?} forward {h}x{w}: {plane:?}");
            }
        }
    }
}
