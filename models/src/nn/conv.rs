//! 2-D convolution with bias, as the graph's `Conv` describes it.
//!
//! On CPU (f32/f64) it runs the custom ops of [`super::ops`] (im2col + gemm for dense convs,
//! a direct kernel for grouped ones); elsewhere candle's own conv.

use super::ops::conv2d::Conv2d;
use super::ops::grouped_conv::GroupedConv2d;
use crate::spec::Conv;
use candle_core::{DType, Result, Tensor};

pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv) -> Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(conv.out_channels, x.dtype(), x.device())?,
        };
        let (x, w) = (x.contiguous()?, weight.contiguous()?);
        let (stride, padding) = (conv.stride, conv.padding);
        return if conv.groups == 1 {
            x.apply_op3(&w, &bias, Conv2d { stride, padding })
        } else {
            x.apply_op3(&w, &bias, GroupedConv2d { stride, padding, groups: conv.groups })
        };
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
