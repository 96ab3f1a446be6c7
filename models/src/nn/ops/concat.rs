//! Channel concatenation of two NCHW tensors with a backward that hands each input a
//! contiguous slice of the gradient.
//!
//! candle's `cat` backward gives every input a strided view of the gradient, which its add then
//! walks element by element; a dense block concatenates every feature into every later layer,
//! so that slow path ran O(layers²) times per block.

use super::storage::{output_vec, same_dtype, slice_of, with_float_type, num_like::NumLike};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// `cat([a, b], 1)` for `[n, ca, ...]` and `[n, cb, ...]` with equal trailing dimensions.
#[derive(Clone, Copy, Debug)]
pub struct Concat2;

impl CustomOp2 for Concat2 {
    fn name(&self) -> &'static str {
        "concat2"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed(self.name(), || {
            same_dtype(s1, s2, self.name())?;
            let (a, b) = (l1.dims(), l2.dims());
            if a.len() < 2 || a.len() != b.len() || a[0] != b[0] || a[2..] != b[2..] {
                bail!("{}: cannot concatenate {a:?} and {b:?} along dim 1", self.name());
            }
            let (n, inner) = (a[0], a[2..].iter().product::<usize>());
            let (ra, rb) = (a[1] * inner, b[1] * inner);
            let out = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let y = slice_of::<T>(s2, l2, self.name())?;
                let mut o = output_vec::<T>(n * (ra + rb));
                o.par_chunks_mut(ra + rb).enumerate().for_each(|(j, img)| {
                    img[..ra].copy_from_slice(&x[j * ra..][..ra]);
                    img[ra..].copy_from_slice(&y[j * rb..][..rb]);
                });
                T::storage(o)
            });
            let mut dims = a.to_vec();
            dims[1] += b[1];
            Ok((out, Shape::from(dims)))
        })
    }

    fn bwd(&self, a: &Tensor, b: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ca = a.dim(1)?;
        // `contiguous` of a dim-1 narrow copies whole per-image blocks.
        let ga = grad.narrow(1, 0, ca)?.contiguous()?;
        let gb = grad.narrow(1, ca, b.dim(1)?)?.contiguous()?;
        Ok((Some(ga), Some(gb)))
    }
}
