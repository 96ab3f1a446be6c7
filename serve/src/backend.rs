//! What the batcher needs from an inference engine: run a batch of preprocessed images.
//!
//! The trait keeps the batcher and the HTTP layer free of ONNX Runtime types, and lets tests
//! and the benchmarks drive the engine directly.

use crate::device::Device;

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("input holds {got} floats, expected {expected} for {n} images")]
    InputLength { got: usize, expected: usize, n: usize },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("the model returned {got} logits for {n} images, expected {expected}")]
    OutputLength { got: usize, expected: usize, n: usize },
}

pub trait Backend: Send {
    /// Runs `n` images (`n`·3·32·32 floats, NCHW, already normalised) in one call and returns
    /// `n`·[`Backend::classes`] logits, row-major.
    fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, BackendError>;

    /// Logits per image.
    fn classes(&self) -> usize;

    /// Where the model actually runs (after any CPU fallback).
    fn device(&self) -> Device;

    /// Intra-op threads of the session, for reports.
    fn threads(&self) -> usize;
}
