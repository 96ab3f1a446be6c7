//! A checked front end to the `gemm` crate: strided matrix views over slices, bounds verified
//! before the unsafe call.

use super::storage::num_like::NumLike;
use candle_core::{bail, Result};
pub use gemm::Parallelism;

/// A `rows × cols` view: element (i, j) is at `i * rs + j * cs`.
#[derive(Clone, Copy, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl Mat {
    pub fn row_major(rows: usize, cols: usize) -> Self {
        Self { rows, cols, rs: cols, cs: 1 }
    }

    pub fn col_major(rows: usize, cols: usize) -> Self {
        Self { rows, cols, rs: 1, cs: rows }
    }

    /// Elements of the backing slice the view reaches.
    fn span(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            0
        } else {
            (self.rows - 1) * self.rs + (self.cols - 1) * self.cs + 1
        }
    }
}

/// The number of threads kernels may use: rayon's pool, which `RAYON_NUM_THREADS` sizes.
pub fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate`.
pub fn matmul<T: NumLike>(
    dst: &mut [T],
    d: Mat,
    lhs: &[T],
    l: Mat,
    rhs: &[T],
    r: Mat,
    accumulate: bool,
    par: Parallelism,
) -> Result<()> {
    if d.rows != l.rows || d.cols != r.cols || l.cols != r.rows {
        bail!("matmul: shapes {}x{} = {}x{} · {}x{} do not fit", d.rows, d.cols, l.rows, l.cols, r.rows, r.cols);
    }
    if d.span() > dst.len() || l.span() > lhs.len() || r.span() > rhs.len() {
        bail!("matmul: a view reaches past its buffer");
    }
    if d.rows == 0 || d.cols == 0 {
        return Ok(());
    }
    if l.cols == 0 {
        if !accumulate {
            for i in 0..d.rows {
                for j in 0..d.cols {
                    dst[i * d.rs + j * d.cs] = T::ZERO;
                }
            }
        }
        return Ok(());
    }
    // SAFETY: every view was checked to stay inside its slice, `dst` is borrowed mutably and
    // so aliases neither operand, and T is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr(),
            d.cs as isize,
            d.rs as isize,
            accumulate,
            lhs.as_ptr(),
            l.cs as isize,
            l.rs as isize,
            rhs.as_ptr(),
            r.cs as isize,
            r.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}
