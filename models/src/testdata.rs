//! The workspace's one deterministic generator of test inputs: image batches for parity
//! checks, benchmarks and tests, independent of any library's RNG so that every consumer (the
//! trainer's export check, the server's tests, the benches) sees the same numbers for a seed.

/// A 64-bit linear congruential stream (Knuth's MMIX constants): tiny, fast, reproducible.
#[derive(Clone, Debug)]
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        // Mixed so that seeds 0, 1, 2 … start far apart.
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }

    /// Uniform in [-1, 1), with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// `n` values uniform in [-1, 1).
    pub fn uniforms(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }

    /// A label in `0..classes`.
    pub fn label(&mut self, classes: u32) -> u32 {
        ((self.next_u64() >> 33) % classes as u64) as u32
    }
}

/// `n` NCHW images of normalised-looking values, uniform in [-2.5, 2.5): constant inputs could
/// take shortcuts (denormals, zero skipping) that real images do not.
pub fn images(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Lcg::new(seed);
    (0..n * crate::metadata::IMAGE_LEN).map(|_| (r.uniform() * 2.5) as f32).collect()
}

/// `n` NCHW images that differ the way photographs do: each is a sum of three colour gratings
/// of its own frequency, angle and phase, plus a little noise, in about [-2.5, 2.5]. Batches of
/// i.i.d. noise images look alike to a deep network (its late features average the noise away
/// and a batch norm then divides rounding by a near-zero variance), so gradient comparisons
/// between implementations need inputs that stay distinct through every layer.
pub fn patterns(n: usize, seed: u64) -> Vec<f32> {
    let [c, h, w] = crate::metadata::IMAGE_SHAPE;
    let mut r = Lcg::new(seed);
    let mut out = Vec::with_capacity(n * c * h * w);
    for _ in 0..n {
        let gratings: Vec<[f64; 7]> = (0..3).map(|_| std::array::from_fn(|_| r.uniform())).collect();
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v: f64 = gratings
                        .iter()
                        .map(|g| {
                            let (freq, angle, phase) = (0.05 + 0.25 * (g[0] + 1.0), g[1] * std::f64::consts::PI, g[2] * 3.2);
                            let t = (x as f64 * angle.cos() + y as f64 * angle.sin()) * freq + phase;
                            g[3 + ch] * t.sin()
                        })
                        .sum();
                    out.push((0.7 * v + 0.2 * r.uniform() + 0.3 * gratings[0][6]) as f32);
                }
            }
        }
    }
    out
}

/// `n` labels in `0..classes`.
pub fn labels(n: usize, classes: u32, seed: u64) -> Vec<u32> {
    let mut r = Lcg::new(seed.wrapping_add(1));
    (0..n).map(|_| r.label(classes)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_in_range() {
        let (a, b) = (images(2, 7), images(2, 7));
        assert_eq!(a, b);
        assert_eq!(a.len(), 2 * 3 * 32 * 32);
        assert_ne!(a, images(2, 8));
        assert!(a.iter().all(|v| (-2.5..2.5).contains(v)));
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.1, "mean {mean}");
        let p = patterns(3, 1);
        assert_eq!(p, patterns(3, 1));
        assert!(p.iter().all(|v| v.abs() <= 2.5), "{:?}", p.iter().cloned().fold(0f32, f32::max));
        let image_mean = |i: usize| p[i * 3072..(i + 1) * 3072].iter().map(|&v| v as f64).sum::<f64>() / 3072.0;
        assert!((image_mean(0) - image_mean(1)).abs() > 1e-3, "images should differ");
        let l = labels(1000, 10, 3);
        assert!(l.iter().all(|&c| c < 10));
        assert!((0..10).all(|c| l.contains(&c)));
    }
}
