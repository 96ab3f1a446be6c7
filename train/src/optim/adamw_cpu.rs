//! AdamW's update on CPU as three in-place passes over each parameter (first moment, second
//! moment, parameter), instead of a dozen tensor ops that each allocate and stream a buffer
//! of the parameter's size. Every element goes through the same f32/f64 operations in the same
//! order as the tensor expression in [`super::adamw`], so both give bit-identical results (a
//! test holds them to it); CUDA keeps the tensor expression.

use candle_core::{bail, CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, WithDType};
use rayon::prelude::*;

/// Elements per rayon task: large enough that splitting costs nothing, small enough that the
/// big tensors (3.9 M weights in resnet-heavy) use both cores.
const CHUNK: usize = 1 << 15;

/// The constants of one step, in the form the tensor expression applies them.
#[derive(Clone, Copy, Debug)]
pub struct StepConstants {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Gradient multiplier (clipping); 1 leaves the gradient untouched.
    pub grad_scale: f64,
    /// `1 - lr · weight_decay`.
    pub keep: f64,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f64,
    /// `1 / sqrt(1 - beta2^t)`.
    pub inv_sqrt_bc2: f64,
}

/// Updates `m`, `v` and `p` in place from the gradient `g`. All four live on the CPU with the
/// same dtype and element count.
pub fn update(p: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor, c: StepConstants) -> Result<()> {
    let n = p.elem_count();
    if m.elem_count() != n || v.elem_count() != n || g.elem_count() != n {
        bail!("adamw: parameter of {n} elements with moments of {} and {} and a gradient of {}", m.elem_count(), v.elem_count(), g.elem_count());
    }
    let g = if g.is_contiguous() { g.clone() } else { g.contiguous()? };
    m.inplace_op2(&g, &Moment { decay: c.beta1, scale: c.grad_scale, square: false })?;
    v.inplace_op2(&g, &Moment { decay: c.beta2, scale: c.grad_scale, square: true })?;
    p.inplace_op3(m, v, &Apply(c))
}

/// `state = state · decay + (g · scale)^k · (1 − decay)`, k = 2 for the second moment.
struct Moment {
    decay: f64,
    scale: f64,
    square: bool,
}

impl Moment {
    fn run<T: WithDType + num_like::Float>(&self, state: &mut [T], g: &[T]) {
        let (decay, gain, scale) = (T::from_f64(self.decay), T::from_f64(1.0 - self.decay), T::from_f64(self.scale));
        let rescale = self.scale != 1.0;
        let square = self.square;
        state.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(s, g)| {
            for (s, &g) in s.iter_mut().zip(g) {
                let g = if rescale { g * scale } else { g };
                let g = if square { g * g } else { g };
                *s = *s * decay + g * gain;
            }
        });
    }
}

impl InplaceOp2 for Moment {
    fn name(&self) -> &'static str {
        "adamw-moment"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        match (s1, s2) {
            (CpuStorage::F32(state), CpuStorage::F32(g)) => self.run(span_mut(state, l1)?, span(g, l2)?),
            (CpuStorage::F64(state), CpuStorage::F64(g)) => self.run(span_mut(state, l1)?, span(g, l2)?),
            _ => bail!("adamw: the moment and the gradient must both be f32 or both f64"),
        }
        Ok(())
    }
}

/// `p = p · keep − m / (sqrt(v) · inv_sqrt_bc2 + eps) · step_size`.
struct Apply(StepConstants);

impl Apply {
    fn run<T: WithDType + num_like::Float>(&self, p: &mut [T], m: &[T], v: &[T]) {
        let c = &self.0;
        let (keep, step, inv_bc2, eps) = (T::from_f64(c.keep), T::from_f64(c.step_size), T::from_f64(c.inv_sqrt_bc2), T::from_f64(c.eps));
        p.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v.par_chunks(CHUNK)).for_each(|((p, m), v)| {
            for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                let denom = v.sqrt() * inv_bc2 + eps;
                *p = *p * keep - (m / denom) * step;
            }
        });
    }
}

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "adamw-apply"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<()> {
        match (s1, s2, s3) {
            (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v)) => self.run(span_mut(p, l1)?, span(m, l2)?, span(v, l3)?),
            (CpuStorage::F64(p), CpuStorage::F64(m), CpuStorage::F64(v)) => self.run(span_mut(p, l1)?, span(m, l2)?, span(v, l3)?),
            _ => bail!("adamw: the parameter and its moments must all be f32 or all f64"),
        }
        Ok(())
    }
}

fn span<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) if b <= data.len() => Ok(&data[a..b]),
        _ => bail!("adamw: a tensor that is not contiguous reached the fused update"),
    }
}

fn span_mut<'a, T>(data: &'a mut [T], l: &Layout) -> Result<&'a mut [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) if b <= data.len() => Ok(&mut data[a..b]),
        _ => bail!("adamw: a tensor that is not contiguous reached the fused update"),
    }
}

/// The float operations the passes need, for f32 and f64.
mod num_like {
    pub trait Float: Copy + Send + Sync + std::ops::Mul<Output = Self> + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self> + std::ops::Div<Output = Self> {
        fn sqrt(self) -> Self;
    }
    impl Float for f32 {
        fn sqrt(self) -> Self {
            f32::sqrt(self)
        }
    }
    impl Float for f64 {
        fn sqrt(self) -> Self {
            f64::sqrt(self)
        }
    }
}
