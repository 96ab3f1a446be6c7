//! A conv followed by training-mode batch norm (and optionally a ReLU) as one autograd node.
//!
//! candle's backward gives every node's input gradient its own zero-filled buffer plus an add,
//! so the conv output between the two layers costs two activation-sized allocations and three
//! passes in the backward alone; here it never leaves the op. The conv output is kept inside
//! the op for the batch-norm backward, as candle kept it as the batch norm's input.

use super::batch_norm::{self, BatchNormTrain, BatchStats};
use super::batch_norm_backward::{self, SavedInput};
use super::conv2d::forward_any;
use super::conv2d_backward;
use super::conv_geom::ConvGeom;
use super::storage::{num_like::NumLike, same_dtype, slice_of, with_float_type};
use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, OnceLock};

/// `(x, conv weight, [conv bias; bn weight; bn bias]) → relu?(bn(conv(x)))`.
#[derive(Clone, Debug)]
pub struct ConvBatchNorm {
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
    bn: BatchNormTrain,
    conv_out: SavedInput,
}

impl ConvBatchNorm {
    pub fn new(stride: usize, padding: usize, groups: usize, eps: f64, relu: bool) -> Self {
        Self { stride, padding, groups, bn: BatchNormTrain::new(eps, relu), conv_out: Arc::default() }
    }

    /// The batch statistics, once the op has run.
    pub fn stats(&self) -> Arc<OnceLock<BatchStats>> {
        self.bn.stats()
    }
}

impl CustomOp3 for ConvBatchNorm {
    fn name(&self) -> &'static str {
        "conv-batch-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        super::profile::timed_shaped(self.name(), &[l1.dims(), l2.dims()], || {
            same_dtype(s1, s2, self.name())?;
            same_dtype(s1, s3, self.name())?;
            let g = ConvGeom::new(l1.dims(), l2.dims(), self.stride, self.padding, self.groups, self.name())?;
            if l3.dims() != [3 * g.cout] {
                bail!("{}: parameters {:?} are not [conv bias; bn weight; bn bias] of {}", self.name(), l3.dims(), g.cout);
            }
            if g.n * g.out_plane() < 2 {
                bail!("BatchNorm2d in training needs more than one value per channel, got input {:?}", [g.n, g.cout, g.ho, g.wo]);
            }
            let (y, z) = with_float_type!(s1.dtype(), self.name(), T => {
                let x = slice_of::<T>(s1, l1, self.name())?;
                let w = slice_of::<T>(s2, l2, self.name())?;
                let p = slice_of::<T>(s3, l3, self.name())?;
                let (bias, gamma, beta) = (&p[..g.cout], &p[g.cout..2 * g.cout], &p[2 * g.cout..]);
                let z = forward_any(x, w, bias, &g)?;
                let (y, stats) = batch_norm::forward(&z, gamma, beta, g.n, g.cout, g.out_plane(), self.bn.eps, self.bn.relu);
                if self.stats().set(stats).is_err() {
                    bail!("{}: an op instance runs once; build a new one per call", self.name());
                }
                (T::storage(y), T::storage(z))
            });
            if self.conv_out.set(z).is_err() {
                bail!("{}: an op instance runs once", self.name());
            }
            Ok((y, Shape::from((g.n, g.cout, g.ho, g.wo))))
        })
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, params: &Tensor, y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats().get().cloned() else { bail!("{}: backward before forward", self.name()) };
        let c = w.dim(0)?;
        let gamma = params.narrow(0, c, c)?;
        // z's gradient, from the saved conv output (`y` stands in for the unused operand), with
        // its channel sums: the conv bias gradient.
        let dz_sums = Arc::new(OnceLock::new());
        let (dz, dgamma, dbeta) =
            batch_norm_backward::backward(y, Some(self.conv_out.clone()), Arc::new(stats), self.bn.eps, self.bn.relu, &gamma, y, grad, Some(dz_sums.clone()))?;
        // dz is no autograd operand, so the shared conv backward skips the bias product.
        let (dx, dw, _) = conv2d_backward::backward(x, w, &dz, &dz, self.stride, self.padding, self.groups)?;
        let dparams = if params.track_op() {
            let Some(sums) = dz_sums.get() else { bail!("{}: bias gradient missing", self.name()) };
            let dbias = Tensor::from_vec(sums.clone(), c, params.device())?.to_dtype(params.dtype())?;
            Some(Tensor::cat(&[dbias, dgamma, dbeta], 0)?)
        } else {
            None
        };
        Ok((dx, dw, dparams))
    }
}
