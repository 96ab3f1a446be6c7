//! Logits → the best classes with their probabilities.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub class_id: usize,
    pub probability: f32,
}

/// Softmax, computed from the largest logit so that no exponential overflows.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The `k` most probable classes, best first (ties keep the lower class id first).
pub fn top_k(logits: &[f32], classes: &[String], k: usize) -> Vec<Prediction> {
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| Prediction {
            label: classes.get(i).cloned().unwrap_or_else(|| format!("class {i}")),
            class_id: i,
            probability: probs[i],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_first_and_normalised() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = top_k(&[1.0, 3.0, 2.0], &classes, 2);
        assert_eq!(p.iter().map(|p| p.class_id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(p[0].label, "b");
        let all: f32 = softmax(&[1.0, 3.0, 2.0]).iter().sum();
        assert!((all - 1.0).abs() < 1e-6);
        // Large logits do not overflow.
        assert!(softmax(&[1000.0, 0.0]).iter().all(|p| p.is_finite()));
    }
}
