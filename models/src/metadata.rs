//! The ONNX contract between `train` and `serve`: the interface (tensor names, image shape) and
//! what an exported file says about itself (`metadata_props`). Every metadata value is a
//! string; lists and records are JSON.

use crate::spec::Graph;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the model's one input: NCHW float images, normalised per channel.
pub const INPUT_NAME: &str = "input";
/// Name of the model's one output: `[N, classes]` logits.
pub const OUTPUT_NAME: &str = "logits";
/// One input image, channels first.
pub const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
/// Floats in one input image.
pub const IMAGE_LEN: usize = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2];

/// The size and cost of an architecture, derived from its graph: the one struct that the
/// metadata, `--list-models`, `summary.json`, `GET /v1/models` and `report.json` embed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// Trainable parameters.
    pub params: u64,
    /// conv+fc multiply-accumulates for one image.
    pub macs_per_image: u64,
    /// The seed's convention: torchinfo 1.5.2 mult-adds for a batch of 128, in 1e9.
    pub seed_gmacs_batch128: f64,
}

impl ModelFacts {
    pub fn of(graph: &Graph) -> Self {
        crate::count(graph).facts()
    }

    /// The facts of a registered model.
    pub fn for_model(name: &str) -> Result<Self, crate::ZooError> {
        Ok(Self::of(&crate::build(name)?))
    }
}

/// Keys are prefixed so they cannot clash with other tools' properties.
const PREFIX: &str = "cifar.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Registry name, e.g. `resnet-light`.
    pub model: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Per-channel normalisation applied to [0,1] RGB before the network.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(flatten)]
    pub facts: ModelFacts,
    /// Fractions in [0, 1], when the weights were trained and evaluated.
    #[serde(rename = "val_acc")]
    pub val_acc_frac: Option<f64>,
    #[serde(rename = "test_acc")]
    pub test_acc_frac: Option<f64>,
    pub epochs: Option<u64>,
    /// The training recipe as JSON, when trained.
    pub recipe: Option<serde_json::Value>,
    /// `git` commit of the source that produced the file, when known.
    pub source_commit: Option<String>,
    /// Test-time augmentation built into the graph (`flip`, `flip-translate`): the logits are
    /// the mean over that many views, and `macs_per_image` counts every view's forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tta: Option<String>,
    /// Numeric precision of the graph; files without `cifar.precision` are f32.
    #[serde(default)]
    pub precision: Precision,
    /// How an int8 file was quantized (`train quantize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// The f32 source's test accuracy (fraction), beside an int8 file's own `test_acc`.
    #[serde(default, rename = "f32_test_acc", skip_serializing_if = "Option::is_none")]
    pub f32_test_acc_frac: Option<f64>,
}

/// The arithmetic a graph runs in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// QuantizeLinear/DequantizeLinear around int8 convolutions (QDQ format).
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `cifar.quantization`: what `train quantize` did, as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// Activation range calibration: `minmax`, `percentile` or `entropy`.
    pub method: String,
    /// Training images the ranges were calibrated on.
    pub calibration_images: u64,
    /// `per-channel` (symmetric int8 per output channel) or `per-tensor`.
    pub weights: String,
    /// Largest weight magnitude on the int8 grid: 63 (7 bits, safe on every CPU) or 127.
    /// Files from before the key was written used 127.
    #[serde(default = "full_weight_range")]
    pub weight_max: u8,
    /// Activation type: `uint8` (asymmetric, per tensor).
    pub activations: String,
    /// Test images both models were measured on; null when the accuracy was not measured.
    pub test_images: Option<u64>,
}

fn full_weight_range() -> u8 {
    127
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("ONNX metadata lacks `{PREFIX}{0}`: the file was not exported by `train export`")]
    Missing(&'static str),
    #[error("ONNX metadata `{PREFIX}{key}` is not valid: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl ModelMetadata {
    /// Fresh (untrained) metadata for a registered model.
    pub fn for_model(name: &str) -> Result<Self, crate::ZooError> {
        Ok(Self {
            model: name.to_string(),
            classes: crate::seed::CLASSES.iter().map(|s| s.to_string()).collect(),
            mean: crate::seed::MEAN,
            std: crate::seed::STD,
            facts: ModelFacts::for_model(name)?,
            val_acc_frac: None,
            test_acc_frac: None,
            epochs: None,
            recipe: None,
            source_commit: None,
            tta: None,
            precision: Precision::F32,
            quantization: None,
            f32_test_acc_frac: None,
        })
    }

    /// Key/value pairs for `ModelProto.metadata_props`.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let mut props = vec![
            ("model", self.model.clone()),
            ("classes", to_json(&self.classes)),
            ("mean", to_json(&self.mean)),
            ("std", to_json(&self.std)),
            ("params", self.facts.params.to_string()),
            ("macs_per_image", self.facts.macs_per_image.to_string()),
            ("seed_gmacs_batch128", self.facts.seed_gmacs_batch128.to_string()),
        ];
        let optional = [
            ("val_acc", self.val_acc_frac.map(|v| v.to_string())),
            ("test_acc", self.test_acc_frac.map(|v| v.to_string())),
            ("epochs", self.epochs.map(|v| v.to_string())),
            ("recipe", self.recipe.as_ref().map(|v| v.to_string())),
            ("source_commit", self.source_commit.clone()),
            ("tta", self.tta.clone()),
            // Absent means f32, so f32 files stay as they were before int8 existed.
            ("precision", (self.precision != Precision::F32).then(|| self.precision.to_string())),
            ("quantization", self.quantization.as_ref().map(to_json)),
            ("f32_test_acc", self.f32_test_acc_frac.map(|v| v.to_string())),
        ];
        props.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        props.into_iter().map(|(k, v)| (format!("{PREFIX}{k}"), v)).collect()
    }

    /// Reads the pairs written by [`Self::to_props`]; unknown keys are ignored.
    pub fn from_props<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, MetadataError> {
        let map: BTreeMap<&str, &str> =
            props.into_iter().filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k, v))).collect();
        let get = |key: &'static str| map.get(key).copied().ok_or(MetadataError::Missing(key));
        fn parse<T: for<'de> Deserialize<'de>>(key: &'static str, v: &str) -> Result<T, MetadataError> {
            serde_json::from_str(v).map_err(|e| MetadataError::Invalid { key, reason: e.to_string() })
        }
        let opt = |key: &'static str| map.get(key).copied();
        let meta = Self {
            model: get("model")?.to_string(),
            classes: parse("classes", get("classes")?)?,
            mean: parse("mean", get("mean")?)?,
            std: parse("std", get("std")?)?,
            facts: ModelFacts {
                params: parse("params", get("params")?)?,
                macs_per_image: parse("macs_per_image", get("macs_per_image")?)?,
                seed_gmacs_batch128: parse("seed_gmacs_batch128", get("seed_gmacs_batch128")?)?,
            },
            val_acc_frac: opt("val_acc").map(|v| parse("val_acc", v)).transpose()?,
            test_acc_frac: opt("test_acc").map(|v| parse("test_acc", v)).transpose()?,
            epochs: opt("epochs").map(|v| parse("epochs", v)).transpose()?,
            recipe: opt("recipe").map(|v| parse("recipe", v)).transpose()?,
            source_commit: opt("source_commit").map(str::to_string),
            tta: opt("tta").map(str::to_string),
            precision: opt("precision").map(parse_precision).transpose()?.unwrap_or_default(),
            quantization: opt("quantization").map(|v| parse("quantization", v)).transpose()?,
            f32_test_acc_frac: opt("f32_test_acc").map(|v| parse("f32_test_acc", v)).transpose()?,
        };
        if meta.classes.is_empty() {
            return Err(MetadataError::Invalid { key: "classes", reason: "no class names".into() });
        }
        if meta.std.iter().any(|s| !(*s > 0.0)) {
            return Err(MetadataError::Invalid { key: "std", reason: "must be positive".into() });
        }
        Ok(meta)
    }
}

/// The key holds a bare word (`int8`), not a JSON string.
fn parse_precision(v: &str) -> Result<Precision, MetadataError> {
    match v {
        "f32" => Ok(Precision::F32),
        "int8" => Ok(Precision::Int8),
        other => Err(MetadataError::Invalid { key: "precision", reason: format!("`{other}`, expected f32 or int8") }),
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("lists of plain values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_and_without_training_figures() {
        let mut m = ModelMetadata::for_model("resnet-light").unwrap();
        let props = m.to_props();
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
        m.val_acc_frac = Some(0.9);
        m.test_acc_frac = Some(0.885);
        m.epochs = Some(30);
        m.recipe = Some(serde_json::json!({"lr": 0.003}));
        m.source_commit = Some("abc123".into());
        let props = m.to_props();
        assert!(props.iter().all(|(k, _)| k != "cifar.precision"), "f32 files carry no precision key");
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
        m.precision = Precision::Int8;
        m.f32_test_acc_frac = Some(0.886);
        m.quantization = Some(Quantization {
            method: "entropy".into(),
            calibration_images: 1000,
            weights: "per-channel".into(),
            weight_max: 63,
            activations: "uint8".into(),
            test_images: None,
        });
        let props = m.to_props();
        assert!(props.contains(&("cifar.precision".into(), "int8".into())));
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn missing_and_invalid_keys_are_named() {
        let m = ModelMetadata::for_model("vgg").unwrap();
        let props: Vec<_> = m.to_props().into_iter().filter(|(k, _)| k != "cifar.mean").collect();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(err.to_string().contains("cifar.mean"), "{err}");
        let mut props = m.to_props();
        props.iter_mut().find(|(k, _)| k == "cifar.std").unwrap().1 = "[0,1,1]".into();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(err.to_string().contains("positive"), "{err}");
    }
}
