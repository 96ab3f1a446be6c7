//! Image bytes → one normalised 3×32×32 float tensor.
//!
//! Policy (the README documents it): the format is recognised from the content (PNG, JPEG, BMP,
//! GIF, WebP; an animated GIF gives its first frame); the pixels become 8-bit RGB (an alpha
//! channel is dropped, grey is repeated); the largest centred square is cropped, so the
//! object keeps its aspect ratio as in CIFAR's square photos; the square is resized to 32×32
//! with a triangle (bilinear) filter, which averages over the whole footprint when shrinking;
//! each channel becomes (value/255 − mean)/std with the model's metadata.
//!
//! Decoding is bounded before any pixel is allocated: the header's dimensions are checked
//! against [`MAX_SIDE`] and the decoder's allocations against [`MAX_DECODE_BYTES`], so a
//! 10,000×10,000 PNG of zeros (a few hundred KB) is refused after reading its header.

use crate::IMAGE_LEN;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Longest accepted side, in pixels.
pub const MAX_SIDE: u32 = 8192;
/// Most bytes a decoder may allocate for one image (about 44 megapixels of RGB).
pub const MAX_DECODE_BYTES: u64 = MAX_DECODE_MIB << 20;
const MAX_DECODE_MIB: u64 = 128;
/// Formats the server decodes.
pub const FORMATS: [ImageFormat; 5] = [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp, ImageFormat::Gif, ImageFormat::WebP];

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("the bytes are not an image in a recognised format (PNG, JPEG, BMP, GIF or WebP expected)")]
    NotAnImage,
    #[error("{0:?} images are not supported: send PNG, JPEG, BMP, GIF or WebP")]
    Unsupported(ImageFormat),
    #[error("the image is too large to decode: {0} (limits: {MAX_SIDE}×{MAX_SIDE} pixels, {MAX_DECODE_MIB} MiB decoded)")]
    TooLarge(String),
    #[error("the image could not be decoded (truncated or corrupt?): {0}")]
    Corrupt(String),
}

/// Per-channel normalisation from the model's metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// Decodes an image with bounded memory.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, PreprocessError> {
    if bytes.is_empty() {
        return Err(PreprocessError::Empty);
    }
    // A Cursor cannot fail to seek or read, so the io::Error here is unreachable in practice.
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| PreprocessError::Corrupt(e.to_string()))?;
    let format = reader.format().ok_or(PreprocessError::NotAnImage)?;
    if !FORMATS.contains(&format) {
        return Err(PreprocessError::Unsupported(format));
    }
    let mut reader = reader;
    reader.limits(limits());
    // into_decoder reads only the header and checks the dimension limits.
    let decoder = reader.into_decoder().map_err(classify)?;
    // The pixel buffer itself counts against the allocation limit, checked before decoding.
    limits().reserve(decoder.total_bytes()).map_err(classify)?;
    let image = DynamicImage::from_decoder(decoder).map_err(classify)?;
    if image.width() == 0 || image.height() == 0 {
        return Err(PreprocessError::Corrupt("the image has no pixels".into()));
    }
    Ok(image)
}

fn classify(err: ImageError) -> PreprocessError {
    match err {
        ImageError::Limits(e) => PreprocessError::TooLarge(e.to_string()),
        ImageError::Unsupported(e) => PreprocessError::Corrupt(e.to_string()),
        other => PreprocessError::Corrupt(other.to_string()),
    }
}

/// Centre-crops to a square and resizes to 32×32 RGB; an image that already is 32×32 RGB
/// (what CIFAR clients send) is only borrowed, not copied three times.
pub fn to_32x32(image: &DynamicImage) -> std::borrow::Cow<'_, image::RgbImage> {
    if let DynamicImage::ImageRgb8(rgb) = image {
        if rgb.dimensions() == (32, 32) {
            return std::borrow::Cow::Borrowed(rgb);
        }
    }
    let (w, h) = (image.width(), image.height());
    let side = w.min(h);
    let square = image.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    std::borrow::Cow::Owned(image::imageops::resize(&square.to_rgb8(), 32, 32, FilterType::Triangle))
}

/// 32×32 RGB → CHW floats in `out` (one image, [`IMAGE_LEN`] floats), (v/255 − mean)/std.
pub fn normalise_into(rgb: &image::RgbImage, norm: &Normalisation, out: &mut [f32]) {
    let plane = 32 * 32;
    // (v/255 − mean)/std as one multiply-add per value.
    let scale = norm.std.map(|s| 1.0 / (255.0 * s));
    let shift = [0, 1, 2].map(|c| -norm.mean[c] / norm.std[c]);
    for (i, px) in rgb.pixels().enumerate().take(plane) {
        for c in 0..3 {
            out[c * plane + i] = px.0[c] as f32 * scale[c] + shift[c];
        }
    }
}

/// 32×32 RGB → CHW floats, (v/255 − mean)/std.
pub fn normalise(rgb: &image::RgbImage, norm: &Normalisation) -> Vec<f32> {
    let mut out = vec![0f32; IMAGE_LEN];
    normalise_into(rgb, norm, &mut out);
    out
}

/// Bytes of an image file → the network's input for one image.
pub fn preprocess(bytes: &[u8], norm: &Normalisation) -> Result<Vec<f32>, PreprocessError> {
    let mut out = vec![0f32; IMAGE_LEN];
    preprocess_into(bytes, norm, &mut out)?;
    Ok(out)
}

/// Bytes of an image file → the network's input for one image, written into `out`
/// ([`IMAGE_LEN`] floats): a request's images go straight into the buffer its batch job holds.
pub fn preprocess_into(bytes: &[u8], norm: &Normalisation, out: &mut [f32]) -> Result<(), PreprocessError> {
    let image = decode(bytes)?;
    normalise_into(&to_32x32(&image), norm, out);
    Ok(())
}

/// Pixels the image claims in its header (width × height), read without decoding; `None` when
/// the header cannot be read (decoding will then say why).
pub fn header_pixels(bytes: &[u8]) -> Option<u64> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?;
    let (w, h) = reader.into_dimensions().ok()?;
    Some(w as u64 * h as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    const NORM: Normalisation = Normalisation { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };

    fn png(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn a_32x32_image_is_only_normalised() {
        let img = RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, 200]));
        let t = preprocess(&png(&img), &NORM).unwrap();
        assert_eq!(t.len(), IMAGE_LEN);
        let expect = |v: u8| (v as f32 / 255.0 - 0.5) / 0.25;
        let close = |got: f32, want: f32| assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        close(t[0], expect(0));
        close(t[5], expect(40)); // red plane, x = 5
        close(t[1024 + 32 * 3], expect(24)); // green plane, y = 3
        close(t[2048 + 77], expect(200));
    }

    #[test]
    fn the_multiply_add_matches_the_formula() {
        let norm = Normalisation { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.243, 0.261] };
        let img = RgbImage::from_fn(32, 32, |x, y| Rgb([(x * 8) as u8, (y * 8) as u8, ((x + y) * 4) as u8]));
        let t = normalise(&img, &norm);
        for (i, px) in img.pixels().enumerate() {
            for c in 0..3 {
                let exact = (px.0[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
                assert!((t[c * 1024 + i] - exact).abs() < 1e-5, "{c} {i}");
            }
        }
        assert_eq!(header_pixels(&png(&RgbImage::new(40, 30))), Some(1200));
        assert_eq!(header_pixels(b"not an image"), None);
    }

    #[test]
    fn wide_images_are_centre_cropped() {
        // Left and right thirds red, centre square blue: only blue survives the crop.
        let img = RgbImage::from_fn(96, 32, |x, _| if (32..64).contains(&x) { Rgb([0, 0, 255]) } else { Rgb([255, 0, 0]) });
        let decoded = decode(&png(&img)).unwrap();
        let small = to_32x32(&decoded);
        assert!(small.pixels().all(|p| p.0 == [0, 0, 255]), "{:?}", small.get_pixel(0, 0));
    }

    #[test]
    fn bad_inputs_are_named() {
        assert!(matches!(decode(b""), Err(PreprocessError::Empty)));
        assert!(matches!(decode(b"hello, this is text"), Err(PreprocessError::NotAnImage)));
        let good = png(&RgbImage::new(40, 40));
        assert!(matches!(decode(&good[..good.len() / 2]), Err(PreprocessError::Corrupt(_))));
        // TIFF is recognised but not served.
        assert!(matches!(decode(b"II*\0\x08\0\0\0\0\0\0\0\0\0\0\0"), Err(PreprocessError::Unsupported(_))));
    }

    #[test]
    fn huge_dimensions_are_refused_from_the_header() {
        // A PNG header claiming 10,000×10,000 followed by no pixel data at all: refused by the
        // limits, not by running out of data.
        let mut bytes = png(&RgbImage::new(1, 1));
        bytes[16..20].copy_from_slice(&10_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&10_000u32.to_be_bytes());
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(PreprocessError::TooLarge(_))), "{:?}", decode(&bytes).err());
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
}
