//! Register-blocked inner loops of the direct grouped conv: 4 output channels × 2 vectors of
//! 16 grid positions stay in registers while every input channel and tap streams past, so each
//! loaded input vector feeds 4 FMAs (a plain axpy feeds one and stores every result).

use super::simd::{as_f32, as_f32_mut, has_avx2_fma, has_avx512};
use super::storage::num_like::NumLike;

pub const LANES: usize = 16;
/// Grid positions one block covers; buffers are padded to a multiple of it.
pub const BLOCK: usize = 2 * LANES;
/// Output channels per block.
pub const CO: usize = 4;

type V<T> = [T; LANES];

#[inline(always)]
fn load<T: NumLike>(s: &[T], at: usize) -> V<T> {
    let mut v = [T::ZERO; LANES];
    v.copy_from_slice(&s[at..at + LANES]);
    v
}

#[inline(always)]
fn fma<T: NumLike>(acc: &mut V<T>, a: T, x: &V<T>) {
    for i in 0..LANES {
        acc[i] += a * x[i];
    }
}

/// For `co < CO` and `q < len` (rounded up to [`BLOCK`]):
/// `out[co·ostride + q] = Σ_ci Σ_t wts[(co·cin + ci)·taps + t] · inp[ci·cstride + offs[t] + q]`.
#[inline(always)]
pub fn shifted_conv<T: NumLike>(out: &mut [T], ostride: usize, len: usize, inp: &[T], cstride: usize, cin: usize, offs: &[usize], wts: &[T]) {
    let blocks = len.div_ceil(BLOCK) * BLOCK;
    let max_off = offs.iter().copied().max().unwrap_or(0);
    let fits = cin > 0
        && out.len() >= (CO - 1) * ostride + blocks
        && inp.len() >= (cin - 1) * cstride + max_off + blocks
        && wts.len() >= CO * cin * offs.len();
    #[cfg(target_arch = "x86_64")]
    if fits && has_avx512() {
        if let (Some(o), Some(i), Some(w)) = (as_f32_mut(out), as_f32(inp), as_f32(wts)) {
            // SAFETY: the CPU has AVX-512F, and every access stays within the bounds checked above.
            unsafe { avx512::shifted_conv(o.as_mut_ptr(), ostride, blocks, i.as_ptr(), cstride, cin, offs, w.as_ptr()) };
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if fits && has_avx2_fma() {
        if let (Some(o), Some(i), Some(w)) = (as_f32_mut(out), as_f32(inp), as_f32(wts)) {
            // SAFETY: the CPU has AVX2 and FMA, and every access stays within the bounds checked above.
            unsafe { avx2::shifted_conv(o.as_mut_ptr(), ostride, blocks, i.as_ptr(), cstride, cin, offs, w.as_ptr()) };
            return;
        }
    }
    let _ = fits;
    shifted_conv_generic(out, ostride, len, inp, cstride, cin, offs, wts)
}

/// `offs` as the nine taps of a 3×3 kernel over rows `rs` apart, `base + r·rs + c` for
/// `(r, c)` in reading order or (the input gradient's) backwards: `(base, rs, backwards)`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn grid3x3(offs: &[usize]) -> Option<(usize, usize, bool)> {
    if offs.len() != 9 {
        return None;
    }
    let rev = offs[0] > offs[8];
    let at = |j: usize| if rev { offs[8 - j] } else { offs[j] };
    let (base, rs) = (at(0), at(3).checked_sub(at(0))?);
    (0..9).all(|j| at(j) == base + (j / 3) * rs + j % 3).then_some((base, rs, rev))
}

#[inline(always)]
fn shifted_conv_generic<T: NumLike>(out: &mut [T], ostride: usize, len: usize, inp: &[T], cstride: usize, cin: usize, offs: &[usize], wts: &[T]) {
    let taps = offs.len();
    let mut q = 0;
    while q < len {
        let mut acc = [[[T::ZERO; LANES]; 2]; CO];
        for ci in 0..cin {
            let chan = &inp[ci * cstride..];
            for (t, &off) in offs.iter().enumerate() {
                let x0 = load(chan, off + q);
                let x1 = load(chan, off + q + LANES);
                for co in 0..CO {
                    let w = wts[(co * cin + ci) * taps + t];
                    fma(&mut acc[co][0], w, &x0);
                    fma(&mut acc[co][1], w, &x1);
                }
            }
        }
        for (co, a) in acc.iter().enumerate() {
            out[co * ostride + q..][..LANES].copy_from_slice(&a[0]);
            out[co * ostride + q + LANES..][..LANES].copy_from_slice(&a[1]);
        }
        q += BLOCK;
    }
}

/// For `co < CO`, `ci < cin`, every tap t:
/// `dw[(co·cin + ci)·taps + t] += Σ_q dy[co·gstride + q] · inp[ci·cstride + offs[t] + q]`
/// over `q < len` (rounded up to [`LANES`]; `dy` is zero past `len`).
#[inline(always)]
pub fn shifted_dot<T: NumLike>(dw: &mut [T], dy: &[T], gstride: usize, len: usize, inp: &[T], cstride: usize, cin: usize, offs: &[usize]) {
    let blocks = len.div_ceil(LANES) * LANES;
    let max_off = offs.iter().copied().max().unwrap_or(0);
    let fits = cin > 0
        && dw.len() >= CO * cin * offs.len()
        && dy.len() >= (CO - 1) * gstride + blocks
        && inp.len() >= (cin - 1) * cstride + max_off + blocks;
    #[cfg(target_arch = "x86_64")]
    if fits && has_avx512() {
        if let (Some(d), Some(g), Some(i)) = (as_f32_mut(dw), as_f32(dy), as_f32(inp)) {
            // SAFETY: as in `shifted_conv`.
            unsafe { avx512::shifted_dot(d, g.as_ptr(), gstride, blocks, i.as_ptr(), cstride, cin, offs) };
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if fits && has_avx2_fma() {
        if let (Some(d), Some(g), Some(i)) = (as_f32_mut(dw), as_f32(dy), as_f32(inp)) {
            // SAFETY: as in `shifted_conv`.
            unsafe { avx2::shifted_dot(d, g.as_ptr(), gstride, blocks, i.as_ptr(), cstride, cin, offs) };
            return;
        }
    }
    let _ = fits;
    shifted_dot_generic(dw, dy, gstride, len, inp, cstride, cin, offs)
}

#[inline(always)]
fn shifted_dot_generic<T: NumLike>(dw: &mut [T], dy: &[T], gstride: usize, len: usize, inp: &[T], cstride: usize, cin: usize, offs: &[usize]) {
    const TB: usize = 3;
    let taps = offs.len();
    for ci in 0..cin {
        let chan = &inp[ci * cstride..];
        for t0 in (0..taps).step_by(TB) {
            let nt = TB.min(taps - t0);
            let mut acc = [[[T::ZERO; LANES]; TB]; CO];
            let mut q = 0;
            while q < len {
                let mut d = [[T::ZERO; LANES]; CO];
                for (co, dv) in d.iter_mut().enumerate() {
                    *dv = load(dy, co * gstride + q);
                }
                for tb in 0..TB {
                    if tb < nt {
                        let x = load(chan, offs[t0 + tb] + q);
                        for co in 0..CO {
                            for i in 0..LANES {
                                acc[co][tb][i] += d[co][i] * x[i];
                            }
                        }
                    }
                }
                q += LANES;
            }
            for (co, a) in acc.iter().enumerate() {
                for tb in 0..nt {
                    let s = a[tb].iter().fold(T::ZERO, |s, &v| s + v);
                    dw[(co * cin + ci) * taps + t0 + tb] += s;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{CO, LANES};
    use std::arch::x86_64::*;

    /// [`super::shifted_conv`] for f32 over whole blocks of 32 positions (`len` is a multiple):
    /// 64 at a time while they fit (16 accumulators: each weight broadcast feeds 4 FMAs), then
    /// a 32-wide tail, so small maps do not compute a padded half block.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn shifted_conv(out: *mut f32, ostride: usize, len: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize], wts: *const f32) {
        // Unlike the AVX2 kernel's, the tap loop here is not unrolled for 3×3 grids: with 32
        // registers this block is bound by its FMAs, and unrolling measured level (Zen 4).
        let mut q = 0;
        while q + 4 * LANES <= len {
            block::<4>(out, ostride, q, inp, cstride, cin, offs, wts);
            q += 4 * LANES;
        }
        while q < len {
            block::<2>(out, ostride, q, inp, cstride, cin, offs, wts);
            q += 2 * LANES;
        }
    }

    /// Positions `q .. q + V·16` of all [`CO`] outputs.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const V: usize>(out: *mut f32, ostride: usize, q: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize], wts: *const f32) {
        let taps = offs.len();
        let mut a = [[_mm512_setzero_ps(); V]; CO];
        for ci in 0..cin {
            let chan = inp.add(ci * cstride + q);
            let wrow = wts.add(ci * taps);
            for (t, &off) in offs.iter().enumerate() {
                let mut x = [_mm512_setzero_ps(); V];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = _mm512_loadu_ps(chan.add(off + v * LANES));
                }
                for (co, acc) in a.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*wrow.add(co * cin * taps + t));
                    for v in 0..V {
                        acc[v] = _mm512_fmadd_ps(w, x[v], acc[v]);
                    }
                }
            }
        }
        for (co, acc) in a.iter().enumerate() {
            for (v, av) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(co * ostride + q + v * LANES), *av);
            }
        }
    }

    /// [`super::shifted_dot`] for f32 over whole vectors (`len` is a multiple of 16).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn shifted_dot(dw: &mut [f32], dy: *const f32, gstride: usize, len: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize]) {
        const TB: usize = 3;
        let taps = offs.len();
        for ci in 0..cin {
            let chan = inp.add(ci * cstride);
            let mut t0 = 0;
            while t0 < taps {
                let nt = TB.min(taps - t0);
                // Missing taps of a short last chunk re-read tap t0; their sums are dropped.
                let o = [offs[t0], offs[t0 + 1.min(nt - 1)], offs[t0 + 2.min(nt - 1)]];
                let mut acc = [_mm512_setzero_ps(); CO * TB];
                let mut q = 0;
                while q < len {
                    let d = [
                        _mm512_loadu_ps(dy.add(q)),
                        _mm512_loadu_ps(dy.add(gstride + q)),
                        _mm512_loadu_ps(dy.add(2 * gstride + q)),
                        _mm512_loadu_ps(dy.add(3 * gstride + q)),
                    ];
                    for tb in 0..TB {
                        let x = _mm512_loadu_ps(chan.add(o[tb] + q));
                        for co in 0..CO {
                            acc[co * TB + tb] = _mm512_fmadd_ps(d[co], x, acc[co * TB + tb]);
                        }
                    }
                    q += LANES;
                }
                for co in 0..CO {
                    for tb in 0..nt {
                        dw[(co * cin + ci) * taps + t0 + tb] += _mm512_reduce_add_ps(acc[co * TB + tb]);
                    }
                }
                t0 += TB;
            }
        }
    }
}

/// The same kernels for CPUs with AVX2 and FMA but no AVX-512 (16 vector registers of 8 lanes):
/// smaller register blocks, so that the accumulators never spill.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::CO;
    use std::arch::x86_64::*;

    const W: usize = 8;

    /// [`super::shifted_conv`] for f32 (`len` is a multiple of 32) in blocks of 16 positions:
    /// 8 accumulators, 2 input vectors and a broadcast weight. Blocks of 24 (12 accumulators)
    /// leave no spare register, and the compiler then spilled an accumulator to the stack
    /// inside the loop: a store-to-load chain on every FMA of it, half the speed.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn shifted_conv(out: *mut f32, ostride: usize, len: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize], wts: *const f32) {
        let grid = super::grid3x3(offs);
        let mut q = 0;
        while q < len {
            match grid {
                Some((base, rs, false)) => block3x3::<2, false>(out, ostride, q, inp.add(base), cstride, cin, rs, wts),
                Some((base, rs, true)) => block3x3::<2, true>(out, ostride, q, inp.add(base), cstride, cin, rs, wts),
                None => block::<2>(out, ostride, q, inp, cstride, cin, offs, wts),
            }
            q += 2 * W;
        }
    }

    /// [`block`] for the taps of a 3×3 kernel on rows `rs` apart ([`super::grid3x3`]; `REV`:
    /// listed backwards): the nine offsets become address arithmetic the compiler unrolls,
    /// instead of a loop that loads each offset from `offs`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block3x3<const V: usize, const REV: bool>(out: *mut f32, ostride: usize, q: usize, inp: *const f32, cstride: usize, cin: usize, rs: usize, wts: *const f32) {
        let mut a = [[_mm256_setzero_ps(); V]; CO];
        let per_co = cin * 9;
        for ci in 0..cin {
            let chan = inp.add(ci * cstride + q);
            let wrow = wts.add(ci * 9);
            for r in 0..3 {
                let row = chan.add(r * rs);
                for c in 0..3 {
                    let t = if REV { 8 - (3 * r + c) } else { 3 * r + c };
                    let mut x = [_mm256_setzero_ps(); V];
                    for (v, xv) in x.iter_mut().enumerate() {
                        *xv = _mm256_loadu_ps(row.add(c + v * W));
                    }
                    for (co, acc) in a.iter_mut().enumerate() {
                        let w = _mm256_broadcast_ss(&*wrow.add(co * per_co + t));
                        for v in 0..V {
                            acc[v] = _mm256_fmadd_ps(w, x[v], acc[v]);
                        }
                    }
                }
            }
        }
        for (co, acc) in a.iter().enumerate() {
            for (v, av) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(co * ostride + q + v * W), *av);
            }
        }
    }

    /// Positions `q .. q + V·8` of all [`CO`] outputs.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const V: usize>(out: *mut f32, ostride: usize, q: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize], wts: *const f32) {
        let taps = offs.len();
        let mut a = [[_mm256_setzero_ps(); V]; CO];
        for ci in 0..cin {
            let chan = inp.add(ci * cstride + q);
            let wrow = wts.add(ci * taps);
            for (t, &off) in offs.iter().enumerate() {
                let mut x = [_mm256_setzero_ps(); V];
                for (v, xv) in x.iter_mut().enumerate() {
                    *xv = _mm256_loadu_ps(chan.add(off + v * W));
                }
                for (co, acc) in a.iter_mut().enumerate() {
                    let w = _mm256_broadcast_ss(&*wrow.add(co * cin * taps + t));
                    for v in 0..V {
                        acc[v] = _mm256_fmadd_ps(w, x[v], acc[v]);
                    }
                }
            }
        }
        for (co, acc) in a.iter().enumerate() {
            for (v, av) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(co * ostride + q + v * W), *av);
            }
        }
    }

    /// The eight lanes of `v` added up.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// [`super::shifted_dot`] for f32 (`len` is a multiple of 16): three taps at a time, so a
    /// 3×3 kernel takes three passes with no tap computed twice (pairs took five, the last one
    /// half wasted), and each position loads 3 input and 4 gradient vectors for 12 FMAs (pairs:
    /// 6 for 8). The 12 accumulators, the 3 input vectors and one gradient row, loaded just
    /// before its 3 FMAs, fill the 16 registers exactly.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn shifted_dot(dw: &mut [f32], dy: *const f32, gstride: usize, len: usize, inp: *const f32, cstride: usize, cin: usize, offs: &[usize]) {
        const TB: usize = 3;
        let taps = offs.len();
        for ci in 0..cin {
            let chan = inp.add(ci * cstride);
            let mut t0 = 0;
            while t0 < taps {
                let nt = TB.min(taps - t0);
                // A short last chunk re-reads its last tap; the extra sums are dropped.
                let o = [offs[t0], offs[t0 + 1.min(nt - 1)], offs[t0 + 2.min(nt - 1)]];
                let mut acc = [_mm256_setzero_ps(); CO * TB];
                let mut q = 0;
                while q < len {
                    let x = [
                        _mm256_loadu_ps(chan.add(o[0] + q)),
                        _mm256_loadu_ps(chan.add(o[1] + q)),
                        _mm256_loadu_ps(chan.add(o[2] + q)),
                    ];
                    for co in 0..CO {
                        let d = _mm256_loadu_ps(dy.add(co * gstride + q));
                        for tb in 0..TB {
                            acc[co * TB + tb] = _mm256_fmadd_ps(d, x[tb], acc[co * TB + tb]);
                        }
                    }
                    q += W;
                }
                for co in 0..CO {
                    for tb in 0..nt {
                        dw[(co * cin + ci) * taps + t0 + tb] += sum(acc[co * TB + tb]);
                    }
                }
                t0 += TB;
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::nn::ops::simd::test_data::{fill, max_rel};

    /// Several lengths (whole blocks of 32, as the callers pad to) and input channel counts;
    /// tap counts with and without a short last chunk of taps (1×1, 2×2, 3×3, 5×5).
    const CASES: [(usize, usize, usize); 6] = [(32, 3, 9), (64, 5, 1), (96, 2, 25), (256, 4, 9), (1024, 1, 9), (64, 2, 4)];

    type ConvKernel = unsafe fn(*mut f32, usize, usize, *const f32, usize, usize, &[usize], *const f32);
    type DotKernel = unsafe fn(&mut [f32], *const f32, usize, usize, *const f32, usize, usize, &[usize]);

    /// The SIMD kernels this CPU can run (none on a CPU without AVX2: nothing to compare).
    fn simd_kernels() -> Vec<(&'static str, ConvKernel, DotKernel)> {
        let mut kernels: Vec<(&'static str, ConvKernel, DotKernel)> = Vec::new();
        if crate::nn::ops::simd::has_avx2_fma() {
            kernels.push(("avx2", avx2::shifted_conv, avx2::shifted_dot));
        }
        if crate::nn::ops::simd::has_avx512() {
            kernels.push(("avx512", avx512::shifted_conv, avx512::shifted_dot));
        }
        kernels
    }

    #[test]
    fn simd_kernels_equal_the_generic_loops() {
        for (name, conv, dot) in simd_kernels() {
            kernels_equal_the_generic_loops(name, conv, dot);
        }
    }

    fn kernels_equal_the_generic_loops(name: &str, conv: ConvKernel, dot: DotKernel) {
        for (len, cin, taps) in CASES {
            let offs: Vec<usize> = (0..taps).map(|t| (t * 5) % 11).collect();
            let cstride = len + 16;
            let inp = fill((cin - 1) * cstride + 11 + len + BLOCK, 1);
            let wts = fill(CO * cin * taps, 2);
            let (mut want, mut got) = (vec![0f32; CO * len], vec![0f32; CO * len]);
            shifted_conv_generic(&mut want, len, len, &inp, cstride, cin, &offs, &wts);
            // SAFETY: the kernel's instructions were detected; the buffers cover every access (as `fits` checks).
            unsafe { conv(got.as_mut_ptr(), len, len, inp.as_ptr(), cstride, cin, &offs, wts.as_ptr()) };
            assert!(max_rel(&got, &want) < 1e-5, "{name} shifted_conv len {len} cin {cin} taps {taps}");

            let dy = fill(CO * len, 3);
            let (mut want, mut got) = (fill(CO * cin * taps, 4), fill(CO * cin * taps, 4));
            shifted_dot_generic(&mut want, &dy, len, len, &inp, cstride, cin, &offs);
            // SAFETY: as above.
            unsafe { dot(&mut got, dy.as_ptr(), len, len, inp.as_ptr(), cstride, cin, &offs) };
            assert!(max_rel(&got, &want) < 1e-5, "{name} shifted_dot len {len} cin {cin} taps {taps}");
        }
    }

    /// The unrolled 3×3 path of the AVX2 forward, taps in reading order (forward) and backwards
    /// (input gradient), against the generic loop; offsets that only look like a grid do not
    /// take it.
    #[test]
    fn avx2_3x3_grid_path_equals_the_generic_loop() {
        assert_eq!(grid3x3(&[5, 6, 7, 39, 40, 41, 73, 74, 75]), Some((5, 34, false)));
        assert_eq!(grid3x3(&[70, 69, 68, 36, 35, 34, 2, 1, 0]), Some((0, 34, true)));
        assert_eq!(grid3x3(&[0, 1, 2, 34, 35, 36, 68, 69, 71]), None);
        assert_eq!(grid3x3(&[0, 1, 2, 3]), None);
        if !crate::nn::ops::simd::has_avx2_fma() {
            return;
        }
        for (len, cin, rs, rev) in [(64, 3, 18, false), (256, 5, 34, false), (96, 2, 10, true), (1088, 4, 34, true)] {
            let mut offs: Vec<usize> = (0..9).map(|t| 3 + (t / 3) * rs + t % 3).collect();
            if rev {
                offs.reverse();
            }
            assert!(grid3x3(&offs).is_some());
            let cstride = len + 3 * rs + BLOCK;
            let inp = fill(cin * cstride + BLOCK, 5);
            let wts = fill(CO * cin * 9, 6);
            let (mut want, mut got) = (vec![0f32; CO * len], vec![0f32; CO * len]);
            shifted_conv_generic(&mut want, len, len, &inp, cstride, cin, &offs, &wts);
            // SAFETY: AVX2 and FMA were detected; the buffers cover every access.
            unsafe { avx2::shifted_conv(got.as_mut_ptr(), len, len, inp.as_ptr(), cstride, cin, &offs, wts.as_ptr()) };
            assert!(max_rel(&got, &want) < 1e-5, "3x3 len {len} cin {cin} rs {rs} rev {rev}");
        }
    }
}
