//! AdamW exactly as PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected
//! moments), with state that a checkpoint can hold. It is handed trainable parameters only:
//! BatchNorm running statistics never reach it.

use super::adamw_cpu::{self, StepConstants};
use candle_core::{backprop::GradStore, Result, Tensor, Var};

pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    /// Per parameter: whether `weight_decay` applies to it.
    decays: Vec<bool>,
    /// The in-place CPU passes of [`adamw_cpu`] (tests switch them off to compare).
    fused: bool,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<Self> {
        // Separate buffers for m and v: the fused pass writes each in place.
        let zeros = || params.iter().map(|(_, p)| p.zeros_like()).collect::<Result<Vec<_>>>();
        let (m, v) = (zeros()?, zeros()?);
        let decays = vec![true; params.len()];
        Ok(Self { params, m, v, step: 0, beta1, beta2, eps, weight_decay, decays, fused: true })
    }

    /// Weight decay only on the parameters `decays` marks (one flag per parameter, in order).
    pub fn with_decay_mask(mut self, decays: Vec<bool>) -> Self {
        assert_eq!(decays.len(), self.params.len(), "one decay flag per parameter");
        self.decays = decays;
        self
    }

    /// Switches the in-place CPU passes off (on by default), for the tests and benchmarks that
    /// compare them with the tensor expression.
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub(super) fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, p)| p.clone()).collect()
    }

    /// One update with learning rate `lr` from the gradients in `grads`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step_scaled(grads, lr, 1.0)
    }

    /// One update from the gradients multiplied by `grad_scale` (gradient clipping).
    pub fn step_scaled(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let c = StepConstants {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            grad_scale,
            keep: 1.0 - lr * self.weight_decay,
            step_size: lr / bc1,
            inv_sqrt_bc2: 1.0 / bc2.sqrt(),
        };
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            let c = if self.decays[i] { c } else { StepConstants { keep: 1.0, ..c } };
            if self.fused && p.device().is_cpu() {
                adamw_cpu::update(p.as_tensor(), &self.m[i], &self.v[i], g, c)?;
            } else {
                let (m, v) = tensor_update(p, &self.m[i], &self.v[i], g, c)?;
                (self.m[i], self.v[i]) = (m, v);
            }
        }
        Ok(())
    }

    /// The moments by parameter name (`m.<name>`, `v.<name>`), for checkpoints.
    pub fn moments(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for (i, (name, _)) in self.params.iter().enumerate() {
            // Copies: the fused pass updates the state in place after this returns.
            out.push((format!("m.{name}"), self.m[i].copy()?));
            out.push((format!("v.{name}"), self.v[i].copy()?));
        }
        Ok(out)
    }

    /// Restores the moments and the step count saved by [`Self::moments`].
    pub fn restore(&mut self, moments: &std::collections::HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            // Own copies: the fused pass writes into them, never into the caller's tensors.
            self.m[i] = super::restored(moments, &format!("m.{name}"), p)?.copy()?;
            self.v[i] = super::restored(moments, &format!("v.{name}"), p)?.copy()?;
        }
        self.step = step;
        Ok(())
    }
}

/// The update as tensor ops (CUDA, and the reference the fused pass is held to): the new
/// moments; the parameter is set in place.
fn tensor_update(p: &Var, m: &Tensor, v: &Tensor, g: &Tensor, c: StepConstants) -> Result<(Tensor, Tensor)> {
    let g = &super::scaled(g, c.grad_scale)?;
    let m = ((m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
    let v = ((v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
    let denom = ((v.sqrt()? * c.inv_sqrt_bc2)? + c.eps)?;
    let next = ((p.as_tensor() * c.keep)? - ((&m / denom)? * c.step_size)?)?;
    p.set(&next)?;
    Ok((m.detach(), v.detach()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps against the update written out by hand from PyTorch's AdamW algorithm.
    #[test]
    fn matches_a_hand_computed_update() -> Result<()> {
        let p = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
        let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
        let mut opt = AdamW::new(vec![("w".into(), p.clone())], b1, b2, eps, wd)?;
        let (mut m, mut v, mut w) = ([0.0f64; 2], [0.0f64; 2], [1.0f64, -2.0]);
        for t in 1..=2 {
            // loss = sum(w^3) / 3 → grad = w^2
            let loss = (p.as_tensor().powf(3.0)?.sum_all()? / 3.0)?;
            let grads = loss.backward()?;
            opt.step(&grads, lr)?;
            for i in 0..2 {
                let g = w[i] * w[i];
                w[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * g;
                v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                w[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + eps);
            }
            let got = p.as_tensor().to_vec1::<f64>()?;
            for i in 0..2 {
                assert!((got[i] - w[i]).abs() < 1e-12, "step {t}: {got:?} vs {w:?}");
            }
        }
        assert_eq!(opt.step_count(), 2);
        Ok(())
    }

    /// The fused in-place passes and the tensor expression give the same bits, in f32 and
    /// f64, with and without gradient scaling, for parameters of several shapes.
    #[test]
    fn fused_passes_equal_the_tensor_expression() -> Result<()> {
        use candle_core::DType;
        for dtype in [DType::F32, DType::F64] {
            let dev = Device::Cpu;
            let make = |seed: u64| -> Result<Vec<(String, Var)>> {
                let shapes: [&[usize]; 3] = [&[70_001], &[8, 3, 3, 3], &[5]];
                shapes
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let n: usize = s.iter().product();
                        let vals: Vec<f64> = (0..n).map(|k| (((k as u64 * 2654435761 + seed + i as u64) % 1000) as f64 - 500.0) / 250.0).collect();
                        Ok((format!("p{i}"), Var::from_tensor(&Tensor::from_vec(vals, *s, &dev)?.to_dtype(dtype)?)?))
                    })
                    .collect()
            };
            let (a, b) = (make(1)?, make(1)?);
            let mut fused = AdamW::new(a.clone(), 0.9, 0.999, 1e-8, 0.1)?;
            let mut plain = AdamW::new(b.clone(), 0.9, 0.999, 1e-8, 0.1)?;
            plain.set_fused(false);
            for (step, scale) in [(0, 1.0), (1, 0.37), (2, 1.0), (3, 2.5)] {
                // loss = Σ p³ · (step + 1) / 3 → gradient p² · (step + 1)
                let grad = |ps: &[(String, Var)]| -> Result<GradStore> {
                    let mut loss = Tensor::zeros((), dtype, &dev)?;
                    for (_, p) in ps {
                        loss = (loss + (p.as_tensor().powf(3.0)?.sum_all()? * ((step + 1) as f64 / 3.0))?)?;
                    }
                    loss.backward()
                };
                let (ga, gb) = (grad(&a)?, grad(&b)?);
                fused.step_scaled(&ga, 0.01 * (step + 1) as f64, scale)?;
                plain.step_scaled(&gb, 0.01 * (step + 1) as f64, scale)?;
                for ((name, pa), (_, pb)) in a.iter().zip(&b) {
                    let (x, y) = (pa.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?, pb.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                    assert!(x == y, "{dtype:?} step {step}: {name} differs");
                }
                for ((name, ma), (_, mb)) in fused.moments()?.iter().zip(plain.moments()?.iter()) {
                    let (x, y) = (ma.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?, mb.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?);
                    assert!(x == y, "{dtype:?} step {step}: {name} differs");
                }
            }
        }
        Ok(())
    }
}
