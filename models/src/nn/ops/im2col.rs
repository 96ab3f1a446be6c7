//! im2col and its adjoint col2im for a chunk of images, in the layout the dense conv gemms
//! read fastest (measured): `col` is `K × M` row-major with K = (ci, ky, kx) and
//! M = (image, oy, ox), i.e. every row is a run of output pixels, as NCHW stores them.

use super::conv_geom::ConvGeom;
use super::storage::num_like::NumLike;

/// Fills `col` (`g.patch() × b·P`) from the `b` NCHW images in `x`.
pub fn im2col<T: NumLike>(x: &[T], b: usize, g: &ConvGeom, col: &mut [T]) {
    let (p, m) = (g.out_plane(), b * g.out_plane());
    for ci in 0..g.cin {
        for ky in 0..g.k {
            let (ylo, yhi) = g.valid_out(ky, g.h, g.ho);
            for kx in 0..g.k {
                let (xlo, xhi) = g.valid_out(kx, g.w, g.wo);
                let row = &mut col[((ci * g.k + ky) * g.k + kx) * m..][..m];
                for j in 0..b {
                    let plane = &x[(j * g.cin + ci) * g.in_plane()..][..g.in_plane()];
                    let out = &mut row[j * p..][..p];
                    for oy in 0..g.ho {
                        let dst = &mut out[oy * g.wo..][..g.wo];
                        if oy < ylo || oy >= yhi {
                            dst.fill(T::ZERO);
                            continue;
                        }
                        let iy = oy * g.stride + ky - g.pad;
                        let src = &plane[iy * g.w..][..g.w];
                        dst[..xlo].fill(T::ZERO);
                        dst[xhi..].fill(T::ZERO);
                        if xlo < xhi {
                            let ix0 = xlo * g.stride + kx - g.pad;
                            if g.stride == 1 {
                                dst[xlo..xhi].copy_from_slice(&src[ix0..ix0 + (xhi - xlo)]);
                            } else {
                                for (d, s) in dst[xlo..xhi].iter_mut().zip(src[ix0..].iter().step_by(g.stride)) {
                                    *d = *s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds every entry of `col` (`g.patch() × b·P`) back onto the input pixel it was copied from,
/// into the `b` NCHW images `dx`, which the caller zeroes.
pub fn col2im<T: NumLike>(col: &[T], b: usize, g: &ConvGeom, dx: &mut [T]) {
    let (p, m) = (g.out_plane(), b * g.out_plane());
    for ci in 0..g.cin {
        for ky in 0..g.k {
            let (ylo, yhi) = g.valid_out(ky, g.h, g.ho);
            for kx in 0..g.k {
                let (xlo, xhi) = g.valid_out(kx, g.w, g.wo);
                if xlo >= xhi {
                    continue;
                }
                let row = &col[((ci * g.k + ky) * g.k + kx) * m..][..m];
                for j in 0..b {
                    let plane = &mut dx[(j * g.cin + ci) * g.in_plane()..][..g.in_plane()];
                    let src_plane = &row[j * p..][..p];
                    for oy in ylo..yhi {
                        let iy = oy * g.stride + ky - g.pad;
                        let dst = &mut plane[iy * g.w..][..g.w];
                        let src = &src_plane[oy * g.wo + xlo..oy * g.wo + xhi];
                        let ix0 = xlo * g.stride + kx - g.pad;
                        if g.stride == 1 {
                            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                                *d += *s;
                            }
                        } else {
                            for (d, s) in dst[ix0..].iter_mut().step_by(g.stride).zip(src) {
                                *d += *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies `b` images from `[image][channel][pixel]` to `[channel][image][pixel]` order, which
/// makes a chunk of images one matrix whose rows are channels.
pub fn images_to_channel_major<T: NumLike>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    for j in 0..b {
        for ch in 0..c {
            dst[(ch * b + j) * p..][..p].copy_from_slice(&src[(j * c + ch) * p..][..p]);
        }
    }
}

/// The inverse of [`images_to_channel_major`].
pub fn channel_major_to_images<T: NumLike>(src: &[T], b: usize, c: usize, p: usize, dst: &mut [T]) {
    for j in 0..b {
        for ch in 0..c {
            dst[(j * c + ch) * p..][..p].copy_from_slice(&src[(ch * b + j) * p..][..p]);
        }
    }
}

/// `dst` (`cols × rows`, row-major) = `src` (`rows × cols`, row-major) transposed, in square
/// tiles so that both sides stay in cache.
pub fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    const TILE: usize = 32;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}
