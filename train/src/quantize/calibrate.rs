//! Calibration: the f32 model run in ONNX Runtime on training images with the tensors to be
//! quantized exposed as extra graph outputs, their extremes gathered in one pass and, for the
//! clipping methods, their |x| histograms over those extremes in a second.

use super::ranges::{range, Extremes, Histogram, Method};
use super::runtime::{self, floats};
use super::QuantizeError;
use candle_onnx::onnx::{tensor_proto::DataType, type_proto, ModelProto, TypeProto, ValueInfoProto};
use cifar_models::metadata::INPUT_NAME;
use cifar_onnxrt::Environment;
use prost::Message;
use std::collections::HashMap;

/// Images per calibration call: every exposed tensor of a batch is held at once.
const BATCH: usize = 16;

/// The calibrated range [lo, hi] of every tensor in `tensors`, from `images` (normalised, `n`).
pub fn ranges(
    env: &Environment,
    model: &ModelProto,
    tensors: &[String],
    images: &[f32],
    n: usize,
    method: Method,
) -> Result<HashMap<String, (f32, f32)>, QuantizeError> {
    let mut session = runtime::session(env, &exposing(model, tensors).encode_to_vec())?;
    let mut extremes: HashMap<&str, Extremes> = tensors.iter().map(|t| (t.as_str(), Extremes::default())).collect();
    for_each_batch(&mut session, tensors, images, n, |name, values| extremes.get_mut(name).expect("a calibrated tensor").add(values))?;
    let mut histograms = HashMap::new();
    if method.needs_histogram() {
        histograms = extremes.iter().map(|(&t, e)| (t, Histogram::new(e.abs_max()))).collect();
        for_each_batch(&mut session, tensors, images, n, |name, values| histograms.get_mut(name).expect("a calibrated tensor").add(values))?;
    }
    let mut out = HashMap::new();
    for (t, e) in extremes {
        if !(e.min.is_finite() && e.max.is_finite()) {
            return Err(QuantizeError::Calibration(format!("tensor {t} took non-finite values on the calibration images")));
        }
        out.insert(t.to_string(), range(method, e, histograms.get(t)));
    }
    Ok(out)
}

/// `model` with every tensor of `tensors` (other than the input) as an extra output.
fn exposing(model: &ModelProto, tensors: &[String]) -> ModelProto {
    let mut model = model.clone();
    let graph = model.graph.as_mut().expect("a checked model has a graph");
    let float = TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: DataType::Float as i32, shape: None })),
        ..Default::default()
    };
    let exposed: Vec<ValueInfoProto> = tensors
        .iter()
        .filter(|t| t.as_str() != INPUT_NAME && !graph.output.iter().any(|o| &o.name == *t))
        .map(|t| ValueInfoProto { name: t.clone(), r#type: Some(float.clone()), ..Default::default() })
        .collect();
    graph.output.extend(exposed);
    model
}

/// Runs the calibration images in batches and hands every tensor's values to `visit`.
fn for_each_batch(
    session: &mut cifar_onnxrt::ort::session::Session,
    tensors: &[String],
    images: &[f32],
    n: usize,
    mut visit: impl FnMut(&str, &[f32]),
) -> Result<(), QuantizeError> {
    let per_image = images.len() / n.max(1);
    for (k, chunk) in images.chunks(BATCH * per_image).enumerate() {
        let count = chunk.len() / per_image;
        runtime::run(session, chunk, count, |outputs| {
            for t in tensors {
                let values = if t == INPUT_NAME { chunk } else { floats(outputs, t)? };
                visit(t, values);
            }
            Ok(())
        })
        .map_err(|e| QuantizeError::Calibration(format!("calibration batch {k}: {e}")))?;
    }
    Ok(())
}
