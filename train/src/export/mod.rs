//! ONNX export: the same layer graph the candle module runs, in evaluation form (dropout
//! removed, BatchNorm folded into the preceding conv), written with candle-onnx's protobuf
//! types, and checked against ONNX Runtime.

mod fold;
mod graph;
mod parity;

pub use graph::{to_model_proto, INPUT, IR_VERSION, OPSET, OUTPUT};
pub use parity::{check as check_parity, parity_batch, run_ort, Parity, PARITY_TOLERANCE};

use anyhow::{Context, Result};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use prost::Message;
use std::path::Path;

/// Serialised ONNX bytes of `net` in evaluation form.
pub fn to_onnx_bytes(net: &Network, meta: &ModelMetadata) -> Result<Vec<u8>> {
    Ok(to_model_proto(net, meta)?.encode_to_vec())
}

/// Writes `bytes` to `path` through a temporary file in the same folder, so that readers
/// never see a half-written model.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("writing in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
