//! The V2 tensor interface every model has (FP32 `input` [N,3,32,32] → FP32 `logits`
//! [N,classes]), checked the same way for REST and gRPC requests: one place for what is
//! accepted and for the words that say what was expected.

use crate::http::errors::ApiError;
use crate::{IMAGE_LEN, INPUT_NAME, OUTPUT_NAME};

/// The datatype of the input and the output.
pub const DATATYPE: &str = "FP32";

/// Checks the one input's name, datatype and shape; returns its batch size N.
pub fn check_input(inputs: usize, name: &str, datatype: &str, shape: &[i64]) -> Result<usize, ApiError> {
    if inputs != 1 {
        return Err(ApiError::BadTensor(format!("expected exactly one input `{INPUT_NAME}`, got {inputs}")));
    }
    if name != INPUT_NAME {
        return Err(ApiError::BadTensor(format!("unknown input `{name}`: the model's input is `{INPUT_NAME}`")));
    }
    if datatype != DATATYPE {
        return Err(ApiError::BadTensor(format!("input datatype {datatype}, expected {DATATYPE}")));
    }
    let n = match shape {
        [n, 3, 32, 32] if *n >= 1 => *n as usize,
        other => return Err(ApiError::BadTensor(format!("input shape {other:?}, expected [N, 3, 32, 32] with N ≥ 1"))),
    };
    n.checked_mul(IMAGE_LEN).ok_or_else(|| ApiError::BadTensor(format!("batch of {n} images is too large")))?;
    Ok(n)
}

/// Values in the input of `n` images.
pub fn elements(n: usize) -> usize {
    n * IMAGE_LEN
}

/// Little-endian FP32 bytes of the input (`binary_data_size` over REST, `raw_input_contents`
/// over gRPC), checked against the shape; `source` names where they came from.
pub fn f32_from_le(bytes: &[u8], n: usize, shape: &[i64], source: &str) -> Result<Vec<f32>, ApiError> {
    let expected = elements(n) as u64 * 4;
    if bytes.len() as u64 != expected {
        return Err(ApiError::BadTensor(format!("{source} holds {} bytes; shape {shape:?} of FP32 needs {expected}", bytes.len())));
    }
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Values given one by one, counted against the shape.
pub fn check_count(values: usize, n: usize, shape: &[i64]) -> Result<(), ApiError> {
    if values != elements(n) {
        return Err(ApiError::BadTensor(format!("input holds {values} values; shape {shape:?} needs {}", elements(n))));
    }
    Ok(())
}

/// NaN and infinities are refused: they would poison a whole batch's arithmetic.
pub fn check_finite(data: &[f32]) -> Result<(), ApiError> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(bad) => Err(ApiError::BadTensor(format!("input value {bad} is not a finite number"))),
        None => Ok(()),
    }
}

/// A requested output: only `logits`, and without Triton's classification extension
/// (`classification` > 0), which `/v1/models/{name}/classify` serves instead.
pub fn check_output(name: &str, classification: Option<i64>) -> Result<(), ApiError> {
    if name != OUTPUT_NAME {
        return Err(ApiError::BadTensor(format!("unknown output `{name}`: the model's output is `{OUTPUT_NAME}`")));
    }
    if classification.is_some_and(|c| c != 0) {
        return Err(ApiError::BadRequest("the classification extension is not supported: use POST /v1/models/{name}/classify".into()));
    }
    Ok(())
}

/// The output's shape for `n` images.
pub fn output_shape(n: usize, classes: usize) -> [i64; 2] {
    [n as i64, classes as i64]
}
