//! The seed's transforms: `RandomHorizontalFlip()`, `RandomCrop(32, padding=4)`, `ToTensor`,
//! `Normalize(MEAN, STD)` for training; `ToTensor` + `Normalize` for validation and test.
//!
//! The hot path turns bytes into normalised floats through one 256-entry table per channel and
//! does flip and crop as index arithmetic on whole rows, so an image costs 3,072 table lookups
//! and no allocation.

use cifar_models::seed::{MEAN, STD};

/// Image side in pixels.
pub const SIDE: usize = 32;
/// Zero padding of the random crop, in pixels on each side: the seed's, and the largest the
/// trainer takes (`--crop-padding` chooses 0 to this).
pub const PAD: usize = 4;
const PLANE: usize = SIDE * SIDE;

/// One sample's random choices. Offsets are in `-pad..=pad` for a crop padding `pad ≤ PAD`:
/// output pixel `(y, x)` reads the (possibly flipped) input at `(y + dy, x + dx)`, and zero
/// (black, before normalisation) where that falls outside the image, as torchvision's zero
/// padding does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Augment {
    pub flip: bool,
    pub dx: i8,
    pub dy: i8,
}

impl Augment {
    pub const NONE: Augment = Augment { flip: false, dx: 0, dy: 0 };

    /// Draws flip (p 0.5) and the two crop offsets for a crop padding of `pad` pixels (each
    /// uniform over the `2 pad + 1` positions, as torchvision's `randint(0, 2 pad + 1)`) from
    /// two random words. Offsets use the multiply-shift map of 32 random bits, biased by under
    /// 1e-8, so a sample always takes exactly two words and its choices depend only on its
    /// position in the stream.
    pub fn from_words(a: u64, b: u64, pad: usize) -> Self {
        debug_assert!(pad <= PAD, "crop padding {pad} above {PAD}");
        let span = 2 * pad as u64 + 1;
        let offset = |bits: u64| (((bits & 0xffff_ffff) * span) >> 32) as i8 - pad as i8;
        Augment { flip: a >> 63 == 1, dx: offset(a), dy: offset(b) }
    }
}

/// Byte → normalised float, per channel: `(v / 255 - mean) / std`.
#[derive(Clone, Debug)]
pub struct Normalizer {
    lut: [[f32; 256]; 3],
}

impl Default for Normalizer {
    /// The seed's constants, from `cifar_models::seed`.
    fn default() -> Self {
        Normalizer::new(MEAN, STD)
    }
}

impl Normalizer {
    pub fn new(mean: [f32; 3], std: [f32; 3]) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Normalizer { lut }
    }

    /// The normalised value of byte `v` in channel `c`; `value(c, 0)` is the padding value.
    pub fn value(&self, c: usize, v: u8) -> f32 {
        self.lut[c][v as usize]
    }

    /// The three 256-entry tables, channel after channel: entry `256 c + v` is `value(c, v)`.
    pub fn table(&self) -> Vec<f32> {
        self.lut.iter().flatten().copied().collect()
    }

    /// Validation/test transform: `src` is one CHW image of 3,072 bytes, `dst` 3,072 floats.
    pub fn normalize(&self, src: &[u8], dst: &mut [f32]) {
        self.augment(src, dst, Augment::NONE);
    }

    /// Training transform with the given choices; same shapes as [`Normalizer::normalize`].
    pub fn augment(&self, src: &[u8], dst: &mut [f32], aug: Augment) {
        debug_assert_eq!(src.len(), 3 * PLANE);
        debug_assert_eq!(dst.len(), 3 * PLANE);
        let (dx, dy) = (aug.dx as isize, aug.dy as isize);
        // The output columns whose source column lies inside the image.
        let x0 = (-dx).clamp(0, SIDE as isize) as usize;
        let x1 = (SIDE as isize - dx).clamp(0, SIDE as isize) as usize;
        for (c, (src_plane, dst_plane)) in
            src.chunks_exact(PLANE).zip(dst.chunks_exact_mut(PLANE)).enumerate()
        {
            let lut = &self.lut[c];
            let pad = lut[0];
            for (y, out) in dst_plane.chunks_exact_mut(SIDE).enumerate() {
                let sy = y as isize + dy;
                if !(0..SIDE as isize).contains(&sy) || x0 >= x1 {
                    out.fill(pad);
                    continue;
                }
                let row = &src_plane[sy as usize * SIDE..][..SIDE];
                out[..x0].fill(pad);
                out[x1..].fill(pad);
                // Source column of output x is x + dx, read from the row mirrored if flipped.
                let lo = (x0 as isize + dx) as usize;
                let hi = (x1 as isize + dx) as usize;
                let out = &mut out[x0..x1];
                if aug.flip {
                    let mirrored = &row[SIDE - hi..SIDE - lo];
                    for (o, &v) in out.iter_mut().zip(mirrored.iter().rev()) {
                        *o = lut[v as usize];
                    }
                } else {
                    for (o, &v) in out.iter_mut().zip(&row[lo..hi]) {
                        *o = lut[v as usize];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u32) -> Vec<u8> {
        (0..3 * PLANE as u32).map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8).collect()
    }

    /// The straightforward definition the fast path must match.
    fn reference(norm: &Normalizer, src: &[u8], aug: Augment) -> Vec<f32> {
        let mut out = vec![0.0; 3 * PLANE];
        for c in 0..3 {
            for y in 0..SIDE as isize {
                for x in 0..SIDE as isize {
                    let (sy, sx) = (y + aug.dy as isize, x + aug.dx as isize);
                    let inside = (0..32).contains(&sy) && (0..32).contains(&sx);
                    let sx = if aug.flip { 31 - sx } else { sx };
                    let v =
                        if inside { src[c * PLANE + sy as usize * SIDE + sx as usize] } else { 0 };
                    out[c * PLANE + y as usize * SIDE + x as usize] = norm.value(c, v);
                }
            }
        }
        out
    }

    #[test]
    fn normalisation_uses_the_seed_constants() {
        let norm = Normalizer::default();
        assert_eq!(MEAN, [0.4914, 0.4822, 0.4465]);
        assert_eq!(STD, [0.2023, 0.1994, 0.2010]);
        for c in 0..3 {
            assert!((norm.value(c, 0) - (-MEAN[c] / STD[c])).abs() < 1e-6);
            assert!((norm.value(c, 255) - (1.0 - MEAN[c]) / STD[c]).abs() < 1e-6);
            assert!((norm.value(c, 128) - (128.0 / 255.0 - MEAN[c]) / STD[c]).abs() < 1e-6);
        }
    }

    #[test]
    fn normalize_keeps_layout() {
        let norm = Normalizer::default();
        let src = image(1);
        let mut dst = vec![0.0; 3 * PLANE];
        norm.normalize(&src, &mut dst);
        for (i, (&s, &d)) in src.iter().zip(&dst).enumerate() {
            assert_eq!(d, norm.value(i / PLANE, s));
        }
    }

    #[test]
    fn flip_is_an_exact_mirror() {
        let norm = Normalizer::default();
        let src = image(2);
        let (mut plain, mut flipped) = (vec![0.0; 3 * PLANE], vec![0.0; 3 * PLANE]);
        norm.augment(&src, &mut plain, Augment::NONE);
        norm.augment(&src, &mut flipped, Augment { flip: true, dx: 0, dy: 0 });
        for row in 0..3 * SIDE {
            for x in 0..SIDE {
                assert_eq!(flipped[row * SIDE + x], plain[row * SIDE + SIDE - 1 - x]);
            }
        }
    }

    #[test]
    fn crop_shifts_with_zero_fill_for_every_offset() {
        let norm = Normalizer::default();
        let src = image(3);
        let mut dst = vec![0.0; 3 * PLANE];
        for flip in [false, true] {
            for dy in -4..=4 {
                for dx in -4..=4 {
                    let aug = Augment { flip, dx, dy };
                    norm.augment(&src, &mut dst, aug);
                    assert_eq!(dst, reference(&norm, &src, aug), "{aug:?}");
                }
            }
        }
        // A shift by +4 right: the last four columns are padding (normalised zero).
        norm.augment(&src, &mut dst, Augment { flip: false, dx: 4, dy: 0 });
        for c in 0..3 {
            for y in 0..SIDE {
                for x in 28..SIDE {
                    assert_eq!(dst[c * PLANE + y * SIDE + x], -MEAN[c] / STD[c]);
                }
                assert_eq!(dst[c * PLANE + y * SIDE], norm.value(c, src[c * PLANE + y * SIDE + 4]));
            }
        }
    }

    #[test]
    fn drawn_offsets_stay_within_the_padding_and_cover_it() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            // SplitMix64: only a spread of inputs is needed here.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        for pad in [PAD, 2, 0] {
            let span = 2 * pad + 1;
            let mut seen = [vec![0u32; span], vec![0u32; span]];
            let mut flips = 0;
            for _ in 0..2_000 * span {
                let aug = Augment::from_words(next(), next(), pad);
                let p = pad as i8;
                assert!((-p..=p).contains(&aug.dx) && (-p..=p).contains(&aug.dy), "{aug:?} pad {pad}");
                seen[0][(aug.dx + p) as usize] += 1;
                seen[1][(aug.dy + p) as usize] += 1;
                flips += aug.flip as u32;
            }
            assert!(seen.iter().flatten().all(|&n| (1_700..2_300).contains(&n)), "pad {pad}: {seen:?}");
            let half = 1_000 * span as u32;
            assert!((half * 94 / 100..half * 106 / 100).contains(&flips), "pad {pad}: {flips}");
        }
    }
}
