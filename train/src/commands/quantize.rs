//! `train quantize`: an exported f32 model to int8, calibrated and measured.

use crate::cli::QuantizeArgs;
use anyhow::Result;
use cifar_train::quantize::{quantize, Granularity, KeepF32, Options};

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let opts = Options {
        onnx: args.onnx.clone(),
        out: args.out.clone(),
        data_dir: args.data_dir.clone(),
        calibration_images: args.calibration_images,
        method: args.method,
        weights: if args.per_tensor_weights { Granularity::PerTensor } else { Granularity::PerChannel },
        max_drop_points: args.max_accuracy_drop.0,
        keep_f32: KeepF32 { first_conv: args.f32_first_conv, classifier: args.f32_classifier },
        ort_lib: args.ort_lib.clone(),
    };
    let done = quantize(&opts)?;
    if done.calibration_images < args.calibration_images {
        tracing::warn!("the folder holds {} training images; calibrated on all of them", done.calibration_images);
    }
    let accuracy = match done.measured {
        Some(m) => format!(
            "test accuracy {:.2} % (f32 {:.2} %, drop {:.2} points) on {} images",
            m.int8 * 100.0,
            m.f32 * 100.0,
            (m.f32 - m.int8) * 100.0,
            m.test_images
        ),
        None => "test accuracy not measured (no test_batch.bin)".into(),
    };
    println!(
        "wrote {} ({} int8, {:.1} MB, {} on {} training images, {:.1} % argmax agreement with f32 there); {accuracy}",
        args.out.display(),
        done.meta.model,
        done.bytes as f64 / 1e6,
        args.method.as_str(),
        done.calibration_images,
        done.calibration_agreement * 100.0
    );
    Ok(())
}
