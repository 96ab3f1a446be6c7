//! Fully connected layer, `y = x Wᵀ + b` with PyTorch's `[out, in]` weight layout.

use candle_core::{Result, Tensor};

pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.matmul(&weight.t()?)?;
    match bias {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}
