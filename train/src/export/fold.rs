//! Folding an evaluation-mode BatchNorm into the conv that feeds it:
//! `s = γ/√(σ²+ε)`, `W' = W·s[co]`, `b' = (b − μ)·s + β`, computed in f64.

use cifar_models::spec::BN_EPS;

pub struct Folded {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// `weight` is `[cout, …]` row-major; `bias` may be absent (treated as zero).
pub fn fold_batch_norm(
    weight: &[f32],
    bias: Option<&[f32]>,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
) -> Folded {
    let cout = gamma.len();
    let per_out = weight.len() / cout;
    let scale: Vec<f64> = gamma.iter().zip(var).map(|(&g, &v)| g as f64 / (v as f64 + BN_EPS).sqrt()).collect();
    let weight = weight.iter().enumerate().map(|(i, &w)| (w as f64 * scale[i / per_out]) as f32).collect();
    let bias = (0..cout)
        .map(|c| {
            let b = bias.map_or(0.0, |b| b[c] as f64);
            ((b - mean[c] as f64) * scale[c] + beta[c] as f64) as f32
        })
        .collect();
    Folded { weight, bias }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_conv_equals_conv_then_batch_norm() {
        // A 1x1 conv is a per-pixel matrix product: check one pixel by hand.
        let w = [1.0f32, 2.0, -1.0, 0.5]; // cout 2, cin 2
        let b = [0.1f32, -0.2];
        let (g, be, m, v) = ([1.5f32, 0.5], [0.3f32, -0.1], [0.2f32, 1.0], [4.0f32, 0.25]);
        let f = fold_batch_norm(&w, Some(&b), &g, &be, &m, &v);
        let x = [0.7f32, -1.3];
        for c in 0..2 {
            let conv = w[2 * c] * x[0] + w[2 * c + 1] * x[1] + b[c];
            let bn = (conv - m[c]) / (v[c] + 1e-5).sqrt() * g[c] + be[c];
            let folded = f.weight[2 * c] * x[0] + f.weight[2 * c + 1] * x[1] + f.bias[c];
            assert!((bn - folded).abs() < 1e-6, "{bn} vs {folded}");
        }
    }
}
