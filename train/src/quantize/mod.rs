//! `train quantize`: an f32 file this project exported, calibrated on training images and
//! rewritten as a QDQ graph (int8 weights, uint8 activations) that ONNX Runtime runs with its
//! integer kernels; both models are measured on the test set, and the file is written only
//! when the int8 one is within the allowed accuracy drop.

mod calibrate;
mod model;
mod plan;
mod qdq;
mod ranges;
mod runtime;
mod zoo_folder;

pub use plan::KeepF32;
pub use qdq::{Granularity, WeightGrid, WeightRange};
pub use ranges::Method;

use crate::data::{BatchFiles, DataError, Normalizer, Records};
use crate::files::{self, FileError};
use crate::summary::Summary;
use cifar_models::metadata::{MetadataError, ModelMetadata, Precision, Quantization};
use cifar_onnxrt::Flavor;
use prost::Message;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("{} is not an ONNX model ({reason})", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Metadata { path: PathBuf, source: MetadataError },
    #[error("{} is {precision} already: quantize the f32 file it came from", path.display())]
    AlreadyQuantized { path: PathBuf, precision: Precision },
    #[error(
        "{} has no test_batch.bin, so the accuracy drop cannot be measured: add the test file, or pass \
         --max-accuracy-drop off to write the model unmeasured",
        dir.display()
    )]
    NoTestData { dir: PathBuf },
    #[error(
        "int8 test accuracy {:.2} % is {:.2} points below f32's {:.2} % on {test_images} test images \
         (limit --max-accuracy-drop {limit}); {} not written",
        int8 * 100.0, (f32 - int8) * 100.0, f32 * 100.0, out.display()
    )]
    AccuracyDrop { f32: f64, int8: f64, test_images: usize, limit: f64, out: PathBuf },
    #[error(
        "{} has no test_batch.bin: --run-dir describes the int8 file by its measured test accuracy, so it needs the test file",
        dir.display()
    )]
    RunNeedsTestData { dir: PathBuf },
    #[error("--run-dir holds a {run} run but {} is a {onnx} model", path.display())]
    RunMismatch { run: String, onnx: String, path: PathBuf },
    #[error("--calibration-images must be at least 1")]
    NoCalibration,
    #[error("calibration failed: {0}")]
    Calibration(String),
    #[error("cannot quantize this graph: {0}")]
    Unsupported(String),
    #[error("ONNX Runtime {what}: {reason}")]
    Ort { what: &'static str, reason: String },
    #[error(transparent)]
    OrtMissing(#[from] cifar_onnxrt::OrtLoadError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    File(#[from] FileError),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub onnx: PathBuf,
    pub out: PathBuf,
    pub data_dir: PathBuf,
    pub calibration_images: usize,
    pub method: Method,
    pub weights: WeightGrid,
    /// Largest accepted test-accuracy drop in points; None: write without measuring the drop.
    pub max_drop_points: Option<f64>,
    pub keep_f32: KeepF32,
    pub ort_lib: Option<PathBuf>,
    /// The training run (or `model-zoo/NAME/` folder) the f32 file came from: its reports are
    /// written beside the int8 file, into the folder named after it.
    pub run_dir: Option<PathBuf>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub meta: ModelMetadata,
    pub bytes: usize,
    /// Calibration images used (fewer than asked when the folder has fewer).
    pub calibration_images: usize,
    /// Share of the calibration images on which int8 and f32 agree on the class.
    pub calibration_agreement: f64,
    pub measured: Option<Measured>,
    /// The folder written beside the file for `--run-dir`.
    pub reports: Option<PathBuf>,
    /// Grouped convolutions in the graph: ONNX Runtime runs them slower in int8 than in f32.
    pub grouped_convs: usize,
}

/// Both models on the test set; accuracies are fractions, losses mean cross-entropy.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub f32: f64,
    pub int8: f64,
    pub int8_loss: f64,
    pub test_images: usize,
}

pub fn quantize(opts: &Options) -> Result<Outcome, QuantizeError> {
    if opts.calibration_images == 0 {
        return Err(QuantizeError::NoCalibration);
    }
    let source = model::read(&opts.onnx)?;
    let run = opts.run_dir.as_deref().map(Summary::read).transpose()?;
    if let Some(run) = &run {
        if run.model != source.meta.model {
            return Err(QuantizeError::RunMismatch { run: run.model.clone(), onnx: source.meta.model.clone(), path: opts.onnx.clone() });
        }
    }
    let data = BatchFiles::load(&opts.data_dir)?;
    if data.test.is_none() && run.is_some() {
        return Err(QuantizeError::RunNeedsTestData { dir: opts.data_dir.clone() });
    }
    if data.test.is_none() && opts.max_drop_points.is_some() {
        return Err(QuantizeError::NoTestData { dir: opts.data_dir.clone() });
    }
    let (_, env) = cifar_onnxrt::init(opts.ort_lib.as_deref(), Flavor::Cpu)?;
    let norm = Normalizer::new(source.meta.mean, source.meta.std);
    let chosen = spread(data.train.len(), opts.calibration_images);
    let images = runtime::normalised(&data.train, &chosen, &norm);
    let plan = plan::plan(source.graph(), opts.keep_f32);
    let ranges = calibrate::ranges(&env, &source.proto, &plan.calibrated(), &images, chosen.len(), opts.method)?;
    let graph = qdq::rewrite(source.graph(), &plan, &ranges, opts.weights)?;
    let mut proto = candle_onnx::onnx::ModelProto { graph: Some(graph), ..source.proto.clone() };
    let f32_bytes = source.proto.encode_to_vec();
    let int8_bytes = proto.encode_to_vec();
    let calibration_agreement = agreement(&env, &f32_bytes, &int8_bytes, &data.train, &chosen, &norm)?;
    let measured = match &data.test {
        Some(test) => Some(measure(&env, &f32_bytes, &int8_bytes, test, &norm)?),
        None => None,
    };
    if let (Some(m), Some(limit)) = (measured, opts.max_drop_points) {
        if (m.f32 - m.int8) * 100.0 > limit {
            return Err(QuantizeError::AccuracyDrop { f32: m.f32, int8: m.int8, test_images: m.test_images, limit, out: opts.out.clone() });
        }
    }
    let meta = describe(&source.meta, opts, chosen.len(), measured);
    proto.metadata_props = meta.to_props().into_iter().map(|(key, value)| candle_onnx::onnx::StringStringEntryProto { key, value }).collect();
    let bytes = proto.encode_to_vec();
    files::write(&opts.out, &bytes)?;
    let reports = match (&opts.run_dir, run, measured) {
        (Some(dir), Some(run), Some(m)) => Some(zoo_folder::write(opts, dir, run, &meta, m)?),
        _ => None,
    };
    let grouped_convs = source.graph().node.iter().filter(|n| plan::is_grouped(n)).count();
    Ok(Outcome { meta, bytes: bytes.len(), calibration_images: chosen.len(), calibration_agreement, measured, reports, grouped_convs })
}

/// `want` indices spread evenly over `0..len` (all of them when there are fewer).
fn spread(len: usize, want: usize) -> Vec<usize> {
    let n = want.min(len);
    (0..n).map(|k| k * len / n).collect()
}

/// The int8 file's metadata: the source's, with its own precision and accuracy. The f32
/// validation accuracy is dropped, since no int8 validation was run.
fn describe(source: &ModelMetadata, opts: &Options, calibration_images: usize, measured: Option<Measured>) -> ModelMetadata {
    let mut meta = source.clone();
    meta.precision = Precision::Int8;
    meta.quantization = Some(Quantization {
        method: opts.method.as_str().into(),
        calibration_images: calibration_images as u64,
        weights: opts.weights.granularity.as_str().into(),
        weight_max: opts.weights.range.max(),
        activations: "uint8".into(),
        test_images: measured.map(|m| m.test_images as u64),
    });
    meta.f32_test_acc_frac = measured.map(|m| m.f32).or(source.test_acc_frac);
    meta.test_acc_frac = measured.map(|m| m.int8);
    meta.val_acc_frac = None;
    meta
}

fn measure(env: &cifar_onnxrt::Environment, f32_onnx: &[u8], int8_onnx: &[u8], test: &Records, norm: &Normalizer) -> Result<Measured, QuantizeError> {
    let f32 = runtime::score(&mut runtime::session(env, f32_onnx)?, test, norm)?;
    let int8 = runtime::score(&mut runtime::session(env, int8_onnx)?, test, norm)?;
    Ok(Measured {
        f32: runtime::accuracy(&f32.predicted, test.labels()),
        int8: runtime::accuracy(&int8.predicted, test.labels()),
        int8_loss: int8.mean_loss,
        test_images: test.len(),
    })
}

/// Share of `chosen` images that both models put in the same class (the int8 model's first
/// run, whether or not there is test data).
fn agreement(env: &cifar_onnxrt::Environment, f32_onnx: &[u8], int8_onnx: &[u8], train: &Records, chosen: &[usize], norm: &Normalizer) -> Result<f64, QuantizeError> {
    let subset = subset(train, chosen);
    let a = runtime::score(&mut runtime::session(env, f32_onnx)?, &subset, norm)?.predicted;
    let b = runtime::score(&mut runtime::session(env, int8_onnx)?, &subset, norm)?.predicted;
    Ok(a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64)
}

fn subset(records: &Records, chosen: &[usize]) -> Records {
    let labels = chosen.iter().map(|&i| records.label(i)).collect();
    let pixels = chosen.iter().flat_map(|&i| records.image(i).iter().copied()).collect();
    Records::new(labels, pixels).expect("a subset of valid records is valid")
}

