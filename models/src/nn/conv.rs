//! 2-D convolution with bias, as the graph's `Conv` describes it.

use crate::spec::Conv;
use candle_core::{Result, Tensor};

pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv) -> Result<Tensor> {
    let y = x.conv2d(weight, conv.padding, conv.stride, 1, conv.groups)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, conv.out_channels, 1, 1))?),
        None => Ok(y),
    }
}
