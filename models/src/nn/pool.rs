//! Pooling layers. With [`Kernels::fast_for`] the custom ops of [`super::ops::pool`], whose
//! gradients are right; otherwise a reshape + reduce formulation whose autograd is right too
//! (candle's own max-pool gradient is not).

use super::kernels::Kernels;
use super::ops::pool::{Pool2d, PoolKind};
use candle_core::{Result, Tensor};

fn pool(x: &Tensor, k: usize, kind: PoolKind, kernels: Kernels) -> Result<Tensor> {
    if kernels.fast_for(x) {
        return x.contiguous()?.apply_op1(Pool2d { kind, k });
    }
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    // Drop the rows and columns the floor leaves out, then reduce each window.
    let x = x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?.reshape((n, c, ho, k, wo, k))?;
    match kind {
        PoolKind::Max => x.max(5)?.max(3),
        PoolKind::Avg => x.mean(5)?.mean(3),
    }
}

pub fn max_pool2d(x: &Tensor, k: usize, kernels: Kernels) -> Result<Tensor> {
    pool(x, k, PoolKind::Max, kernels)
}

pub fn avg_pool2d(x: &Tensor, k: usize, kernels: Kernels) -> Result<Tensor> {
    pool(x, k, PoolKind::Avg, kernels)
}

/// `AdaptiveAvgPool2d(1)` + flatten: NCHW → NC.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3))
}
