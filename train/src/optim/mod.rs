//! The optimizers the recipe can name, with state a checkpoint can hold, and global gradient
//! clipping. They are handed trainable parameters only: BatchNorm running statistics never
//! reach them.

mod adamw;
mod adamw_cpu;
mod sgd;

pub use adamw::AdamW;
pub use sgd::Sgd;

use crate::recipe::{OptimizerKind, Recipe};
use candle_core::{backprop::GradStore, DType, Result, Tensor, Var};
use std::collections::HashMap;

pub enum Optimizer {
    AdamW(AdamW),
    Sgd(Sgd),
}

impl Optimizer {
    /// The recipe's optimizer over `params`, decaying those `weight_decay_on` names.
    pub fn for_recipe(params: Vec<(String, Var)>, r: &Recipe) -> Result<Self> {
        let decays = params.iter().map(|(_, p)| r.weight_decay_on.applies_to(p.rank())).collect();
        Ok(match r.optimizer {
            OptimizerKind::Adamw => Self::AdamW(AdamW::new(params, r.beta1, r.beta2, r.eps, r.weight_decay)?.with_decay_mask(decays)),
            OptimizerKind::Sgd => Self::Sgd(Sgd::new(params, r.momentum, r.nesterov, r.weight_decay)?.with_decay_mask(decays)),
        })
    }

    pub fn step_count(&self) -> u64 {
        match self {
            Self::AdamW(o) => o.step_count(),
            Self::Sgd(o) => o.step_count(),
        }
    }

    /// One update with learning rate `lr`; with `clip_norm > 0`, gradients whose global L2
    /// norm exceeds it are first scaled by `clip_norm / (norm + 1e-6)` (PyTorch's
    /// `clip_grad_norm_`).
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip_norm: f64) -> Result<()> {
        let scale = if clip_norm > 0.0 {
            let norm = self.grad_norm(grads)?;
            if norm > clip_norm { clip_norm / (norm + 1e-6) } else { 1.0 }
        } else {
            1.0
        };
        match self {
            Self::AdamW(o) => o.step_scaled(grads, lr, scale),
            Self::Sgd(o) => o.step_scaled(grads, lr, scale),
        }
    }

    fn params(&self) -> Vec<Var> {
        match self {
            Self::AdamW(o) => o.vars(),
            Self::Sgd(o) => o.vars(),
        }
    }

    /// The global L2 norm of the gradients of this optimizer's parameters.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sum = 0.0f64;
        for p in self.params() {
            if let Some(g) = grads.get(&p) {
                sum += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
            }
        }
        Ok(sum.sqrt())
    }

    pub fn moments(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Self::AdamW(o) => o.moments(),
            Self::Sgd(o) => Ok(o.moments()),
        }
    }

    pub fn restore(&mut self, moments: &HashMap<String, Tensor>, step: u64) -> Result<()> {
        match self {
            Self::AdamW(o) => o.restore(moments, step),
            Self::Sgd(o) => o.restore(moments, step),
        }
    }
}

/// The gradient times `scale`, cut off from any graph. candle detaches the gradients flowing
/// between nodes but not the sums it stores for variables, which can still point into the
/// forward graph (a product with an activation: the portable ops' weight gradients). State
/// built from them would keep every step's activations alive, one step chained to the next.
fn scaled(g: &Tensor, scale: f64) -> Result<Tensor> {
    let g = g.detach();
    if scale == 1.0 {
        Ok(g)
    } else {
        g * scale
    }
}

/// The state tensor `key` for parameter `p`, checked against its shape.
fn restored(moments: &HashMap<String, Tensor>, key: &str, p: &Var) -> Result<Tensor> {
    let t = moments.get(key).ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks {key}")))?;
    if t.dims() != p.dims() {
        candle_core::bail!("optimizer state {key} has shape {:?}, expected {:?}", t.dims(), p.dims());
    }
    t.to_dtype(p.dtype())?.to_device(p.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::DecayOn;
    use candle_core::Device;

    #[test]
    fn clipping_scales_the_gradient_to_the_norm() -> Result<()> {
        // loss = 3a + 4b: gradient (3, 4), norm 5; SGD without momentum moves by lr · g · 2/5.
        let (a, b) = (Var::new(&[0.0f64], &Device::Cpu)?, Var::new(&[0.0f64], &Device::Cpu)?);
        let mut r = Recipe::seed("vgg");
        (r.optimizer, r.momentum, r.weight_decay) = (OptimizerKind::Sgd, 0.0, 0.0);
        let mut opt = Optimizer::for_recipe(vec![("a".into(), a.clone()), ("b".into(), b.clone())], &r)?;
        let loss = ((a.as_tensor() * 3.0)? + (b.as_tensor() * 4.0)?)?.sum_all()?;
        let grads = loss.backward()?;
        assert!((opt.grad_norm(&grads)? - 5.0).abs() < 1e-12);
        opt.step(&grads, 1.0, 2.0)?;
        let scale = 2.0 / (5.0 + 1e-6);
        assert!((a.as_tensor().to_vec1::<f64>()?[0] + 3.0 * scale).abs() < 1e-12);
        assert!((b.as_tensor().to_vec1::<f64>()?[0] + 4.0 * scale).abs() < 1e-12);
        // A norm under the limit is left alone.
        opt.step(&grads, 1.0, 10.0)?;
        assert!((a.as_tensor().to_vec1::<f64>()?[0] + 3.0 * scale + 3.0).abs() < 1e-12);
        Ok(())
    }

    /// `--weight-decay-on weights` leaves vectors (BatchNorm scales and shifts, biases) alone
    /// and shrinks matrices and kernels by `1 - lr · wd` in one step from a zero gradient, as
    /// `all` shrinks both; for AdamW and SGD alike.
    #[test]
    fn weight_decay_on_weights_spares_vectors() -> Result<()> {
        let (lr, wd) = (0.1, 0.5);
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            for (on, vector_keeps) in [(DecayOn::All, 1.0 - lr * wd), (DecayOn::Weights, 1.0)] {
                let kernel = Var::new(&[[[[1.0f64, -2.0]]]], &Device::Cpu)?;
                let (matrix, vector) = (Var::new(&[[3.0f64], [4.0]], &Device::Cpu)?, Var::new(&[5.0f64, -6.0], &Device::Cpu)?);
                let mut r = Recipe::seed("vgg");
                (r.optimizer, r.weight_decay, r.weight_decay_on) = (kind, wd, on);
                let named = vec![("k".into(), kernel.clone()), ("m".into(), matrix.clone()), ("v".into(), vector.clone())];
                let mut opt = Optimizer::for_recipe(named, &r)?;
                // Σp − Σp: a gradient of exactly zero that still reaches every parameter
                // (candle prunes a product with 0 from the backward pass).
                let sums = [&kernel, &matrix, &vector].iter().map(|p| p.as_tensor().sum_all()).collect::<Result<Vec<_>>>()?;
                let total = (&sums[0] + (&sums[1] + &sums[2])?)?;
                opt.step(&(&total - &total)?.backward()?, lr, 0.0)?;
                let close = |got: Vec<f64>, want: Vec<f64>| got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12);
                let shrunk = 1.0 - lr * wd;
                assert!(close(kernel.flatten_all()?.to_vec1()?, vec![shrunk, -2.0 * shrunk]), "{kind:?} {on:?}: kernel");
                assert!(close(matrix.flatten_all()?.to_vec1()?, vec![3.0 * shrunk, 4.0 * shrunk]), "{kind:?} {on:?}: matrix");
                assert!(close(vector.as_tensor().to_vec1()?, vec![5.0 * vector_keeps, -6.0 * vector_keeps]), "{kind:?} {on:?}: vector");
            }
        }
        Ok(())
    }

    /// A variable's gradient that is a product with a tracked tensor still points into the
    /// graph; the optimizer state built from it must not (or each step would keep the one
    /// before it alive: the portable path's memory grew without bound).
    #[test]
    fn optimizer_state_holds_no_graph() -> Result<()> {
        for kind in [OptimizerKind::Adamw, OptimizerKind::Sgd] {
            let (w, u) = (Var::new(&[1.0f64, 2.0], &Device::Cpu)?, Var::new(&[3.0f64, 4.0], &Device::Cpu)?);
            let mut r = Recipe::seed("vgg");
            r.optimizer = kind;
            let mut opt = Optimizer::for_recipe(vec![("w".into(), w.clone())], &r)?;
            let activation = (u.as_tensor() * 2.0)?;
            let grads = w.as_tensor().mul(&activation)?.sum_all()?.backward()?;
            assert!(grads.get(&w).unwrap().track_op(), "candle stored a tracked gradient: the case this guards");
            opt.step(&grads, 0.1, 0.0)?;
            opt.step(&grads, 0.1, 1.0)?;
            for (name, t) in opt.moments()? {
                assert!(!t.track_op(), "{kind:?}: {name} holds a graph");
            }
        }
        Ok(())
    }
}
