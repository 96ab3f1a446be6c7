//! A conv feeding a batch norm (and its ReLU) in training, run as one op on the fast path
//! ([`super::Kernels::fast_for`]); elsewhere the interpreter runs the layers one by one.

use super::batch_norm::BatchNorm;
use super::ops::conv_bn::ConvBatchNorm;
use crate::spec::{Conv, BN_EPS};
use candle_core::{Result, Tensor};

/// `relu?(bn(conv(x)))` with batch statistics; updates the running statistics as
/// [`BatchNorm::forward_t`] does. Fast path only: the caller checks [`super::Kernels::fast_for`].
pub fn conv_batch_norm(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, conv: &Conv, bn: &BatchNorm, relu: bool) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => b.clone(),
        None => Tensor::zeros(conv.out_channels, x.dtype(), x.device())?,
    };
    let params = Tensor::cat(&[&bias, bn.weight.as_tensor(), bn.bias.as_tensor()], 0)?;
    let op = ConvBatchNorm::new(conv.stride, conv.padding, conv.groups, BN_EPS, relu);
    let stats = op.stats();
    let y = x.contiguous()?.apply_op3(&weight.contiguous()?, &params, op)?;
    let Some(s) = stats.get() else { candle_core::bail!("conv + batch norm: statistics missing after the forward") };
    let c = s.mean.len();
    let mean = Tensor::from_vec(s.mean.clone(), c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_vec(s.var.clone(), c, x.device())?.to_dtype(x.dtype())?;
    bn.update_running(&mean, &var, s.count)?;
    Ok(y)
}
