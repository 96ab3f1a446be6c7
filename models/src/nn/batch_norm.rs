//! `BatchNorm2d` with PyTorch's semantics: batch statistics in training (biased variance to
//! normalise, unbiased variance into the running estimate, momentum 0.1), running statistics in
//! evaluation.
//!
//! With [`Kernels::fast_for`] training runs the fused op of [`super::ops::batch_norm`];
//! otherwise candle's own ops.

use super::kernels::Kernels;
use super::ops::batch_norm::BatchNormTrain;
use crate::spec::{BN_EPS, BN_MOMENTUM};
use candle_core::{Result, Tensor, Var};

pub struct BatchNorm {
    pub weight: Var,
    pub bias: Var,
    /// State, not parameters: updated in place by training forwards, never optimised.
    pub running_mean: Var,
    pub running_var: Var,
}

impl BatchNorm {
    pub fn forward_t(&self, x: &Tensor, train: bool, kernels: Kernels) -> Result<Tensor> {
        self.forward_t_act(x, train, false, kernels)
    }

    /// The layer followed by a ReLU when `relu` (one fused pass on the fast path).
    pub fn forward_t_act(&self, x: &Tensor, train: bool, relu: bool, kernels: Kernels) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let as_nchw = |t: &Tensor| t.reshape((1, c, 1, 1));
        if !train {
            let scale = (self.weight.as_tensor() / (self.running_var.as_tensor() + BN_EPS)?.sqrt()?)?;
            let shift = (self.bias.as_tensor() - (self.running_mean.as_tensor() * &scale)?)?;
            let y = x.broadcast_mul(&as_nchw(&scale)?)?.broadcast_add(&as_nchw(&shift)?)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        let (y, mean, var, count) = normalize_train_act(x, self.weight.as_tensor(), self.bias.as_tensor(), relu, kernels)?;
        self.update_running(&mean.detach(), &var.detach(), count)?;
        Ok(y)
    }

    pub(crate) fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: usize) -> Result<()> {
        let m = BN_MOMENTUM;
        let unbiased = (biased_var * (count as f64 / (count - 1) as f64))?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm.detach())?;
        self.running_var.set(&rv.detach())
    }
}

/// The training-mode transform with batch statistics: returns the output, the per-channel
/// batch mean and biased variance, and the number of values each statistic is taken over.
///
/// On the fast path the statistics come back as plain values (no gradient flows through
/// them); callers only feed them to the running estimates.
pub fn normalize_train(x: &Tensor, weight: &Tensor, bias: &Tensor, kernels: Kernels) -> Result<(Tensor, Tensor, Tensor, usize)> {
    normalize_train_act(x, weight, bias, false, kernels)
}

/// [`normalize_train`] whose output goes through a ReLU when `relu`.
pub fn normalize_train_act(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool, kernels: Kernels) -> Result<(Tensor, Tensor, Tensor, usize)> {
    if !kernels.fast_for(x) {
        let (y, mean, var, count) = candle_normalize_train(x, weight, bias)?;
        return Ok((if relu { y.relu()? } else { y }, mean, var, count));
    }
    let op = BatchNormTrain::new(BN_EPS, relu);
    let stats = op.stats();
    let y = x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let Some(s) = stats.get() else { candle_core::bail!("batch norm: statistics missing after the forward") };
    let c = s.mean.len();
    let mean = Tensor::from_vec(s.mean.clone(), c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_vec(s.var.clone(), c, x.device())?.to_dtype(x.dtype())?;
    Ok((y, mean, var, s.count))
}

/// candle's own formulation: the portable path, and the reference the custom op is tested
/// against.
pub fn candle_normalize_train(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<(Tensor, Tensor, Tensor, usize)> {
    let (n, c, h, w) = x.dims4()?;
    let count = n * h * w;
    if count < 2 {
        candle_core::bail!("BatchNorm2d in training needs more than one value per channel, got input {:?}", x.dims());
    }
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
    let inv_std = (var.clone() + BN_EPS)?.sqrt()?.recip()?;
    let y = centered
        .broadcast_mul(&inv_std)?
        .broadcast_mul(&weight.reshape((1, c, 1, 1))?)?
        .broadcast_add(&bias.reshape((1, c, 1, 1))?)?;
    Ok((y, mean.flatten_all()?, var.flatten_all()?, count))
}
