//! An exponential moving average of every stored tensor of a network (parameters and
//! BatchNorm running statistics, as timm's `ModelEmaV2` averages the whole state), updated
//! after each optimizer step and evaluated beside the raw weights.

use candle_core::{Result, Tensor};
use cifar_models::nn::Network;
use std::collections::HashMap;

pub struct Ema {
    decay: f64,
    updates: u64,
    tensors: Vec<(String, Tensor)>,
}

impl Ema {
    /// An average that starts at `current` (copied: the network's tensors change in place).
    pub fn new(current: &[(String, Tensor)], decay: f64) -> Result<Self> {
        let tensors = current.iter().map(|(n, t)| Ok((n.clone(), t.copy()?))).collect::<Result<_>>()?;
        Ok(Self { decay, updates: 0, tensors })
    }

    /// The decay of update `t` (0-based): `min(decay, (1 + t) / (10 + t))`, so the first
    /// updates forget the initial weights fast (TensorFlow's `num_updates` warm-up).
    pub fn decay_at(&self, t: u64) -> f64 {
        self.decay.min((1.0 + t as f64) / (10.0 + t as f64))
    }

    /// `ema ← d·ema + (1 − d)·current`, tensor by tensor (same names, same order).
    pub fn update(&mut self, current: &[(String, Tensor)]) -> Result<()> {
        let d = self.decay_at(self.updates);
        for ((name, avg), (cur_name, cur)) in self.tensors.iter_mut().zip(current) {
            debug_assert_eq!(name, cur_name);
            // Detached: the network's tensors are variables, so the sum would track them and
            // chain every update to the one before it.
            *avg = ((&*avg * d)? + (cur.detach() * (1.0 - d))?)?.detach();
        }
        self.updates += 1;
        Ok(())
    }

    pub fn updates(&self) -> u64 {
        self.updates
    }

    pub fn tensors(&self) -> &[(String, Tensor)] {
        &self.tensors
    }

    /// Continues from a saved average (from [`Self::tensors`]) after `updates` updates.
    pub fn restore(&mut self, saved: &HashMap<String, Tensor>, updates: u64) -> Result<()> {
        for (name, avg) in self.tensors.iter_mut() {
            let t = saved.get(name).ok_or_else(|| candle_core::Error::Msg(format!("EMA state lacks {name}")))?;
            *avg = t.to_dtype(avg.dtype())?.to_device(avg.device())?;
        }
        self.updates = updates;
        Ok(())
    }

    /// Runs `f` on `net` holding the averaged tensors, then puts its own back.
    pub fn with_weights<T>(&self, net: &Network, f: impl FnOnce(&Network) -> Result<T>) -> Result<T> {
        let raw: HashMap<String, Tensor> = net.named_tensors().into_iter().map(|(n, t)| Ok((n, t.copy()?))).collect::<Result<_>>()?;
        net.load(&self.tensors.iter().cloned().collect())?;
        let out = f(net);
        net.load(&raw)?;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// After k updates towards a constant c the average is c + Π d_t · (e_0 − c).
    #[test]
    fn matches_the_closed_form_on_a_toy_parameter() -> Result<()> {
        let start = vec![("w".to_string(), Tensor::new(&[4.0f64, -1.0], &Device::Cpu)?)];
        // The network hands its variables' tensors, which track themselves.
        let target_var = candle_core::Var::new(&[1.0f64, 2.0], &Device::Cpu)?;
        let target = vec![("w".to_string(), target_var.as_tensor().clone())];
        let mut ema = Ema::new(&start, 0.9)?;
        let mut product = 1.0;
        for k in 0..25u64 {
            ema.update(&target)?;
            product *= 0.9f64.min((1.0 + k as f64) / (10.0 + k as f64));
        }
        let got = ema.tensors()[0].1.to_vec1::<f64>()?;
        let want = [1.0 + product * 3.0, 2.0 + product * -3.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        assert_eq!(ema.updates(), 25);
        assert!(!ema.tensors()[0].1.track_op());
        // The warm-up holds the decay below 0.9 for the first 80 updates, then 0.9 on.
        assert!((ema.decay_at(0) - 0.1).abs() < 1e-15);
        assert_eq!(ema.decay_at(1000), 0.9);
        Ok(())
    }
}
