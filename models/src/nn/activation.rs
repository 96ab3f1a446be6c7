//! ReLU, alone or fused with the residual sum before it: on CPU (f32/f64) the custom ops of
//! [`super::ops::relu`], elsewhere candle's.

use super::ops::relu::{AddRelu, Relu};
use candle_core::{DType, Result, Tensor};

fn on_cpu(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    if on_cpu(x) {
        return x.contiguous()?.apply_op1(Relu);
    }
    x.relu()
}

/// `relu(a + b)`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if on_cpu(a) && a.dims() == b.dims() {
        return a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu);
    }
    (a + b)?.relu()
}
