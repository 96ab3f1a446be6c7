//! AdamW exactly as PyTorch's `torch.optim.AdamW` (decoupled weight decay, bias-corrected
//! moments), with state that a checkpoint can hold. It is handed trainable parameters only:
//! BatchNorm running statistics never reach it.

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
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<Self> {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self { params, m, v, step: 0, beta1, beta2, eps, weight_decay })
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
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            let g = &super::scaled(g, grad_scale)?;
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / bc2.sqrt())? + self.eps)?;
            let decayed = (p.as_tensor() * (1.0 - lr * self.weight_decay))?;
            let next = (decayed - ((&m / denom)? * (lr / bc1))?)?;
            p.set(&next)?;
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }

    /// The moments by parameter name (`m.<name>`, `v.<name>`), for checkpoints.
    pub fn moments(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].clone()));
            out.push((format!("v.{name}"), self.v[i].clone()));
        }
        out
    }

    /// Restores the moments and the step count saved by [`Self::moments`].
    pub fn restore(&mut self, moments: &std::collections::HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.m[i] = super::restored(moments, &format!("m.{name}"), p)?;
            self.v[i] = super::restored(moments, &format!("v.{name}"), p)?;
        }
        self.step = step;
        Ok(())
    }
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
}
