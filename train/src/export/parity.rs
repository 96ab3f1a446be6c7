//! Numeric parity between the candle evaluation forward and ONNX Runtime (CPU EP).

use super::graph::{INPUT, OUTPUT};
use super::ExportError;
use candle_core::{DType, Device, Tensor};
use crate::recipe::Tta;
use cifar_models::nn::Network;
use cifar_onnxrt::ort::session::Session;
use cifar_onnxrt::ort::value::TensorRef;
use cifar_models::testdata::images as parity_input;
use cifar_onnxrt::Environment;

/// Largest |logit difference| accepted between candle and ONNX Runtime.
pub const PARITY_TOLERANCE: f32 = 1e-4;

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Parity {
    pub batch: usize,
    pub max_abs_diff: f32,
}

impl Parity {
    pub fn ok(&self) -> bool {
        self.max_abs_diff <= PARITY_TOLERANCE
    }
}

/// Runs `onnx` through ONNX Runtime and `net` (eval mode, the views of `tta` averaged) on the
/// same batch of `n` images.
pub fn check(env: &Environment, net: &Network, tta: Tta, onnx: &[u8], n: usize) -> Result<Parity, ExportError> {
    let input = parity_input(n, 17);
    let ours = candle_logits(net, tta, &input, n).map_err(ExportError::Forward)?;
    let theirs = run_ort(env, onnx, &input, n)?;
    if ours.len() != theirs.len() {
        return Err(ExportError::LogitCount { ours: ours.len(), theirs: theirs.len() });
    }
    let max_abs_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    Ok(Parity { batch: n, max_abs_diff })
}

fn candle_logits(net: &Network, tta: Tta, input: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
    let x = Tensor::from_slice(input, (n, 3, 32, 32), &Device::Cpu)?.to_dtype(net.dtype())?.to_device(net.device())?;
    crate::tta::logits(net, &x, tta)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
}

/// Logits from ONNX Runtime on the CPU execution provider, for a batch of `n` images.
pub fn run_ort(env: &Environment, onnx: &[u8], input: &[f32], n: usize) -> Result<Vec<f32>, ExportError> {
    let mut session = Session::builder(env)
        .map_err(ort("cannot start a session"))?
        .commit_from_memory(onnx)
        .map_err(ort("refused the exported model"))?;
    let tensor = TensorRef::from_array_view(([n, 3, 32, 32], input)).map_err(ort("refused the input tensor"))?;
    let outputs = session.run(cifar_onnxrt::ort::inputs![INPUT => tensor]).map_err(ort("inference failed"))?;
    let (_, logits) = outputs[OUTPUT].try_extract_tensor::<f32>().map_err(ort("returned no float logits"))?;
    Ok(logits.to_vec())
}

/// An ONNX Runtime failure: what it was doing, and its message.
fn ort<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> ExportError {
    move |e| ExportError::Ort { what, reason: e.to_string() }
}
