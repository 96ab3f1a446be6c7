//! The reports beside a quantized file (`--run-dir`), in `model-zoo/`'s layout: `NAME.onnx`
//! has its folder `NAME/`, so `NAME-int8.onnx` gets `NAME-int8/`, holding the training run's
//! summary with the int8 model's own test figures, and the run's recipe and curves (the int8
//! weights are those weights, rounded). The f32 confusion matrix is not copied: it is not the
//! int8 model's.

use super::{Measured, Options, QuantizeError};
use crate::files;
use crate::metrics;
use crate::report;
use crate::run_folder;
use crate::summary::{Quantized, Summary};
use cifar_models::metadata::ModelMetadata;
use std::path::{Path, PathBuf};

/// Writes the folder named after the int8 file (`opts.out`) from the run in `run_dir` and
/// returns it; on failure the int8 file is removed too, so a file without its reports is never
/// left behind.
pub fn write(opts: &Options, run_dir: &Path, run: Summary, meta: &ModelMetadata, m: Measured) -> Result<PathBuf, QuantizeError> {
    let dir = opts.out.with_extension("");
    let written = write_reports(&dir, opts, run_dir, run, meta, m);
    if written.is_err() {
        let _ = std::fs::remove_file(&opts.out);
    }
    written.map(|()| dir)
}

fn write_reports(dir: &Path, opts: &Options, run_dir: &Path, run: Summary, meta: &ModelMetadata, m: Measured) -> Result<(), QuantizeError> {
    for name in [run_folder::RECIPE, metrics::CSV, report::CURVES] {
        let from = run_dir.join(name);
        if from.exists() {
            files::write(&dir.join(name), &files::read(&from)?)?;
        }
    }
    int8_summary(run, opts, meta, m).write(dir)?;
    Ok(())
}

/// The run's summary, describing the int8 file: its test accuracy and loss, no validation
/// figures (none were measured in int8) and no f32 parity, and how it was made.
fn int8_summary(run: Summary, opts: &Options, meta: &ModelMetadata, m: Measured) -> Summary {
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    Summary {
        best_val_acc_frac: None,
        final_val_acc_frac: None,
        test_acc_frac: m.int8,
        test_loss: m.int8_loss,
        test_images: m.test_images,
        onnx: file_name(&opts.out),
        onnx_parity_max_abs_diff: None,
        quantized: Some(Quantized {
            from: file_name(&opts.onnx).unwrap_or_default(),
            quantization: meta.quantization.clone().expect("an int8 file's metadata says how it was quantized"),
            f32_test_acc_frac: m.f32,
        }),
        ..run
    }
}
