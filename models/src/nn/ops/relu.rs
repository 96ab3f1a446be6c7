//! ReLU on CPU with a one-pass backward from its output (candle's builds a mask tensor,
//! converts it and multiplies: four passes and three allocations).

use super::storage::{output_vec, num_like::NumLike, same_dtype, slice_of, with_float_type, float_dispatch};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

/// `max(x, 0)`.
#[derive(Clone, Copy, Debug)]
pub struct Relu;

fn relu<T: NumLike>(x: &[T]) -> Vec<T> {
    let mut y = output_vec(x.len());
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = if v > T::ZERO { v } else { T::ZERO };
        }
    });
    y
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            let out = float_dispatch!(s, l, self.name(), |x| relu(x));
            Ok((out, l.shape().clone()))
        })
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

/// `(y, dy) → dy·[y > 0]`: the gradient through a ReLU from its output.
#[derive(Clone, Copy, Debug)]
pub struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            if l1.shape() != l2.shape() {
                bail!("{}: shapes {:?} and {:?} differ", self.name(), l1.dims(), l2.dims());
            }
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let y = slice_of::<T>(s1, l1, self.name())?;
                let g = slice_of::<T>(s2, l2, self.name())?;
                let mut d = output_vec(y.len());
                d.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(d, (y, g))| {
                    for ((d, &y), &g) in d.iter_mut().zip(y).zip(g) {
                        *d = if y > T::ZERO { g } else { T::ZERO };
                    }
                });
                T::storage(d)
            });
            Ok((out, l1.shape().clone()))
        })
    }
}


/// `max(a + b, 0)`: a residual sum and its ReLU in one pass and one autograd node.
#[derive(Clone, Copy, Debug)]
pub struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            if l1.shape() != l2.shape() {
                bail!("{}: shapes {:?} and {:?} differ", self.name(), l1.dims(), l2.dims());
            }
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let a = slice_of::<T>(s1, l1, self.name())?;
                let b = slice_of::<T>(s2, l2, self.name())?;
                let mut y = output_vec(a.len());
                y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(y, (a, b))| {
                    for ((o, &a), &b) in y.iter_mut().zip(a).zip(b) {
                        let s = a + b;
                        *o = if s > T::ZERO { s } else { T::ZERO };
                    }
                });
                T::storage(y)
            });
            Ok((out, l1.shape().clone()))
        })
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}
