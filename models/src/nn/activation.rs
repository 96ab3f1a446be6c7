//! ReLU, alone or fused with the residual sum before it: with [`Kernels::fast_for`] the custom
//! ops of [`super::ops::relu`], otherwise candle's.

use super::kernels::Kernels;
use super::ops::relu::{AddRelu, Relu};
use candle_core::{Result, Tensor};

pub fn relu(x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(x) {
        return x.contiguous()?.apply_op1(Relu);
    }
    x.relu()
}

/// `relu(a + b)`.
pub fn add_relu(a: &Tensor, b: &Tensor, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(a) && a.dims() == b.dims() {
        return a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu);
    }
    (a + b)?.relu()
}
