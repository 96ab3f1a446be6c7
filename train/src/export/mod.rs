//! ONNX export: the same layer graph the candle module runs, in evaluation form (dropout
//! removed, BatchNorm folded into the preceding conv), written with candle-onnx's protobuf
//! types, and checked against ONNX Runtime. [`export_checked`] is the one way a file is
//! written, by `train export` and at the end of a training run alike.

mod checked;
mod fold;
mod graph;
mod parity;

pub use checked::{export_checked, Exported, ParityCheck, PARITY_BATCH};
pub use graph::{to_model_proto, INPUT, IR_VERSION, OPSET, OUTPUT};
pub(crate) use graph::{attr_int, initializer, node};
pub use parity::{check as check_parity, run_ort, Parity, PARITY_TOLERANCE};

use crate::files::{BoxError, FileError};
use crate::recipe::Tta;
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use prost::Message;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot express `{model}` as an ONNX graph")]
    Graph { model: String, source: BoxError },
    /// The library is missing: its message says how to get one.
    #[error(transparent)]
    OrtMissing(#[from] cifar_onnxrt::OrtLoadError),
    #[error("ONNX Runtime {what}: {reason}")]
    Ort { what: &'static str, reason: String },
    #[error("the candle forward pass of the parity check failed")]
    Forward(#[source] candle_core::Error),
    #[error("ONNX Runtime returned {theirs} logits, candle {ours}")]
    LogitCount { ours: usize, theirs: usize },
    #[error(
        "parity check failed: max |logit difference| between candle and ONNX Runtime is {max_abs_diff:.3e} \
         (> {PARITY_TOLERANCE:e}) on a batch of {batch}; {} not written",
        dest.display()
    )]
    ParityFailed { max_abs_diff: f32, batch: usize, dest: PathBuf },
    #[error(transparent)]
    File(#[from] FileError),
}

/// Serialised ONNX bytes of `net` in evaluation form, averaging the views of `tta`.
pub fn to_onnx_bytes(net: &Network, meta: &ModelMetadata, tta: Tta) -> Result<Vec<u8>, ExportError> {
    let proto = to_model_proto(net, meta, tta).map_err(|e| ExportError::Graph { model: meta.model.clone(), source: e.into() })?;
    Ok(proto.encode_to_vec())
}

/// `meta` for a graph with `tta` built in: it names the augmentation and counts the MACs of
/// every view's forward pass.
pub fn describe_tta(meta: &mut ModelMetadata, tta: Tta) {
    if tta != Tta::None && meta.tta.is_none() {
        meta.tta = Some(tta.to_string());
        meta.facts.macs_per_image *= tta.views() as u64;
    }
}
