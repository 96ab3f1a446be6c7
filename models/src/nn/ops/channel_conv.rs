//! Dense 3×3 convs (stride 1, padding 1) on small maps, vectorised over output channels.
//!
//! On an 8×8 map a row is half an AVX-512 vector, so the direct kernel of
//! [`super::grouped_conv`] (vectorised along rows) wastes lanes, and im2col + gemm writes a
//! patch matrix nine times the input. Here each image is copied once into zero-padded planes;
//! a block of [`COB`] output channels × [`R`] pixels of a row stays in registers while every
//! input channel and tap streams past (weights packed `[channel block][ci][tap][COB]`). The
//! input gradient of such a conv is the same conv of the padded output gradient with the
//! kernel transposed and flipped; the weight gradient accumulates the taps of one input
//! channel against the pixel-major output gradient.

use super::channel_conv_kernel::{conv_segment, dot_plane, COB, R, TAPS};
use super::conv_geom::ConvGeom;
use super::conv_plan::Product;
use super::scratch::{Pooled, Scratch};
use super::simd::{has_avx2_fma, has_avx512, is_f32};
use super::storage::{num_like::NumLike, output_vec};
use rayon::prelude::*;

/// Whether a product of this conv runs here: f32 on a CPU with AVX-512 or AVX2 + FMA
/// (elsewhere the generic loops would lose to the gemm), a 3×3 kernel with stride 1 and
/// padding 1, rows in whole blocks of [`R`], channels in whole blocks of [`COB`].
///
/// Measured with `op_bench --filter dense --only "k3 s1" [--direct|--channel]` on a 2-core
/// Zen 4 (GMAC/s gemm / direct / here, 2026-12-07): forward 128→128 at 8×8 69 / 72 / 107,
/// 64→128 at 16×16 75 / 91 / 102, 32→64 at 32×32 88 / 99 / 101; input gradient 82 / 54 / 104,
/// 87 / 74 / 103, 90 / 88 / 102; weight gradient 48 / 48 / 95, 59 / 78 / 94, 60 / 93 / 92.
/// With `CIFAR_SIMD=avx2` (our kernels on AVX2, the gemm crate still AVX-512) the same layers
/// ran 68 / 60 / 97, 80 / 79 / 89, 80 / 84 / 87 forward, 77 / 44 / 99, 85 / 54 / 95,
/// 77 / 60 / 90 input gradient, 35 / 43 / 87, 62 / 66 / 77 weight gradient; but at 32×32 the
/// AVX2 direct weight gradient stays ahead (32→32 91 against 65 here, 32→64 74 against 73),
/// so on AVX2 the 32×32 weight gradients keep [`super::conv_plan`]'s choice.
pub fn applies<T: NumLike>(g: &ConvGeom, product: Product) -> bool {
    let blocked = match product {
        Product::Forward | Product::WeightGrad => g.cout,
        Product::InputGrad => g.cin,
    };
    let simd = if has_avx512() {
        true
    } else {
        has_avx2_fma() && !(product == Product::WeightGrad && g.in_plane() >= 1024)
    };
    is_f32::<T>() && simd && fits(g) && blocked % COB == 0
}

/// The geometry this module computes, whatever the CPU.
fn fits(g: &ConvGeom) -> bool {
    g.groups == 1 && g.k == 3 && g.stride == 1 && g.pad == 1 && g.w % R == 0 && g.h > 0
}

/// Row length and channel stride of the zero-padded planes.
fn padded(g: &ConvGeom) -> (usize, usize) {
    (g.w + 2, (g.h + 2) * (g.w + 2))
}

/// `weight(o, i, t)` as `[o / COB][i][t][o % COB]`, for `outs` (a multiple of COB) × `ins`.
fn pack<T: NumLike>(outs: usize, ins: usize, weight: impl Fn(usize, usize, usize) -> T) -> Vec<T> {
    let mut p = vec![T::ZERO; outs * ins * TAPS];
    for ob in 0..outs / COB {
        for i in 0..ins {
            for t in 0..TAPS {
                let dst = &mut p[((ob * ins + i) * TAPS + t) * COB..][..COB];
                for (c, v) in dst.iter_mut().enumerate() {
                    *v = weight(ob * COB + c, i, t);
                }
            }
        }
    }
    p
}

/// `planes` (`channels` of `h × w`) into the interior of zero-bordered padded planes.
fn pad_planes<T: NumLike>(planes: &[T], channels: usize, g: &ConvGeom, dst: &mut [T]) {
    let (rs, cs) = padded(g);
    for c in 0..channels {
        for y in 0..g.h {
            dst[c * cs + (y + 1) * rs + 1..][..g.w].copy_from_slice(&planes[(c * g.h + y) * g.w..][..g.w]);
        }
    }
}

/// One image: `out[o] = bias[o] + Σ_i conv3x3(pad[i], wp[o, i])` for `outs` channels.
fn conv_image<T: NumLike>(pad: &[T], wp: &[T], bias: Option<&[T]>, ins: usize, outs: usize, g: &ConvGeom, out: &mut [T]) {
    let (rs, cs) = padded(g);
    let mut tile = [T::ZERO; R * COB];
    for ob in 0..outs / COB {
        let wts = &wp[ob * ins * TAPS * COB..][..ins * TAPS * COB];
        for y in 0..g.h {
            for x0 in (0..g.w).step_by(R) {
                conv_segment(&mut tile, &pad[y * rs + x0..], cs, ins, rs, wts);
                for c in 0..COB {
                    let o = ob * COB + c;
                    let b = bias.map_or(T::ZERO, |b| b[o]);
                    let dst = &mut out[(o * g.h + y) * g.w + x0..][..R];
                    for (r, d) in dst.iter_mut().enumerate() {
                        *d = tile[r * COB + c] + b;
                    }
                }
            }
        }
    }
}

/// Every image of `input` (`ins` channels) convolved with packed weights into `outs` channels.
fn conv_batch<T: Pooled>(input: &[T], wp: &[T], bias: Option<&[T]>, ins: usize, outs: usize, g: &ConvGeom) -> Vec<T> {
    let (plane, cs) = (g.h * g.w, padded(g).1);
    let mut out = output_vec(g.n * outs * plane);
    out.par_chunks_mut(outs * plane).enumerate().for_each(|(j, o)| {
        let mut pad = Scratch::<T>::new(ins * cs);
        pad.fill(T::ZERO);
        pad_planes(&input[j * ins * plane..][..ins * plane], ins, g, &mut pad);
        conv_image(&pad, wp, bias, ins, outs, g, o);
    });
    out
}

/// `y = conv(x, w) + b`.
pub fn forward<T: Pooled>(x: &[T], w: &[T], bias: &[T], g: &ConvGeom) -> Vec<T> {
    assert!(fits(g) && g.cout % COB == 0, "channel_conv::forward on {g:?}");
    let wp = pack(g.cout, g.cin, |o, i, t| w[(o * g.cin + i) * TAPS + t]);
    conv_batch(x, &wp, Some(bias), g.cin, g.cout, g)
}

/// `dx` for output gradient `dy`: the padded `dy` convolved with the kernel transposed and
/// turned by 180°.
pub fn input_grad<T: Pooled>(dy: &[T], w: &[T], g: &ConvGeom) -> Vec<T> {
    assert!(fits(g) && g.cin % COB == 0, "channel_conv::input_grad on {g:?}");
    let wp = pack(g.cin, g.cout, |i, o, t| w[(o * g.cin + i) * TAPS + TAPS - 1 - t]);
    conv_batch(dy, &wp, None, g.cout, g.cin, g)
}

/// `dw` for input `x` and output gradient `dy`, summed over the batch in a fixed order.
pub fn weight_grad<T: Pooled>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    assert!(fits(g) && g.cout % COB == 0, "channel_conv::weight_grad on {g:?}");
    let (plane, (rs, cs)) = (g.h * g.w, padded(g));
    let scratch = || {
        let mut pad = Scratch::<T>::new(g.cin * cs);
        pad.fill(T::ZERO);
        (pad, Scratch::<T>::new(plane * g.cout))
    };
    let packed = super::reduce::ordered_sum_with::<T, _, std::convert::Infallible, _, _>(g.n, g.cout * g.cin * TAPS, scratch, |j, (pad, dyt), acc| {
        pad_planes(&x[j * g.cin * plane..][..g.cin * plane], g.cin, g, pad);
        let dys = &dy[j * g.cout * plane..][..g.cout * plane];
        for (o, row) in dys.chunks_exact(plane).enumerate() {
            for (p, &v) in row.iter().enumerate() {
                dyt[p * g.cout + o] = v;
            }
        }
        for ob in 0..g.cout / COB {
            for i in 0..g.cin {
                dot_plane(&mut acc[(ob * g.cin + i) * TAPS * COB..][..TAPS * COB], &dyt[ob * COB..], g.cout, &pad[i * cs..], rs, g.h, g.w);
            }
        }
        Ok(())
    });
    let packed = match packed {
        Ok(v) => v,
        Err(never) => match never {},
    };
    let mut dw = vec![T::ZERO; g.cout * g.cin * TAPS];
    for (o, row) in dw.chunks_exact_mut(g.cin * TAPS).enumerate() {
        for (it, v) in row.iter_mut().enumerate() {
            *v = packed[(((o / COB) * g.cin + it / TAPS) * TAPS + it % TAPS) * COB + o % COB];
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::conv2d::forward_gemm;
    use crate::nn::ops::conv2d_backward::{input_grad_gemm, weight_grad_gemm};

    fn fill<T: NumLike>(len: usize, seed: usize) -> Vec<T> {
        (0..len).map(|i| T::from_f64(((i * 7 + seed * 13) % 31) as f64 / 31.0 - 0.5)).collect()
    }

    fn max_rel<T: NumLike>(got: &[T], want: &[T]) -> f64 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(1e-12f64, |m, v| m.max(v.to_f64().abs()));
        got.iter().zip(want).fold(0f64, |m, (a, b)| m.max((a.to_f64() - b.to_f64()).abs())) / scale
    }

    /// All three products against im2col + gemm, on the generic loops (f64) and, where the CPU
    /// has them, the AVX-512 kernels (f32); shapes with one and several channel blocks.
    fn products_equal_the_gemm_path<T: Pooled>(tol: f64) {
        for (n, cin, cout, hw) in [(3, 32, 64, 8), (2, 64, 32, 16), (1, 32, 32, 8)] {
            let g = ConvGeom::new(&[n, cin, hw, hw], &[cout, cin, 3, 3], 1, 1, 1, "test").unwrap();
            let (x, w, b) = (fill::<T>(n * cin * hw * hw, 1), fill::<T>(cout * cin * 9, 2), fill::<T>(cout, 3));
            let dy = fill::<T>(n * cout * hw * hw, 4);
            let e = max_rel(&forward(&x, &w, &b, &g), &forward_gemm(&x, &w, &b, &g).unwrap());
            assert!(e < tol, "forward {g:?}: {e}");
            let e = max_rel(&input_grad(&dy, &w, &g), &input_grad_gemm(&dy, &w, &g).unwrap());
            assert!(e < tol, "input grad {g:?}: {e}");
            let e = max_rel(&weight_grad(&x, &dy, &g), &weight_grad_gemm(&x, &dy, &g).unwrap());
            assert!(e < tol, "weight grad {g:?}: {e}");
        }
    }

    #[test]
    fn f64_products_equal_the_gemm_path() {
        products_equal_the_gemm_path::<f64>(1e-12);
    }

    #[test]
    fn f32_products_equal_the_gemm_path() {
        products_equal_the_gemm_path::<f32>(1e-5);
    }

    #[test]
    fn applies_only_to_its_geometry() {
        let g = |cin, cout, k, s, hw| ConvGeom::new(&[2, cin, hw, hw], &[cout, cin, k, k], s, k / 2, 1, "test").unwrap();
        assert!(!applies::<f64>(&g(128, 128, 3, 1, 8), Product::Forward));
        assert!(!applies::<f32>(&g(128, 128, 1, 1, 8), Product::Forward));
        assert!(!applies::<f32>(&g(128, 128, 3, 2, 8), Product::Forward));
        assert!(!applies::<f32>(&g(48, 12, 3, 1, 8), Product::Forward));
        assert!(!applies::<f32>(&g(12, 64, 3, 1, 8), Product::InputGrad));
        let simd = has_avx512() || has_avx2_fma();
        assert_eq!(applies::<f32>(&g(128, 256, 3, 1, 8), Product::WeightGrad), simd);
        assert_eq!(applies::<f32>(&g(32, 32, 3, 1, 32), Product::InputGrad), simd);
        assert_eq!(applies::<f32>(&g(32, 32, 3, 1, 32), Product::WeightGrad), has_avx512());
    }
}
