//! How a dense conv splits its batch into gemm-sized chunks and over threads.

use super::gemm::{threads, Parallelism};

/// gemm rows per chunk worth aiming for: enough to amortise packing, small enough that a
/// chunk's im2col buffer stays in L2 for the usual layer widths.
const TARGET_ROWS: usize = 512;
/// Below this many output pixels in the whole batch, one gemm threaded inside beats a chunk
/// per thread.
const MIN_PARALLEL_ROWS: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvPlan {
    /// Images per chunk.
    pub images: usize,
    /// Chunks run in parallel with single-threaded gemms; otherwise one after another with
    /// gemm's own threads.
    pub parallel: bool,
}

impl ConvPlan {
    pub fn new(n: usize, out_plane: usize) -> Self {
        let t = threads();
        let rows = n * out_plane;
        if t <= 1 || rows < MIN_PARALLEL_ROWS || n < 2 * t {
            return Self { images: n.max(1), parallel: false };
        }
        let images = (TARGET_ROWS / out_plane.max(1)).clamp(1, n / (2 * t));
        Self { images, parallel: true }
    }

    /// gemm threading inside one chunk.
    pub fn gemm_par(&self) -> Parallelism {
        if self.parallel || threads() <= 1 {
            Parallelism::None
        } else {
            Parallelism::Rayon(threads())
        }
    }
}
