//! The f32 file to quantize: its graph and the metadata `train export` wrote into it, and the
//! few tensor encodings the rewrite reads and writes.

use super::QuantizeError;
use crate::files;
use candle_onnx::onnx::{tensor_proto::DataType, GraphProto, ModelProto, TensorProto};
use cifar_models::metadata::{ModelMetadata, Precision, INPUT_NAME, OUTPUT_NAME};
use prost::Message;
use std::path::Path;

pub struct SourceModel {
    pub proto: ModelProto,
    pub meta: ModelMetadata,
}

impl SourceModel {
    pub fn graph(&self) -> &GraphProto {
        // `read` only returns models that have a graph.
        self.proto.graph.as_ref().expect("checked by read")
    }
}

/// Reads an ONNX file this project exported, refusing anything else before any work is done.
pub fn read(path: &Path) -> Result<SourceModel, QuantizeError> {
    let bytes = files::read(path)?;
    let not_onnx = |reason: String| QuantizeError::NotOnnx { path: path.to_path_buf(), reason };
    let proto = ModelProto::decode(bytes.as_slice()).map_err(|e| not_onnx(e.to_string()))?;
    // Protobuf decodes many byte strings without complaint; a model without nodes is not one.
    let Some(graph) = proto.graph.as_ref().filter(|g| !g.node.is_empty()) else {
        return Err(not_onnx("no graph nodes".into()));
    };
    let props = proto.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str()));
    let meta = ModelMetadata::from_props(props).map_err(|source| QuantizeError::Metadata { path: path.to_path_buf(), source })?;
    if meta.precision != Precision::F32 {
        return Err(QuantizeError::AlreadyQuantized { path: path.to_path_buf(), precision: meta.precision });
    }
    let has_input = graph.input.iter().any(|i| i.name == INPUT_NAME);
    let has_output = graph.output.iter().any(|o| o.name == OUTPUT_NAME);
    if !has_input || !has_output {
        return Err(not_onnx(format!("the graph does not read `{INPUT_NAME}` and write `{OUTPUT_NAME}`")));
    }
    Ok(SourceModel { proto, meta })
}

/// The values of a float initializer (raw little-endian bytes, as the exporter writes, or
/// `float_data`).
pub fn floats(t: &TensorProto) -> Result<Vec<f32>, QuantizeError> {
    if t.data_type != DataType::Float as i32 {
        return Err(QuantizeError::Unsupported(format!("initializer {} is not float32", t.name)));
    }
    if !t.raw_data.is_empty() {
        return Ok(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
    }
    Ok(t.float_data.clone())
}

fn tensor(name: &str, dims: &[usize], data_type: DataType, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

pub fn int8_tensor(name: &str, dims: &[usize], values: &[i8]) -> TensorProto {
    tensor(name, dims, DataType::Int8, values.iter().map(|&v| v as u8).collect())
}

pub fn uint8_tensor(name: &str, dims: &[usize], values: &[u8]) -> TensorProto {
    tensor(name, dims, DataType::Uint8, values.to_vec())
}

pub fn int32_tensor(name: &str, dims: &[usize], values: &[i32]) -> TensorProto {
    tensor(name, dims, DataType::Int32, values.iter().flat_map(|v| v.to_le_bytes()).collect())
}
