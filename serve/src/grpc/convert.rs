//! Between the protocol's messages and the server's values: the input tensor out of a
//! `ModelInferRequest`, the logits into a `ModelInferResponse`, statistics and the index into
//! their messages.

use super::proto::{self, infer_parameter::ParameterChoice, model_infer_response::InferOutputTensor};
use crate::http::errors::ApiError;
use crate::registry::{IndexEntry, MODEL_VERSION};
use crate::stats::{DurationStat, ModelStat};
use crate::tensor;
use crate::OUTPUT_NAME;
use std::collections::HashMap;

/// The one input as floats, and its batch size. FP32 values come either as
/// `contents.fp32_contents` or as little-endian bytes in `raw_input_contents[0]`.
pub fn input(request: &proto::ModelInferRequest) -> Result<(Vec<f32>, usize), ApiError> {
    let first = request.inputs.first();
    let shape = first.map_or(&[][..], |i| &i.shape);
    let n = tensor::check_input(request.inputs.len(), first.map_or("", |i| &i.name), first.map_or("", |i| &i.datatype), shape)?;
    let contents = first.and_then(|i| i.contents.as_ref());
    if contents.is_some_and(holds_other_than_fp32) {
        return Err(ApiError::BadTensor("FP32 values go in contents.fp32_contents (or raw_input_contents); other contents fields are set".into()));
    }
    let values = contents.map_or(&[][..], |c| &c.fp32_contents);
    let data = match request.raw_input_contents.as_slice() {
        [] => {
            tensor::check_count(values.len(), n, shape)?;
            values.to_vec()
        }
        [raw] if values.is_empty() => tensor::f32_from_le(raw, n, shape, "raw_input_contents[0]")?,
        [_] => return Err(ApiError::BadTensor("the input has both contents and raw_input_contents; send one".into())),
        more => return Err(ApiError::BadTensor(format!("raw_input_contents has {} entries for 1 input", more.len()))),
    };
    tensor::check_finite(&data)?;
    Ok((data, n))
}

fn holds_other_than_fp32(c: &proto::InferTensorContents) -> bool {
    !(c.bool_contents.is_empty()
        && c.int_contents.is_empty()
        && c.int64_contents.is_empty()
        && c.uint_contents.is_empty()
        && c.uint64_contents.is_empty()
        && c.fp64_contents.is_empty()
        && c.bytes_contents.is_empty())
}

/// Outputs asked for: only `logits`, without the classification extension.
pub fn check_outputs(request: &proto::ModelInferRequest) -> Result<(), ApiError> {
    for output in &request.outputs {
        let classification = output.parameters.get("classification").map(|p| match p.parameter_choice {
            Some(ParameterChoice::Int64Param(v)) => v,
            Some(ParameterChoice::Uint64Param(v)) => v.min(i64::MAX as u64) as i64,
            _ => 1,
        });
        tensor::check_output(&output.name, classification)?;
    }
    Ok(())
}

/// The logits as `raw_output_contents` (what tritonclient reads fastest).
pub fn response(model_name: &str, id: String, n: usize, classes: usize, logits: &[f32]) -> proto::ModelInferResponse {
    proto::ModelInferResponse {
        model_name: model_name.to_string(),
        model_version: MODEL_VERSION.to_string(),
        id,
        parameters: HashMap::new(),
        outputs: vec![InferOutputTensor {
            name: OUTPUT_NAME.to_string(),
            datatype: tensor::DATATYPE.to_string(),
            shape: tensor::output_shape(n, classes).to_vec(),
            parameters: HashMap::new(),
            contents: None,
        }],
        raw_output_contents: vec![logits.iter().flat_map(|v| v.to_le_bytes()).collect()],
    }
}

fn duration(d: &DurationStat) -> Option<proto::StatisticDuration> {
    Some(proto::StatisticDuration { count: d.count, ns: d.ns })
}

pub fn statistics(s: ModelStat) -> proto::ModelStatistics {
    let i = &s.inference_stats;
    proto::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(proto::InferStatistics {
            success: duration(&i.success),
            fail: duration(&i.fail),
            queue: duration(&i.queue),
            compute_input: duration(&i.compute_input),
            compute_infer: duration(&i.compute_infer),
            compute_output: duration(&i.compute_output),
            cache_hit: duration(&i.cache_hit),
            cache_miss: duration(&i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .iter()
            .map(|b| proto::InferBatchStatistics {
                batch_size: b.batch_size as u64,
                compute_input: duration(&b.compute_input),
                compute_infer: duration(&b.compute_infer),
                compute_output: duration(&b.compute_output),
            })
            .collect(),
    }
}

pub fn index_entry(e: IndexEntry) -> proto::repository_index_response::ModelIndex {
    proto::repository_index_response::ModelIndex { name: e.name, version: e.version, state: e.state.to_string(), reason: e.reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IMAGE_LEN;
    use proto::model_infer_request::InferInputTensor;

    fn request(shape: Vec<i64>, datatype: &str, contents: Option<proto::InferTensorContents>, raw: Vec<Vec<u8>>) -> proto::ModelInferRequest {
        proto::ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![InferInputTensor { name: "input".into(), datatype: datatype.into(), shape, parameters: HashMap::new(), contents }],
            raw_input_contents: raw,
            ..Default::default()
        }
    }

    fn fp32(values: Vec<f32>) -> Option<proto::InferTensorContents> {
        Some(proto::InferTensorContents { fp32_contents: values, ..Default::default() })
    }

    #[test]
    fn contents_and_raw_bytes_give_the_same_floats() {
        let values: Vec<f32> = (0..2 * IMAGE_LEN).map(|i| i as f32 * 0.25 - 7.0).collect();
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (a, n) = input(&request(vec![2, 3, 32, 32], "FP32", fp32(values.clone()), vec![])).unwrap();
        let (b, m) = input(&request(vec![2, 3, 32, 32], "FP32", None, vec![raw])).unwrap();
        assert_eq!((n, m), (2, 2));
        assert_eq!(a, values);
        assert_eq!(b, values);
    }

    #[test]
    fn wrong_inputs_are_invalid_arguments_that_say_why() {
        let one = vec![0f32; IMAGE_LEN];
        let raw = vec![0u8; IMAGE_LEN * 4];
        let cases = [
            (request(vec![1, 3, 32, 31], "FP32", fp32(one.clone()), vec![]), "shape"),
            (request(vec![1, 3, 32, 32], "FP64", fp32(one.clone()), vec![]), "FP64"),
            (request(vec![2, 3, 32, 32], "FP32", fp32(one.clone()), vec![]), "needs 6144"),
            (request(vec![1, 3, 32, 32], "FP32", None, vec![raw[1..].to_vec()]), "needs 12288"),
            (request(vec![1, 3, 32, 32], "FP32", fp32(one.clone()), vec![raw.clone()]), "both"),
            (request(vec![1, 3, 32, 32], "FP32", None, vec![raw.clone(), raw.clone()]), "2 entries"),
            (request(vec![1, 3, 32, 32], "FP32", Some(proto::InferTensorContents { fp64_contents: vec![0.0; IMAGE_LEN], ..Default::default() }), vec![]), "fp32_contents"),
            (request(vec![1, 3, 32, 32], "FP32", fp32(vec![f32::NAN; IMAGE_LEN]), vec![]), "finite"),
        ];
        for (req, needle) in cases {
            let err = input(&req).unwrap_err();
            assert_eq!(super::super::code(err.kind()), tonic::Code::InvalidArgument, "{err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        }
    }
}
