//! How a dense conv runs: which kernel each product uses, and how the gemm path splits its
//! batch into chunks and over threads.

use super::conv_geom::ConvGeom;
use super::gemm::{threads, Parallelism};
use super::simd::has_avx512;
use super::storage::num_like::NumLike;

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
/// group) instead of im2col + gemm, for the convs [`super::channel_conv`] does not take (it
/// goes first: 3×3 with stride 1 and whole blocks of 32 channels, see `channel_conv::applies`). Measured with `op_bench --filter dense [--direct]` on the
/// model layers: the direct kernel wins on large maps with a spatial kernel, where a gemm with
/// few output channels is dominated by packing its huge im2col operand; gemm wins on small
/// maps and 1×1s. The rules differ per instruction set:
/// - AVX-512 (2-core Zen 4, Genoa; GMAC/s gemm → direct, three interleaved pairs on a steady
///   host, 2026-12-07): forwards on maps from 16×16 (32→32 at 32×32 74 → 95, 64→64 at 16×16
///   78 → 94, strided 32→64 56 → 73–81; 128→128 at 8×8 80 → 73 stays gemm) and wherever fewer
///   than 32 channels come out (DenseNet's 48→12 at 8×8 24 → 54); input gradients wherever
///   fewer than 32 channels come out (48→12 at 8×8 37 → 44, 64→16 at 32×32 61 → 82) and at
///   32×32 from 32 (32→32 77 → 86; 32→64 89 → 89 stays gemm, 64→64 at 16×16 87 → 77 too);
///   weight gradients on maps from 16×16 (32→32 at 32×32 42 → 90, 64→64 at 16×16 55 → 77;
///   128→128 at 8×8 58 → 50 stays gemm) and wherever fewer than 32 channels come out (48→12
///   at 8×8 15 → 40).
/// - AVX2 + FMA only (2-core Zen 3; GMAC/s gemm → direct, median of 3 interleaved runs on a
///   host whose speed drifted by a third between runs): forwards at 32×32 (32→32 49 → 65,
///   32→64 56 → 61), strided from 32×32 (32→64 35 → 55) and wherever fewer than 32 channels
///   come out (DenseNet's 48→12 at 16×16 26 → 34); since the kernel's 3×3 path unrolls its
///   taps (`grouped_conv_kernel::grid3x3`), also at 16×16 (64→64 55 → 69, four interleaved
///   pairs; 128→128 at 8×8 48 → 47 stays gemm); input
///   gradients at 32×32 from at most 32 channels (32→32 55 → 62, 64→16 42 → 48, 48→12
///   32 → 48; 32→64 56 → 52 stays gemm); weight gradients on maps from 16×16 and wherever
///   fewer than 32 channels come out (32→64 at 32×32 37 → 59, 64→64 at 16×16 33 → 45, 48→12
///   at 8×8 11 → 17; 128→128 at 8×8 39 → 31 stays gemm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Forward,
    InputGrad,
    WeightGrad,
}

/// The kernel that runs a product of a dense conv.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseKernel {
    /// [`super::channel_conv`]: vectorised over output channels.
    Channel,
    /// [`super::grouped_conv`] as one group: vectorised along rows.
    Direct,
    /// im2col + the gemm crate.
    Gemm,
}

/// Which kernel runs `product` of dense conv `g` with elements of type `T`.
pub fn dense_kernel<T: NumLike>(g: &ConvGeom, product: Product) -> DenseKernel {
    if super::channel_conv::applies::<T>(g, product) {
        DenseKernel::Channel
    } else if use_direct(g, product) {
        DenseKernel::Direct
    } else {
        DenseKernel::Gemm
    }
}

pub fn use_direct(g: &ConvGeom, product: Product) -> bool {
    if g.k == 1 || g.groups != 1 {
        return false;
    }
    let plane = g.out_plane();
    if has_avx512() {
        return match product {
            Product::Forward | Product::WeightGrad => plane >= 256 || g.cout < 32,
            Product::InputGrad => g.cout < 32 || (plane >= 1024 && g.cout <= 32),
        };
    }
    match product {
        Product::Forward => plane >= 256 || g.cout < 32,
        Product::InputGrad => plane >= 1024 && g.cout <= 32,
        Product::WeightGrad => plane >= 256 || g.cout < 32,
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
