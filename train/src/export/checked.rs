//! Export with the parity check, written only when it passes: shared by `train export` and
//! the end of a training run, so both check the same batch against the same tolerance.

use super::{check_parity, to_onnx_bytes, ExportError, Parity};
use crate::files;
use crate::recipe::Tta;
use candle_core::{DType, Device};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_onnxrt::{Environment, Flavor};
use std::path::Path;

/// Images in the parity batch.
pub const PARITY_BATCH: usize = 8;

/// How an export is checked against ONNX Runtime (CPU EP).
#[derive(Clone, Copy, Debug)]
pub enum ParityCheck<'a> {
    /// Check; fail when ONNX Runtime cannot be loaded (`train export`).
    Required { ort_lib: Option<&'a Path> },
    /// Check when ONNX Runtime loads, else warn and write unchecked: the end of a training
    /// run, whose hours of work a missing library should not throw away.
    WhenAvailable { ort_lib: Option<&'a Path> },
    /// Write without checking (`train export --skip-parity`).
    Skip,
}

/// What was written.
pub struct Exported {
    pub bytes: Vec<u8>,
    /// None when the check was skipped.
    pub parity: Option<Parity>,
}

/// Exports `net` with `meta` to `dest` (atomically), averaging the views of `tta` inside the
/// graph, after the parity check `check` asks for; a failed check writes nothing.
pub fn export_checked(net: &Network, meta: &ModelMetadata, tta: Tta, check: ParityCheck, dest: &Path) -> Result<Exported, ExportError> {
    let cpu_copy;
    let net = if net.device().is_cpu() && net.compute_dtype() == net.dtype() {
        net
    } else {
        // The exporter and the parity check read f32 weights on the CPU.
        cpu_copy = on_cpu(net).map_err(ExportError::Forward)?;
        &cpu_copy
    };
    let mut meta = meta.clone();
    super::describe_tta(&mut meta, tta);
    let bytes = to_onnx_bytes(net, &meta, tta)?;
    let parity = match ort_environment(check, dest)? {
        Some(env) => Some(check_parity(&env, net, tta, &bytes, PARITY_BATCH)?),
        None => None,
    };
    if let Some(p) = parity.filter(|p| !p.ok()) {
        return Err(ExportError::ParityFailed { max_abs_diff: p.max_abs_diff, batch: p.batch, dest: dest.to_path_buf() });
    }
    files::write(dest, &bytes)?;
    Ok(Exported { bytes, parity })
}

fn on_cpu(net: &Network) -> candle_core::Result<Network> {
    let cpu = Network::new(net.graph().clone(), 0, DType::F32, &Device::Cpu)?;
    cpu.load(&net.named_tensors().into_iter().collect())?;
    Ok(cpu)
}

fn ort_environment(check: ParityCheck, dest: &Path) -> Result<Option<Environment>, ExportError> {
    match check {
        ParityCheck::Skip => Ok(None),
        ParityCheck::Required { ort_lib } => Ok(Some(cifar_onnxrt::init(ort_lib, Flavor::Cpu)?.1)),
        ParityCheck::WhenAvailable { ort_lib } => match cifar_onnxrt::init(ort_lib, Flavor::Cpu) {
            Ok((_, env)) => Ok(Some(env)),
            Err(e) => {
                tracing::warn!("{} written without a parity check: {e}", dest.display());
                Ok(None)
            }
        },
    }
}
