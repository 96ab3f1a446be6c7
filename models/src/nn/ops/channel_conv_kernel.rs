//! Inner loops of [`super::channel_conv`]: 3×3 taps over a zero-padded plane, vectorised over
//! output channels. A block keeps [`COB`] output channels of [`R`] pixels of one row in
//! registers (16 accumulators of 16 lanes on AVX-512); each input pixel is broadcast once per
//! tap and feeds two FMAs, each weight vector feeds [`R`].

use super::storage::num_like::NumLike;
use super::simd::{as_f32, as_f32_mut, has_avx2_fma, has_avx512};

pub const LANES: usize = 16;
/// Output channels per block: two vectors.
pub const COB: usize = 2 * LANES;
/// Pixels of a row per block.
pub const R: usize = 8;
/// Taps of the 3×3 kernel.
pub const TAPS: usize = 9;

/// For pixels `r < R` and block channels `c < COB`:
/// `tile[r·COB + c] = Σ_ci Σ_(ky,kx) wts[(ci·9 + 3ky + kx)·COB + c] · inp[ci·cstride + ky·rs + kx + r]`.
pub fn conv_segment<T: NumLike>(tile: &mut [T; R * COB], inp: &[T], cstride: usize, cin: usize, rs: usize, wts: &[T]) {
    assert!(cin > 0 && inp.len() >= (cin - 1) * cstride + 2 * rs + 2 + R && wts.len() >= cin * TAPS * COB);
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        if let (Some(i), Some(w)) = (as_f32(inp), as_f32(wts)) {
            let t = as_f32_mut(tile.as_mut_slice()).expect("tile has the inputs' type");
            // SAFETY: the CPU has AVX-512F, and every access stays within the bounds asserted above.
            unsafe { avx512::conv_segment(t.as_mut_ptr(), i.as_ptr(), cstride, cin, rs, w.as_ptr()) };
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        if let (Some(i), Some(w)) = (as_f32(inp), as_f32(wts)) {
            let t = as_f32_mut(tile.as_mut_slice()).expect("tile has the inputs' type");
            // SAFETY: the CPU has AVX2 and FMA, and every access stays within the bounds asserted above.
            unsafe { avx2::conv_segment(t.as_mut_ptr(), i.as_ptr(), cstride, cin, rs, w.as_ptr()) };
            return;
        }
    }
    conv_segment_generic(tile, inp, cstride, cin, rs, wts)
}

fn conv_segment_generic<T: NumLike>(tile: &mut [T; R * COB], inp: &[T], cstride: usize, cin: usize, rs: usize, wts: &[T]) {
    tile.fill(T::ZERO);
    for ci in 0..cin {
        for t in 0..TAPS {
            let at = ci * cstride + (t / 3) * rs + t % 3;
            let w = &wts[(ci * TAPS + t) * COB..][..COB];
            for r in 0..R {
                let x = inp[at + r];
                for (o, &wv) in tile[r * COB..][..COB].iter_mut().zip(w) {
                    *o += x * wv;
                }
            }
        }
    }
}

/// Over pixels `(y, x)` of an `h × w` plane and block channels `c < COB`:
/// `dw[(3ky + kx)·COB + c] += Σ dyt[(y·w + x)·dstride + c] · inp[(y + ky)·rs + x + kx]`,
/// where `dyt` holds the output gradient pixel-major and `inp` one zero-padded input channel.
pub fn dot_plane<T: NumLike>(dw: &mut [T], dyt: &[T], dstride: usize, inp: &[T], rs: usize, h: usize, w: usize) {
    assert!(h > 0 && w > 0 && dw.len() >= TAPS * COB && dyt.len() >= (h * w - 1) * dstride + COB && inp.len() >= (h + 1) * rs + w + 2);
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        if let (Some(d), Some(i)) = (as_f32(dyt), as_f32(inp)) {
            let acc = as_f32_mut(dw).expect("dw has the inputs' type");
            // SAFETY: as in `conv_segment`.
            unsafe { avx512::dot_plane(acc.as_mut_ptr(), d.as_ptr(), dstride, i.as_ptr(), rs, h, w) };
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        if let (Some(d), Some(i)) = (as_f32(dyt), as_f32(inp)) {
            let acc = as_f32_mut(dw).expect("dw has the inputs' type");
            // SAFETY: as in `conv_segment`.
            unsafe { avx2::dot_plane(acc.as_mut_ptr(), d.as_ptr(), dstride, i.as_ptr(), rs, h, w) };
            return;
        }
    }
    dot_plane_generic(dw, dyt, dstride, inp, rs, h, w)
}

fn dot_plane_generic<T: NumLike>(dw: &mut [T], dyt: &[T], dstride: usize, inp: &[T], rs: usize, h: usize, w: usize) {
    for y in 0..h {
        for x in 0..w {
            let d = &dyt[(y * w + x) * dstride..][..COB];
            for t in 0..TAPS {
                let v = inp[(y + t / 3) * rs + x + t % 3];
                for (a, &dv) in dw[t * COB..][..COB].iter_mut().zip(d) {
                    *a += v * dv;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{COB, LANES, R, TAPS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn conv_segment(tile: *mut f32, inp: *const f32, cstride: usize, cin: usize, rs: usize, wts: *const f32) {
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for ci in 0..cin {
            let chan = inp.add(ci * cstride);
            let w = wts.add(ci * TAPS * COB);
            for ky in 0..3 {
                let row = chan.add(ky * rs);
                for kx in 0..3 {
                    let wt = w.add((3 * ky + kx) * COB);
                    let (w0, w1) = (_mm512_loadu_ps(wt), _mm512_loadu_ps(wt.add(LANES)));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*row.add(kx + r));
                        a[0] = _mm512_fmadd_ps(x, w0, a[0]);
                        a[1] = _mm512_fmadd_ps(x, w1, a[1]);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(tile.add(r * COB), a[0]);
            _mm512_storeu_ps(tile.add(r * COB + LANES), a[1]);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_plane(dw: *mut f32, dyt: *const f32, dstride: usize, inp: *const f32, rs: usize, h: usize, w: usize) {
        let mut acc = [[_mm512_setzero_ps(); 2]; TAPS];
        for (t, a) in acc.iter_mut().enumerate() {
            a[0] = _mm512_loadu_ps(dw.add(t * COB));
            a[1] = _mm512_loadu_ps(dw.add(t * COB + LANES));
        }
        for y in 0..h {
            for x in 0..w {
                let d = dyt.add((y * w + x) * dstride);
                let (d0, d1) = (_mm512_loadu_ps(d), _mm512_loadu_ps(d.add(LANES)));
                let base = inp.add(y * rs + x);
                for (t, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*base.add((t / 3) * rs + t % 3));
                    a[0] = _mm512_fmadd_ps(v, d0, a[0]);
                    a[1] = _mm512_fmadd_ps(v, d1, a[1]);
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(dw.add(t * COB), a[0]);
            _mm512_storeu_ps(dw.add(t * COB + LANES), a[1]);
        }
    }
}

/// The same loops for CPUs with AVX2 and FMA but no AVX-512 (16 registers of 8 lanes): a
/// block of 16 channels × 4 pixels (8 accumulators) at a time, four per segment; the weight
/// gradient one vector of 8 channels × the nine taps at a time.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{COB, R, TAPS};
    use std::arch::x86_64::*;

    const W: usize = 8;
    const PX: usize = 4;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn conv_segment(tile: *mut f32, inp: *const f32, cstride: usize, cin: usize, rs: usize, wts: *const f32) {
        for c0 in [0, 2 * W] {
            for r0 in (0..R).step_by(PX) {
                quarter(tile, inp, cstride, cin, rs, wts, c0, r0);
            }
        }
    }

    /// Channels `c0 .. c0 + 16` of pixels `r0 .. r0 + 4`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn quarter(tile: *mut f32, inp: *const f32, cstride: usize, cin: usize, rs: usize, wts: *const f32, c0: usize, r0: usize) {
        let mut acc = [[_mm256_setzero_ps(); 2]; PX];
        for ci in 0..cin {
            let chan = inp.add(ci * cstride + r0);
            let w = wts.add(ci * TAPS * COB + c0);
            for ky in 0..3 {
                let row = chan.add(ky * rs);
                for kx in 0..3 {
                    let wt = w.add((3 * ky + kx) * COB);
                    let (w0, w1) = (_mm256_loadu_ps(wt), _mm256_loadu_ps(wt.add(W)));
                    for (r, a) in acc.iter_mut().enumerate() {
                        let x = _mm256_broadcast_ss(&*row.add(kx + r));
                        a[0] = _mm256_fmadd_ps(x, w0, a[0]);
                        a[1] = _mm256_fmadd_ps(x, w1, a[1]);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(tile.add((r0 + r) * COB + c0), a[0]);
            _mm256_storeu_ps(tile.add((r0 + r) * COB + c0 + W), a[1]);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_plane(dw: *mut f32, dyt: *const f32, dstride: usize, inp: *const f32, rs: usize, h: usize, w: usize) {
        for c0 in (0..COB).step_by(W) {
            let mut acc = [_mm256_setzero_ps(); TAPS];
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(dw.add(t * COB + c0));
            }
            for y in 0..h {
                for x in 0..w {
                    let d = _mm256_loadu_ps(dyt.add((y * w + x) * dstride + c0));
                    let base = inp.add(y * rs + x);
                    for (t, a) in acc.iter_mut().enumerate() {
                        let v = _mm256_broadcast_ss(&*base.add((t / 3) * rs + t % 3));
                        *a = _mm256_fmadd_ps(v, d, *a);
                    }
                }
            }
            for (t, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(dw.add(t * COB + c0), *a);
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::nn::ops::simd::test_data::{fill, max_rel};

    type ConvKernel = unsafe fn(*mut f32, *const f32, usize, usize, usize, *const f32);
    type DotKernel = unsafe fn(*mut f32, *const f32, usize, *const f32, usize, usize, usize);

    /// Every SIMD build of the two kernels this CPU can run, against the generic loops.
    #[test]
    fn simd_kernels_equal_the_generic_loops() {
        let mut kernels: Vec<(&str, ConvKernel, DotKernel)> = Vec::new();
        if has_avx2_fma() {
            kernels.push(("avx2", avx2::conv_segment, avx2::dot_plane));
        }
        if has_avx512() {
            kernels.push(("avx512", avx512::conv_segment, avx512::dot_plane));
        }
        for (name, conv, dot) in kernels {
            kernels_equal_the_generic_loops(name, conv, dot);
        }
    }

    fn kernels_equal_the_generic_loops(name: &str, conv: ConvKernel, dot: DotKernel) {
        for (cin, h, w) in [(1, 8, 8), (5, 4, 16), (3, 2, 8)] {
            let rs = w + 2;
            let cstride = (h + 2) * rs;
            let inp = fill(cin * cstride, 1);
            let wts = fill(cin * TAPS * COB, 2);
            let (mut want, mut got) = ([0f32; R * COB], [0f32; R * COB]);
            conv_segment_generic(&mut want, &inp[rs..], cstride, cin, rs, &wts);
            // SAFETY: the kernel's instructions were detected; the buffers cover every access.
            unsafe { conv(got.as_mut_ptr(), inp[rs..].as_ptr(), cstride, cin, rs, wts.as_ptr()) };
            assert!(max_rel(&got, &want) < 1e-5, "{name} conv_segment cin {cin} {h}x{w}");

            let dstride = COB + 16;
            let dyt = fill(h * w * dstride, 3);
            let (mut want, mut got) = (fill(TAPS * COB, 4), fill(TAPS * COB, 4));
            dot_plane_generic(&mut want, &dyt, dstride, &inp, rs, h, w);
            // SAFETY: as above.
            unsafe { dot(got.as_mut_ptr(), dyt.as_ptr(), dstride, inp.as_ptr(), rs, h, w) };
            assert!(max_rel(&got, &want) < 1e-5, "{name} dot_plane {h}x{w}");
        }
    }
}
