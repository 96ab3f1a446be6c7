//! 2-D convolution with bias, as the graph's `Conv` describes it.
//!
//! With [`Kernels::fast_for`] the custom op of [`super::ops::conv2d`] (im2col + gemm for dense
//! convs, a direct kernel for grouped ones); otherwise candle's own conv.

use super::kernels::Kernels;
use super::ops::conv2d::Conv2d;
use crate::spec::Conv;
use candle_core::{Result, Tensor};

pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv, kernels: Kernels) -> Result<Tensor> {
    if !kernels.fast_for(x) {
        return candle_conv2d(x, weight, bias, conv);
    }
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(conv.out_channels, x.dtype(), x.device())?,
    };
    let op = Conv2d { stride: conv.stride, padding: conv.padding, groups: conv.groups };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, op)
}

/// candle's own convolution: the portable path, and the reference the custom ops are tested
/// against.
pub fn candle_conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv) -> Result<Tensor> {
    let y = x.conv2d(weight, conv.padding, conv.stride, 1, conv.groups)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, conv.out_channels, 1, 1))?),
        None => Ok(y),
    }
}
