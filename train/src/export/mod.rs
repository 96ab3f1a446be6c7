//! ONNX export: the same layer graph the candle module runs, in evaluation form (dropout
//! removed, BatchNorm folded into the preceding conv), written with candle-onnx's protobuf
//! types, and checked against ONNX Runtime.

mod fold;
mod graph;
mod parity;

pub use graph::{to_model_proto, INPUT, IR_VERSION, OPSET, OUTPUT};
pub use parity::{check as check_parity, run_ort, Parity, PARITY_TOLERANCE};

use anyhow::Result;
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use prost::Message;

/// Serialised ONNX bytes of `net` in evaluation form.
pub fn to_onnx_bytes(net: &Network, meta: &ModelMetadata) -> Result<Vec<u8>> {
    Ok(to_model_proto(net, meta)?.encode_to_vec())
}

pub use crate::checkpoint::write_atomically;
