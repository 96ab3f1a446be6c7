//! Latency percentiles of a set of timed runs.

use serde::{Deserialize, Serialize};

/// Summary of durations, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles (the sample at rank ⌈p·n⌉): every figure is a duration that was
    /// really measured, so few samples give an honest, if coarse, p99 (the maximum). `None`
    /// when there are no samples.
    pub fn of_seconds(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = samples.iter().map(|s| s * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p * sorted.len() as f64).ceil() as usize;
            sorted[r.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
            min_ms: sorted[0],
            max_ms: sorted[sorted.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s: Vec<f64> = (1..=100).map(|ms| ms as f64 / 1e3).collect();
        let p = Percentiles::of_seconds(&s).unwrap();
        assert_eq!((p.p50_ms.round(), p.p95_ms.round(), p.p99_ms.round()), (50.0, 95.0, 99.0));
        assert_eq!((p.min_ms.round(), p.max_ms.round()), (1.0, 100.0));
        assert!((p.mean_ms - 50.5).abs() < 1e-9);
        let one = Percentiles::of_seconds(&[0.002]).unwrap();
        assert_eq!((one.p50_ms, one.p99_ms), (2.0, 2.0));
        assert!(Percentiles::of_seconds(&[]).is_none());
    }
}
