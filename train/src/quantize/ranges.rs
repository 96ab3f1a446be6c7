//! Activation ranges from calibration statistics: the observed extremes (`minmax`), or a
//! threshold on |x| that clips rare outliers so the common values get finer steps
//! (`percentile`: 99.999 % of the values, ONNX Runtime's default; `entropy`: the threshold
//! whose quantized distribution loses least information, TensorRT's KL-divergence method).

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Method {
    #[value(name = "minmax")]
    MinMax,
    #[default]
    Percentile,
    Entropy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
            Method::Entropy => "entropy",
        }
    }

    /// Whether the method needs a histogram (a second calibration pass).
    pub fn needs_histogram(self) -> bool {
        self != Method::MinMax
    }
}

/// Share of |x| values kept inside the `percentile` range.
const PERCENTILE: f64 = 0.99999;
/// Histogram bins over [0, max |x|].
pub const BINS: usize = 2048;

/// Extremes of one tensor over the calibration set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extremes {
    pub min: f32,
    pub max: f32,
}

impl Default for Extremes {
    fn default() -> Self {
        Extremes { min: f32::INFINITY, max: f32::NEG_INFINITY }
    }
}

impl Extremes {
    pub fn add(&mut self, values: &[f32]) {
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    pub fn abs_max(&self) -> f32 {
        self.min.abs().max(self.max.abs())
    }
}

/// Counts of |x| in [`BINS`] equal bins over [0, `limit`].
#[derive(Clone, Debug)]
pub struct Histogram {
    limit: f32,
    counts: Vec<u64>,
}

impl Histogram {
    pub fn new(limit: f32) -> Self {
        Histogram { limit: limit.max(f32::MIN_POSITIVE), counts: vec![0; BINS] }
    }

    pub fn add(&mut self, values: &[f32]) {
        let per_bin = BINS as f32 / self.limit;
        for &v in values {
            let bin = ((v.abs() * per_bin) as usize).min(BINS - 1);
            self.counts[bin] += 1;
        }
    }

    fn width(&self) -> f32 {
        self.limit / BINS as f32
    }

    /// The smallest |x| bound that holds `share` of the values.
    fn percentile(&self, share: f64) -> f32 {
        let total: u64 = self.counts.iter().sum();
        let wanted = (total as f64 * share).ceil() as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= wanted {
                return (i + 1) as f32 * self.width();
            }
        }
        self.limit
    }

    /// The |x| bound whose clipping and rounding to `levels` steps diverges least (KL) from
    /// the observed distribution.
    fn entropy(&self, levels: usize) -> f32 {
        let mut best = (f64::INFINITY, BINS);
        for bins in levels..=BINS {
            let kl = divergence(&self.counts, bins, levels);
            if kl < best.0 {
                best = (kl, bins);
            }
        }
        best.1 as f32 * self.width()
    }
}

/// KL(P‖Q) of the first `bins` bins, the outliers folded into the last (P), against the same
/// bins merged into `levels` groups and spread back over their non-empty bins (Q).
fn divergence(counts: &[u64], bins: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = counts[..bins].iter().map(|&c| c as f64).collect();
    p[bins - 1] += counts[bins..].iter().sum::<u64>() as f64;
    let mut q = vec![0f64; bins];
    for g in 0..levels {
        let (start, end) = (g * bins / levels, (g + 1) * bins / levels);
        let group = &counts[start..end];
        let nonzero = group.iter().filter(|&&c| c > 0).count();
        if nonzero == 0 {
            continue;
        }
        let share = group.iter().sum::<u64>() as f64 / nonzero as f64;
        for (k, &c) in group.iter().enumerate() {
            if c > 0 {
                q[start + k] = share;
            }
        }
    }
    let (p_sum, q_sum): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if p_sum == 0.0 || q_sum == 0.0 {
        return f64::INFINITY;
    }
    p.iter()
        .zip(&q)
        .filter(|(&pk, _)| pk > 0.0)
        // An empty Q bin where P has mass (only the folded outliers can make one) is smoothed.
        .map(|(&pk, &qk)| (pk / p_sum) * ((pk / p_sum) / (qk / q_sum).max(1e-12)).ln())
        .sum()
}

/// The range [lo, hi] a tensor is quantized to.
pub fn range(method: Method, extremes: Extremes, histogram: Option<&Histogram>) -> (f32, f32) {
    let threshold = match (method, histogram) {
        (Method::MinMax, _) | (_, None) => return (extremes.min, extremes.max),
        (Method::Percentile, Some(h)) => h.percentile(PERCENTILE),
        // uint8 over a non-negative tensor has 256 steps; over a signed one, 128 a side.
        (Method::Entropy, Some(h)) => h.entropy(if extremes.min >= 0.0 { 256 } else { 128 }),
    };
    (extremes.min.max(-threshold), extremes.max.min(threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp_with_outlier() -> (Extremes, Histogram) {
        let mut values: Vec<f32> = (0..200_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(50.0);
        let mut e = Extremes::default();
        e.add(&values);
        let mut h = Histogram::new(e.abs_max());
        h.add(&values);
        (e, h)
    }

    #[test]
    fn minmax_keeps_the_outlier_and_the_others_clip_it() {
        let (e, h) = ramp_with_outlier();
        assert_eq!(range(Method::MinMax, e, Some(&h)), (0.0, 50.0));
        for method in [Method::Percentile, Method::Entropy] {
            let (lo, hi) = range(method, e, Some(&h));
            assert_eq!(lo, 0.0);
            // Entropy's smallest candidate is 256 of the 2048 bins: 50 / 8.
            assert!(hi > 0.9 && hi <= 50.0 / 8.0 + 1e-3, "{method:?}: {hi}");
        }
    }

    #[test]
    fn signed_ranges_clip_both_sides() {
        let values: Vec<f32> = (0..1_000_000).map(|i| ((i % 2001) as f32 - 1000.0) / 1000.0).chain([-40.0, 40.0]).collect();
        let mut e = Extremes::default();
        e.add(&values);
        let mut h = Histogram::new(e.abs_max());
        h.add(&values);
        let (lo, hi) = range(Method::Percentile, e, Some(&h));
        assert!(lo > -2.0 && lo < -0.9 && hi < 2.0 && hi > 0.9, "{lo} {hi}");
    }
}
