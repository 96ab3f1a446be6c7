//! Numeric parity between the candle evaluation forward and ONNX Runtime (CPU EP).

use super::graph::{INPUT, OUTPUT};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::ModuleT;
use cifar_models::nn::Network;
use cifar_onnxrt::ort::session::Session;
use cifar_onnxrt::ort::value::TensorRef;
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

use cifar_onnxrt::parity_input;

/// Runs `onnx` through ONNX Runtime and `net` (eval mode) on the same batch of `n` images.
pub fn check(env: &Environment, net: &Network, onnx: &[u8], n: usize) -> Result<Parity> {
    let input = parity_input(n, 17);
    let x = Tensor::from_vec(input.clone(), (n, 3, 32, 32), &Device::Cpu)?.to_dtype(net.dtype())?.to_device(net.device())?;
    let ours = net.forward_t(&x, false)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
    let theirs = run_ort(env, onnx, &input, n)?;
    anyhow::ensure!(ours.len() == theirs.len(), "ONNX Runtime returned {} logits, candle {}", theirs.len(), ours.len());
    let max_abs_diff = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    Ok(Parity { batch: n, max_abs_diff })
}

/// Logits from ONNX Runtime on the CPU execution provider, for a batch of `n` images.
pub fn run_ort(env: &Environment, onnx: &[u8], input: &[f32], n: usize) -> Result<Vec<f32>> {
    let mut session = Session::builder(env)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commit_from_memory(onnx)
        .context("ONNX Runtime refused the exported model")?;
    let tensor = TensorRef::from_array_view(([n, 3, 32, 32], input)).context("input tensor")?;
    let outputs = session.run(cifar_onnxrt::ort::inputs![INPUT => tensor]).context("ONNX Runtime inference")?;
    let (_, logits) = outputs[OUTPUT].try_extract_tensor::<f32>().context("reading logits")?;
    Ok(logits.to_vec())
}
