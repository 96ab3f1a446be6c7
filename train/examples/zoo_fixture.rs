//! Writes the model-zoo test fixture: the first N CIFAR-10 test images as one JPEG sprite
//! (tiles of 32×32, 40 per row, in test-set order) and their labels, one digit per image; and
//! the first test image alone as a PNG (the README's curl example).
//!
//!     cargo run --release -p cifar-train --example zoo_fixture -- DATA_DIR OUT_DIR [N] [QUALITY] [test|train]
//!
//! With `train`, the sprite holds N training images spread evenly over the 50,000 instead
//! (`train-images.jpg`, `train-labels.txt`): the calibration set of `train quantize`'s test.
//!
//! JPEG because the set must stay a few hundred KB in git; the tiles sit on the 16-pixel MCU
//! grid, so no block mixes two images. The test (tests/tests/model_zoo.rs) checks the shipped
//! model's accuracy on these images against its metadata, so the quality must leave accuracy
//! (almost) untouched: the example prints the byte size; measure before changing it.

use anyhow::{Context, Result};
use cifar_train::data::Cifar10;
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use std::path::PathBuf;

const PER_ROW: u32 = 40;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(data), Some(out)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: zoo_fixture DATA_DIR OUT_DIR [N=1000] [QUALITY=80] [test|train]");
    };
    let train = match args.get(4).map(String::as_str) {
        None | Some("test") => false,
        Some("train") => true,
        Some(other) => anyhow::bail!("`{other}`: the set is test or train"),
    };
    let n: usize = args.get(2).map_or(Ok(1000), |s| s.parse()).context("N")?;
    let quality: u8 = args.get(3).map_or(Ok(80), |s| s.parse()).context("QUALITY")?;
    let set = Cifar10::load(&PathBuf::from(data))?;
    let (records, prefix) = if train { (&set.train, "train") } else { (&set.test, "test") };
    anyhow::ensure!(n >= 1 && n <= records.len(), "N must be in 1..={}", records.len());
    // Test images in order (the zoo test compares with the first 1,000); training images spread.
    let index = |i: usize| if train { i * records.len() / n } else { i };
    let rows = (n as u32).div_ceil(PER_ROW);
    let mut sprite = RgbImage::new(PER_ROW * 32, rows * 32);
    let mut labels = String::with_capacity(n + 1);
    for i in 0..n {
        let img = records.image(index(i));
        let (tx, ty) = ((i as u32 % PER_ROW) * 32, (i as u32 / PER_ROW) * 32);
        for y in 0..32 {
            for x in 0..32 {
                let p = (y * 32 + x) as usize;
                sprite.put_pixel(tx + x, ty + y, Rgb([img[p], img[1024 + p], img[2048 + p]]));
            }
        }
        labels.push(char::from(b'0' + records.label(index(i))));
    }
    labels.push('\n');
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let jpeg = out.join(format!("{prefix}-images.jpg"));
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(&sprite)?;
    std::fs::write(&jpeg, &bytes)?;
    std::fs::write(out.join(format!("{prefix}-labels.txt")), labels)?;
    if !train {
        // The README's curl example: the first test image (a cat), at its own 32×32.
        let first = RgbImage::from_fn(32, 32, |x, y| *sprite.get_pixel(x, y));
        first.save(out.join("first-test-image.png"))?;
    }
    eprintln!("{}: {n} images, {} bytes (quality {quality})", jpeg.display(), bytes.len());
    Ok(())
}
