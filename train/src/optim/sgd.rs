//! SGD exactly as PyTorch's `torch.optim.SGD` (no dampening): weight decay added to the
//! gradient (L2), a momentum buffer, optionally Nesterov's look-ahead.

use candle_core::{backprop::GradStore, Result, Tensor, Var};

pub struct Sgd {
    params: Vec<(String, Var)>,
    buf: Vec<Tensor>,
    step: u64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    /// Per parameter: whether `weight_decay` applies to it.
    decays: Vec<bool>,
}

impl Sgd {
    pub fn new(params: Vec<(String, Var)>, momentum: f64, nesterov: bool, weight_decay: f64) -> Result<Self> {
        let buf = params.iter().map(|(_, p)| p.zeros_like()).collect::<Result<Vec<_>>>()?;
        let decays = vec![true; params.len()];
        Ok(Self { params, buf, step: 0, momentum, nesterov, weight_decay, decays })
    }

    /// Weight decay only on the parameters `decays` marks (one flag per parameter, in order).
    pub fn with_decay_mask(mut self, decays: Vec<bool>) -> Self {
        assert_eq!(decays.len(), self.params.len(), "one decay flag per parameter");
        self.decays = decays;
        self
    }

    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub(super) fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|(_, p)| p.clone()).collect()
    }

    /// One update with learning rate `lr` from the gradients times `grad_scale`. The buffer
    /// starts at zero, so its first value is the gradient itself, as PyTorch's.
    pub fn step_scaled(&mut self, grads: &GradStore, lr: f64, grad_scale: f64) -> Result<()> {
        self.step += 1;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            let mut g = super::scaled(g, grad_scale)?;
            if self.weight_decay != 0.0 && self.decays[i] {
                g = (g + (p.as_tensor() * self.weight_decay)?)?;
            }
            if self.momentum != 0.0 {
                let buf = ((&self.buf[i] * self.momentum)? + &g)?;
                g = if self.nesterov { (g + (&buf * self.momentum)?)? } else { buf.clone() };
                self.buf[i] = buf.detach();
            }
            p.set(&(p.as_tensor() - (g * lr)?)?)?;
        }
        Ok(())
    }

    /// The momentum buffers by parameter name (`buf.<name>`), for checkpoints.
    pub fn moments(&self) -> Vec<(String, Tensor)> {
        self.params.iter().zip(&self.buf).map(|((name, _), b)| (format!("buf.{name}"), b.clone())).collect()
    }

    pub fn restore(&mut self, moments: &std::collections::HashMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.buf[i] = super::restored(moments, &format!("buf.{name}"), p)?;
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Three steps against PyTorch's SGD algorithm written out by hand, with and without
    /// Nesterov.
    #[test]
    fn matches_a_hand_computed_update() -> Result<()> {
        for nesterov in [false, true] {
            let p = Var::new(&[1.0f64, -2.0], &Device::Cpu)?;
            let (lr, mu, wd) = (0.05, 0.9, 0.01);
            let mut opt = Sgd::new(vec![("w".into(), p.clone())], mu, nesterov, wd)?;
            let (mut buf, mut w) = ([0.0f64; 2], [1.0f64, -2.0]);
            for t in 1..=3 {
                // loss = sum(w^3) / 3 → grad = w^2
                let loss = (p.as_tensor().powf(3.0)?.sum_all()? / 3.0)?;
                opt.step_scaled(&loss.backward()?, lr, 1.0)?;
                for i in 0..2 {
                    let g = w[i] * w[i] + wd * w[i];
                    buf[i] = if t == 1 { g } else { mu * buf[i] + g };
                    let d = if nesterov { g + mu * buf[i] } else { buf[i] };
                    w[i] -= lr * d;
                }
                let got = p.as_tensor().to_vec1::<f64>()?;
                for i in 0..2 {
                    assert!((got[i] - w[i]).abs() < 1e-12, "nesterov {nesterov} step {t}: {got:?} vs {w:?}");
                }
            }
        }
        Ok(())
    }
}
