//! How a dense conv runs: which kernel each product uses, and how the gemm path splits its
//! batch into chunks and over threads.

use super::conv_geom::ConvGeom;
use super::gemm::{threads, Parallelism};
use super::simd::has_avx512;

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

/// Whether a dense conv product runs on the direct kernel of [`super::grouped_conv`] (as one
/// group) instead of im2col + gemm. Measured with `op_bench --direct` on the model layers:
/// the direct kernel wins on large maps with a spatial kernel, where a gemm with few output
/// channels is dominated by packing its huge im2col operand; gemm wins on small maps and 1×1s.
/// With AVX2 only (16 registers of 8 lanes, measured on a 2-core Zen 3, GMAC/s gemm → direct)
/// the direct kernel keeps its lead for weight gradients (32→64 at 32×32 35 → 69, 64→64 at
/// 16×16 28 → 53) but not for input gradients (3→32 k5 33 → 22), nor for forwards with 64 or
/// more output channels (32→64 at 32×32 58 → 39; 32→32 35 → 38 stays direct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    InputGrad,
    WeightGrad,
}

pub fn use_direct(g: &ConvGeom, product: Product) -> bool {
    if g.k == 1 || g.groups != 1 {
        return false;
    }
    let wide = has_avx512();
    match product {
        Product::Forward => g.out_plane() >= 1024 && (wide || g.cout < 64),
        Product::InputGrad => wide && g.out_plane() >= 256 && g.cout < 32,
        Product::WeightGrad => g.out_plane() >= 256,
    }
}

/// Whether the gemm weight gradient transposes its im2col chunk first, so that each output
/// pixel's patch is contiguous (the gemm's M = K·k² dimension then has unit stride, which its
/// packing reads fastest). Measured with `op_bench --filter dense` on the 2-core Zen 4 (GMAC/s,
/// plain → transposed, the extra pass included): 3×3 at 8×8 128→128 49 → 58, strided 64→64
/// 30 → 43, DenseNet's 48→12 at 8×8 8 → 15, 1×1 64→16 12 → 24; 1×1s with more output
/// channels (144→48, 256→128, 512→1024) lose a little, so they keep the plain layout. A whole
/// training step gains little (vgg +2–4 %, within noise elsewhere): these layers are few.
pub fn weight_grad_transposes_col(g: &ConvGeom) -> bool {
    g.k > 1 || g.cout < 32
}
