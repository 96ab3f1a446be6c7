//! 2-D convolution with bias, as the graph's `Conv` describes it.
//!
//! On CPU (f32/f64) it runs the custom ops of [`super::ops`]; elsewhere candle's own conv.

use super::ops::conv2d::Conv2d;
use crate::spec::Conv;
use candle_core::{DType, Result, Tensor};

pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) && conv.groups == 1 {
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(conv.out_channels, x.dtype(), x.device())?,
        };
        let op = Conv2d { stride: conv.stride, padding: conv.padding };
        return x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, op);
    }
    candle_conv2d(x, weight, bias, conv)
}

/// candle's own convolution: the path for other devices, and the reference the custom ops are
/// tested against.
pub fn candle_conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv) -> Result<Tensor> {
    let y = x.conv2d(weight, conv.padding, conv.stride, 1, conv.groups)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, conv.out_channels, 1, 1))?),
        None => Ok(y),
    }
}
