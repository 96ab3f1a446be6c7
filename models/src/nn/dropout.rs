//! Dropout with masks from our own seeded generator: candle cannot seed its CPU RNG, and a
//! resumed run must draw exactly the masks the uninterrupted run would have drawn.
//!
//! Every call takes the next index of a counter and draws its mask from the ChaCha stream
//! `(seed, index)`, so the whole generator state is two integers.

use candle_core::{Result, Tensor};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct DropoutRng {
    seed: u64,
    calls: AtomicU64,
}

/// What a checkpoint stores to resume the dropout masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DropoutState {
    pub seed: u64,
    pub calls: u64,
}

impl DropoutRng {
    pub fn new(seed: u64) -> Self {
        Self { seed, calls: AtomicU64::new(0) }
    }

    pub fn state(&self) -> DropoutState {
        DropoutState { seed: self.seed, calls: self.calls.load(Ordering::SeqCst) }
    }

    pub fn restore(&mut self, state: DropoutState) {
        self.seed = state.seed;
        *self.calls.get_mut() = state.calls;
    }

    /// A keep-mask scaled by `1/(1-p)`, of the given shape, on the tensor's device.
    fn mask(&self, like: &Tensor, dims: &[usize], p: f32) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(self.calls.fetch_add(1, Ordering::SeqCst));
        let keep = 1.0 / (1.0 - p as f64);
        let n: usize = dims.iter().product();
        let values: Vec<f32> =
            (0..n).map(|_| if rng.gen::<f32>() < p { 0.0 } else { keep as f32 }).collect();
        Tensor::from_vec(values, dims, like.device())?.to_dtype(like.dtype())
    }

    /// Zeroes single values with probability `p` (training only).
    pub fn dropout(&self, x: &Tensor, p: f32) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            return x.zeros_like();
        }
        x.mul(&self.mask(x, x.dims(), p)?)
    }

    /// Zeroes whole channels of an NCHW tensor with probability `p` (training only).
    pub fn dropout2d(&self, x: &Tensor, p: f32) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        if p >= 1.0 {
            return x.zeros_like();
        }
        let (n, c, _, _) = x.dims4()?;
        x.broadcast_mul(&self.mask(x, &[n, c, 1, 1], p)?)
    }
}

