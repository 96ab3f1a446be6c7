//! Occlusion sensitivity (Zeiler & Fergus, 2014): how much a class's probability drops when
//! each P×P patch of the 32×32 input is replaced by the image's mean colour. It needs nothing
//! from the model but forward passes, so it works for every served file, int8 included.

use crate::IMAGE_LEN;
use image::{Rgb, RgbImage};

/// The input's side in pixels.
pub const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
/// Patch sides the API accepts: below 2 a patch is a pixel (noise), above 16 a quadrant.
pub const PATCHES: std::ops::RangeInclusive<usize> = 2..=16;

/// Where the patches go: a P×P square every S pixels, rows and columns alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Occlusion {
    pub patch: usize,
    pub stride: usize,
}

impl Occlusion {
    /// Checks P in 2–16 and S in 1–P (a stride beyond the patch would leave pixels untested).
    pub fn new(patch: usize, stride: usize) -> Result<Self, String> {
        if !PATCHES.contains(&patch) {
            return Err(format!("patch must be from {} to {} pixels, got {patch}", PATCHES.start(), PATCHES.end()));
        }
        if !(1..=patch).contains(&stride) {
            return Err(format!("stride must be from 1 to the patch size ({patch}), got {stride}"));
        }
        Ok(Self { patch, stride })
    }

    /// Patch positions along one side.
    pub fn cells(&self) -> usize {
        (SIDE - self.patch) / self.stride + 1
    }

    /// Occluded copies one image makes: one per grid cell.
    pub fn copies(&self) -> usize {
        self.cells() * self.cells()
    }

    /// Top-left pixel of cell (row, col).
    pub fn origin(&self, row: usize, col: usize) -> (usize, usize) {
        (row * self.stride, col * self.stride)
    }

    /// The occluded copies of one normalised CHW image, cells in row-major order.
    pub fn occlude(&self, image: &[f32]) -> Vec<f32> {
        assert_eq!(image.len(), IMAGE_LEN, "one 3×32×32 image");
        let fill = mean_colour(image);
        let mut copies = Vec::with_capacity(self.copies() * IMAGE_LEN);
        for row in 0..self.cells() {
            for col in 0..self.cells() {
                let start = copies.len();
                copies.extend_from_slice(image);
                let (y0, x0) = self.origin(row, col);
                for (c, &value) in fill.iter().enumerate() {
                    for y in y0..y0 + self.patch {
                        let line = start + c * PLANE + y * SIDE;
                        copies[line + x0..line + x0 + self.patch].fill(value);
                    }
                }
            }
        }
        copies
    }
}

/// Each channel's mean: the image's mean colour (normalisation is affine per channel, so the
/// mean of the normalised values is the normalised mean colour).
pub fn mean_colour(image: &[f32]) -> [f32; 3] {
    std::array::from_fn(|c| image[c * PLANE..(c + 1) * PLANE].iter().sum::<f32>() / PLANE as f32)
}

/// The drop in one class's probability per cell (row-major), positive where hiding the patch
/// lowers it: the parts of the picture the answer rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityMap {
    pub occlusion: Occlusion,
    pub drops: Vec<f32>,
}

impl SensitivityMap {
    pub fn new(occlusion: Occlusion, base_probability: f32, occluded_probabilities: impl IntoIterator<Item = f32>) -> Self {
        let drops: Vec<f32> = occluded_probabilities.into_iter().map(|p| base_probability - p).collect();
        assert_eq!(drops.len(), occlusion.copies(), "one probability per occluded copy");
        Self { occlusion, drops }
    }

    /// The map as rows of cells.
    pub fn grid(&self) -> Vec<Vec<f32>> {
        self.drops.chunks(self.occlusion.cells()).map(<[f32]>::to_vec).collect()
    }

    /// (row, col) of the largest drop.
    pub fn hottest(&self) -> (usize, usize) {
        let i = (0..self.drops.len()).max_by(|&a, &b| self.drops[a].total_cmp(&self.drops[b]).then(b.cmp(&a))).unwrap_or(0);
        (i / self.occlusion.cells(), i % self.occlusion.cells())
    }

    /// Per pixel, the mean drop of the patches that cover it (0 where none does: the edge strip
    /// a stride can leave).
    pub fn pixel_heat(&self) -> Vec<f32> {
        let (mut sum, mut count) = (vec![0f32; PLANE], vec![0u32; PLANE]);
        let cells = self.occlusion.cells();
        for (i, &drop) in self.drops.iter().enumerate() {
            let (y0, x0) = self.occlusion.origin(i / cells, i % cells);
            for y in y0..y0 + self.occlusion.patch {
                for x in x0..x0 + self.occlusion.patch {
                    sum[y * SIDE + x] += drop;
                    count[y * SIDE + x] += 1;
                }
            }
        }
        sum.iter().zip(&count).map(|(&s, &n)| if n == 0 { 0.0 } else { s / n as f32 }).collect()
    }

    /// The 32×32 image the model saw, scaled up `scale` times, with the map over it: red where
    /// hiding a patch lowers the class's probability, blue where it raises it, both in
    /// proportion to the largest change.
    pub fn overlay(&self, seen: &RgbImage, scale: u32) -> RgbImage {
        let heat = self.pixel_heat();
        let peak = heat.iter().fold(0f32, |m, h| m.max(h.abs())).max(1e-6);
        let side = SIDE as u32 * scale;
        RgbImage::from_fn(side, side, |x, y| {
            let (px, py) = (x / scale, y / scale);
            let h = heat[py as usize * SIDE + px as usize] / peak;
            let tint = if h >= 0.0 { [230.0, 40.0, 30.0] } else { [30.0, 90.0, 230.0] };
            let alpha = 0.7 * h.abs();
            let base = seen.get_pixel(px, py).0;
            Rgb(std::array::from_fn(|c| (base[c] as f32 * (1.0 - alpha) + tint[c] * alpha).round() as u8))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<f32> {
        (0..IMAGE_LEN).map(|i| (i % 97) as f32 / 10.0 - 4.0).collect()
    }

    #[test]
    fn limits_and_grid_sizes() {
        assert_eq!(Occlusion::new(4, 4).unwrap().copies(), 64);
        assert_eq!(Occlusion::new(8, 4).unwrap().cells(), 7);
        assert_eq!(Occlusion::new(5, 3).unwrap().cells(), 10); // 0, 3, …, 27: 27 + 5 = 32
        assert_eq!(Occlusion::new(2, 1).unwrap().copies(), 31 * 31);
        assert_eq!(Occlusion::new(16, 16).unwrap().copies(), 4);
        for (p, s) in [(1, 1), (17, 4), (4, 0), (4, 5), (0, 0)] {
            assert!(Occlusion::new(p, s).is_err(), "patch {p} stride {s} accepted");
        }
    }

    #[test]
    fn each_copy_hides_exactly_its_patch() {
        let image = ramp();
        let occ = Occlusion::new(5, 3).unwrap();
        let fill = mean_colour(&image);
        let copies = occ.occlude(&image);
        assert_eq!(copies.len(), occ.copies() * IMAGE_LEN);
        for (i, copy) in copies.chunks_exact(IMAGE_LEN).enumerate() {
            let (y0, x0) = occ.origin(i / occ.cells(), i % occ.cells());
            for c in 0..3 {
                for y in 0..SIDE {
                    for x in 0..SIDE {
                        let at = c * PLANE + y * SIDE + x;
                        let inside = (y0..y0 + 5).contains(&y) && (x0..x0 + 5).contains(&x);
                        assert_eq!(copy[at], if inside { fill[c] } else { image[at] }, "copy {i} c{c} y{y} x{x}");
                    }
                }
            }
        }
    }

    #[test]
    fn drops_hottest_cell_and_pixel_heat() {
        let occ = Occlusion::new(16, 8).unwrap(); // 3×3 cells
        let map = SensitivityMap::new(occ, 0.9, [0.9, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.95]);
        assert_eq!(map.grid().len(), 3);
        assert!((map.grid()[2][1] - 0.8).abs() < 1e-6);
        assert_eq!(map.hottest(), (2, 1));
        let heat = map.pixel_heat();
        // Pixel (31, 4) lies only under cell (2, 0); pixel (31, 12) under (2, 0) and (2, 1).
        assert!(heat[31 * SIDE + 4].abs() < 1e-6);
        assert!((heat[31 * SIDE + 12] - 0.4).abs() < 1e-6);
        // Pixel (20, 20) lies under cells (1,1), (1,2), (2,1), (2,2): their mean.
        let mean = (0.0 + 0.0 + 0.8 + (0.9 - 0.95)) / 4.0;
        assert!((heat[20 * SIDE + 20] - mean).abs() < 1e-6);
    }

    #[test]
    fn overlay_is_red_where_the_drop_is() {
        let occ = Occlusion::new(16, 16).unwrap();
        let map = SensitivityMap::new(occ, 1.0, [1.0, 0.0, 1.0, 1.0]);
        let seen = RgbImage::from_pixel(32, 32, Rgb([128, 128, 128]));
        let png = map.overlay(&seen, 4);
        assert_eq!(png.dimensions(), (128, 128));
        let hot = png.get_pixel(100, 10).0; // cell (0, 1)
        let cold = png.get_pixel(10, 100).0;
        assert!(hot[0] > 180 && hot[2] < 80, "{hot:?}");
        assert_eq!(cold, [128, 128, 128]);
    }
}
