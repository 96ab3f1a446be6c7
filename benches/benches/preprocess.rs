//! The server's preprocessing of one uploaded image (decode + centre crop + resize to 32×32 +
//! normalise), as `POST /v1/classify` runs it before batching: a CIFAR-sized PNG, a larger PNG
//! and a JPEG of a phone-thumbnail size.

use cifar_models::metadata::ModelMetadata;
use cifar_serve::preprocess::{preprocess, Normalisation};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use image::ImageFormat;

/// A smooth colour field with a disc, deterministic: photo-like enough that PNG and JPEG do
/// real work (a flat image would compress to nothing).
fn picture(side: u32, format: ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(side, side, |x, y| {
        let c = side as i64 / 2;
        let inside = (x as i64 - c).pow(2) + (y as i64 - c).pow(2) < (c * 2 / 3).pow(2);
        let base = [(x * 255 / side) as u8, (y * 255 / side) as u8, ((x ^ y) & 0xff) as u8];
        image::Rgb(if inside { [200, base[0], base[2]] } else { base })
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img).write_to(&mut out, format).expect("encoding a bench image");
    out.into_inner()
}

fn preprocess_one(c: &mut Criterion) {
    let meta = ModelMetadata::for_model("resnet-light").expect("a zoo model");
    let norm = Normalisation { mean: meta.mean, std: meta.std };
    let mut group = c.benchmark_group("preprocess");
    group.throughput(Throughput::Elements(1));
    for (name, side, format) in [("png_32", 32, ImageFormat::Png), ("png_256", 256, ImageFormat::Png), ("jpeg_256", 256, ImageFormat::Jpeg)] {
        let bytes = picture(side, format);
        group.bench_function(name, |b| b.iter(|| preprocess(black_box(&bytes), &norm).expect("a valid image")));
    }
    group.finish();
}

criterion_group!(benches, preprocess_one);
criterion_main!(benches);
