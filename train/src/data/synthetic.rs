//! Synthetic CIFAR-10 look-alikes in the official binary layout, for tests and quick demos
//! where the real set is not at hand.
//!
//! Each class has its own colour and stripe pattern (orientation and period); every image gets a
//! random stripe phase, a brightness jitter and per-pixel noise, so a small CNN has something to
//! learn but cannot memorise one fixed picture per class.

use super::cifar::{
    Layout, Records, ARCHIVE_NAME, EXTRACTED_DIR, IMAGE_BYTES, META_FILE, TEST_FILE, TRAIN_FILES,
};
use super::{DataError, Result};
use cifar_models::seed::CLASSES;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Records in each of the six batch files (10,000 like the official set by default).
    pub records_per_file: usize,
    pub seed: u64,
    /// Per-pixel noise amplitude in intensity levels (±noise).
    pub noise: u8,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec { records_per_file: 10_000, seed: 0, noise: 40 }
    }
}

impl SyntheticSpec {
    /// The layout to read the written files back with.
    pub fn layout(&self) -> Layout {
        Layout { records_per_file: self.records_per_file }
    }
}

/// The class colours (RGB), far apart so colour alone already separates most classes.
const PALETTE: [[u8; 3]; 10] = [
    [230, 60, 60],
    [60, 200, 70],
    [70, 90, 230],
    [230, 210, 60],
    [200, 70, 210],
    [60, 210, 210],
    [240, 140, 40],
    [140, 140, 140],
    [120, 60, 30],
    [250, 250, 250],
];

/// `n` records with labels balanced over the ten classes, in random order.
pub fn synthetic_records(n: usize, seed: u64, noise: u8) -> Records {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    labels.shuffle(&mut rng);
    let mut pixels = vec![0u8; n * IMAGE_BYTES];
    for (&label, image) in labels.iter().zip(pixels.chunks_exact_mut(IMAGE_BYTES)) {
        draw(label, noise, &mut rng, image);
    }
    // Labels are 0–9 and the sizes match by construction.
    Records::new(labels, pixels).expect("synthetic records are well-formed")
}

fn draw(label: u8, noise: u8, rng: &mut ChaCha8Rng, image: &mut [u8]) {
    let class = label as usize;
    let period = 4 + 2 * (class / 5); // 4 or 6 pixels
    let phase = rng.gen_range(0..period);
    let brightness: f32 = rng.gen_range(0.8..1.2);
    let noise = noise as i32;
    for (c, plane) in image.chunks_exact_mut(32 * 32).enumerate() {
        let base = PALETTE[class][c] as f32 * brightness;
        for (i, px) in plane.iter_mut().enumerate() {
            let (y, x) = (i / 32, i % 32);
            let coord = match class % 5 {
                0 => y,
                1 => x,
                2 => x + y,
                3 => x + 31 - y,
                _ => x / 2 + y / 2, // coarse diagonal checker
            };
            let on = (coord + phase) % period < period / 2;
            let shade = if on { 1.0 } else { 0.45 };
            let jitter = if noise > 0 { rng.gen_range(-noise..=noise) } else { 0 };
            *px = (base * shade + jitter as f32).clamp(0.0, 255.0) as u8;
        }
    }
}

/// Writes `data_batch_1..5.bin`, `test_batch.bin` and `batches.meta.txt` into `dir` (created if
/// needed), readable with [`crate::data::Cifar10::load_with`] and `spec.layout()`.
pub fn write_synthetic(dir: &Path, spec: &SyntheticSpec) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    for (file, name) in TRAIN_FILES.iter().chain([&TEST_FILE]).enumerate() {
        // Each file from its own seed: changing the record count does not shift the others.
        let seed = spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(file as u64);
        let records = synthetic_records(spec.records_per_file, seed, spec.noise);
        let mut bytes = Vec::with_capacity(records.len() * (1 + IMAGE_BYTES));
        for i in 0..records.len() {
            bytes.push(records.label(i));
            bytes.extend_from_slice(records.image(i));
        }
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| DataError::io(&path, e))?;
    }
    let meta = dir.join(META_FILE);
    let names = CLASSES.iter().map(|c| format!("{c}\n")).collect::<String>() + "\n";
    std::fs::write(&meta, names).map_err(|e| DataError::io(&meta, e))
}

/// Packs the batch and meta files of `dir` into a `.tar.gz` laid out like the official
/// `cifar-10-binary.tar.gz` (members under `cifar-10-batches-bin/`). Files missing from `dir`
/// are left out, so tests can build incomplete archives too.
pub fn write_archive(dir: &Path, archive: &Path) -> Result<()> {
    let file = std::fs::File::create(archive).map_err(|e| DataError::io(archive, e))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for name in TRAIN_FILES.iter().chain([&TEST_FILE, &META_FILE]) {
        let path = dir.join(name);
        if path.is_file() {
            tar.append_path_with_name(&path, format!("{EXTRACTED_DIR}/{name}"))
                .map_err(|e| DataError::io(&path, e))?;
        }
    }
    let gz = tar.into_inner().map_err(|e| DataError::io(archive, e))?;
    gz.finish().map_err(|e| DataError::io(archive, e))?;
    Ok(())
}

/// A synthetic set packed as `dir/cifar-10-binary.tar.gz`; returns the archive's path.
pub fn write_synthetic_archive(dir: &Path, spec: &SyntheticSpec) -> Result<std::path::PathBuf> {
    let staging = tempfile::tempdir_in(dir).map_err(|e| DataError::io(dir, e))?;
    write_synthetic(staging.path(), spec)?;
    let archive = dir.join(ARCHIVE_NAME);
    write_archive(staging.path(), &archive)?;
    Ok(archive)
}
