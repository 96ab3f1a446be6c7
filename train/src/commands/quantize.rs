//! `train quantize`: an exported f32 model to int8, calibrated and measured.

use crate::cli::QuantizeArgs;
use anyhow::Result;
use cifar_train::quantize::{quantize, Granularity, KeepF32, Options, WeightGrid, WeightRange};

pub fn run(args: &QuantizeArgs) -> Result<()> {
    let opts = Options {
        onnx: args.onnx.clone(),
        out: args.out.clone(),
        data_dir: args.data_dir.clone(),
        calibration_images: args.calibration_images,
        method: args.method,
        weights: WeightGrid {
            granularity: if args.per_tensor_weights { Granularity::PerTensor } else { Granularity::PerChannel },
            range: if args.full_weight_range { WeightRange::Full } else { WeightRange::Reduced },
        },
        max_drop_points: args.max_accuracy_drop.0,
        keep_f32: KeepF32 { first_conv: args.f32_first_conv, classifier: args.f32_classifier },
        ort_lib: args.ort_lib.clone(),
        run_dir: args.run_dir.clone(),
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
    if done.grouped_convs > 0 {
        // Measured with ONNX Runtime 1.31 on resnext-small (64 groups of 4 channels): its
        // grouped QLinearConv loops over the groups and took 87 % of the int8 run.
        tracing::warn!(
            "the model has {} grouped convolutions, which ONNX Runtime runs slower in int8 than in f32: \
             benchmark both (`serve bench`) before serving this file (resnext-small: 0.7x f32's img/s)",
            done.grouped_convs
        );
    }
    if let Some(dir) = &done.reports {
        println!("wrote {} (the run's summary, int8-measured, and its curves)", dir.display());
    }
    Ok(())
}
