//! Channel concatenation: on CPU (f32/f64) two tensors at a time through the custom op of
//! [`super::ops::concat`], whose gradients are contiguous; elsewhere candle's `cat`.

use super::ops::concat::Concat2;
use candle_core::{DType, Result, Tensor};

/// Whether [`concat2`] runs the custom op for tensors like `x`.
pub fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// `cat([a, b], 1)`.
pub fn concat2(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast(a) {
        return a.contiguous()?.apply_op2(&b.contiguous()?, Concat2);
    }
    Tensor::cat(&[a, b], 1)
}
