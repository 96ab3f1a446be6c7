//! The training loss: cross-entropy against label-smoothed targets.

use candle_core::{DType, Result, Tensor, D};

/// Mean cross-entropy of `logits` `[n, k]` against `labels` `[n]` (u32) smoothed by
/// `smoothing`: the target puts `1 − ε` on the label and `ε / k` on every class (PyTorch's
/// `CrossEntropyLoss(label_smoothing=ε)`), i.e. `(1 − ε)·nll + ε·mean_k(−log p)`. With
/// `ε = 0` it is candle's `cross_entropy`, exactly.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, smoothing: f64) -> Result<Tensor> {
    if smoothing == 0.0 {
        return candle_nn::loss::cross_entropy(logits, labels);
    }
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let n = logits.dim(0)? as f64;
    let picked = log_p.gather(&labels.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?.sum_all()?;
    let uniform = log_p.mean(D::Minus1)?.sum_all()?;
    (picked * (-(1.0 - smoothing) / n))? - (uniform * (smoothing / n))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Loss and gradient against the smoothed-target formula written out per element:
    /// loss = −Σ_i Σ_c t_ic log p_ic / n, ∂loss/∂z_ic = (p_ic − t_ic) / n.
    #[test]
    fn matches_the_direct_computation_with_its_gradient() -> Result<()> {
        let (n, k, eps) = (3usize, 4usize, 0.2f64);
        let z: Vec<f64> = (0..n * k).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let labels = [2u32, 0, 3];
        let zv = Var::from_vec(z.clone(), (n, k), &Device::Cpu)?;
        let y = Tensor::new(&labels, &Device::Cpu)?;
        let loss = cross_entropy(zv.as_tensor(), &y, eps)?;
        let grad = loss.backward()?.get(&zv).unwrap().flatten_all()?.to_vec1::<f64>()?;
        let (mut want_loss, mut want_grad) = (0.0, vec![0.0; n * k]);
        for i in 0..n {
            let row = &z[i * k..(i + 1) * k];
            let max = row.iter().cloned().fold(f64::MIN, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            for c in 0..k {
                let log_p = row[c] - max - sum.ln();
                let t = eps / k as f64 + if c == labels[i] as usize { 1.0 - eps } else { 0.0 };
                want_loss -= t * log_p / n as f64;
                want_grad[i * k + c] = (log_p.exp() - t) / n as f64;
            }
        }
        assert!((loss.to_scalar::<f64>()? - want_loss).abs() < 1e-12);
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() < 1e-12, "{grad:?} vs {want_grad:?}");
        }
        // No smoothing: candle's own loss, bit for bit.
        let plain = candle_nn::loss::cross_entropy(zv.as_tensor(), &y)?.to_scalar::<f64>()?;
        assert_eq!(cross_entropy(zv.as_tensor(), &y, 0.0)?.to_scalar::<f64>()?, plain);
        Ok(())
    }
}
