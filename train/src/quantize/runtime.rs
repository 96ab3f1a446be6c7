//! ONNX Runtime for calibration and measurement: sessions on the CPU execution provider with
//! the server's optimisation level, batches of normalised images, logits, argmax and loss.

use super::QuantizeError;
use crate::data::{Normalizer, Records, IMAGE_BYTES};
use cifar_models::metadata::{INPUT_NAME, OUTPUT_NAME};
use cifar_onnxrt::ort::session::builder::GraphOptimizationLevel;
use cifar_onnxrt::ort::session::{Session, SessionOutputs};
use cifar_onnxrt::ort::value::TensorRef;
use cifar_onnxrt::Environment;

/// Images per ONNX Runtime call.
pub const BATCH: usize = 64;

fn ort<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> QuantizeError {
    move |e| QuantizeError::Ort { what, reason: e.to_string() }
}

pub fn session(env: &Environment, onnx: &[u8]) -> Result<Session, QuantizeError> {
    Session::builder(env)
        .map_err(ort("cannot start a session"))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort("cannot set the optimisation level"))?
        .commit_from_memory(onnx)
        .map_err(ort("refused the model"))
}

/// Runs one batch of `n` normalised images and hands the outputs to `read`.
pub fn run<T>(session: &mut Session, input: &[f32], n: usize, read: impl FnOnce(&SessionOutputs) -> Result<T, QuantizeError>) -> Result<T, QuantizeError> {
    let tensor = TensorRef::from_array_view(([n, 3, 32, 32], input)).map_err(ort("refused the input tensor"))?;
    let outputs = session.run(cifar_onnxrt::ort::inputs![INPUT_NAME => tensor]).map_err(ort("inference failed"))?;
    read(&outputs)
}

/// A named float output of a run.
pub fn floats<'a>(outputs: &'a SessionOutputs, name: &str) -> Result<&'a [f32], QuantizeError> {
    let value = outputs.get(name).ok_or_else(|| QuantizeError::Ort { what: "returned no output", reason: name.to_string() })?;
    Ok(value.try_extract_tensor::<f32>().map_err(ort("returned a non-float output"))?.1)
}

/// The images `indices` of `records`, normalised, one after another.
pub fn normalised(records: &Records, indices: &[usize], norm: &Normalizer) -> Vec<f32> {
    let mut out = vec![0f32; indices.len() * IMAGE_BYTES];
    for (&i, dst) in indices.iter().zip(out.chunks_exact_mut(IMAGE_BYTES)) {
        norm.normalize(records.image(i), dst);
    }
    out
}

/// What a model made of a set of labelled images.
pub struct Scored {
    /// The predicted class of each image.
    pub predicted: Vec<usize>,
    /// Mean cross-entropy of the logits against the labels (natural log).
    pub mean_loss: f64,
}

/// The predicted class and the loss of every image of `records`.
pub fn score(session: &mut Session, records: &Records, norm: &Normalizer) -> Result<Scored, QuantizeError> {
    let all: Vec<usize> = (0..records.len()).collect();
    let mut predicted = Vec::with_capacity(records.len());
    let mut loss_sum = 0f64;
    for chunk in all.chunks(BATCH) {
        let input = normalised(records, chunk, norm);
        let logits = run(session, &input, chunk.len(), |o| Ok(floats(o, OUTPUT_NAME)?.to_vec()))?;
        let classes = logits.len() / chunk.len();
        for (&i, row) in chunk.iter().zip(logits.chunks_exact(classes)) {
            predicted.push(argmax(row));
            loss_sum += cross_entropy(row, records.label(i) as usize);
        }
    }
    Ok(Scored { predicted, mean_loss: loss_sum / records.len().max(1) as f64 })
}

/// −log softmax(logits)[label], computed in f64 from the largest logit for stability.
fn cross_entropy(logits: &[f32], label: usize) -> f64 {
    let top = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let log_sum = logits.iter().map(|&v| (v as f64 - top).exp()).sum::<f64>().ln() + top;
    log_sum - logits[label] as f64
}

pub fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Share of `predicted` equal to `labels`.
pub fn accuracy(predicted: &[usize], labels: &[u8]) -> f64 {
    let right = predicted.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
    right as f64 / labels.len().max(1) as f64
}
