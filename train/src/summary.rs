//! `summary.json`: what a finished run measured. Written by [`crate::run_folder`] and read back
//! (for the metadata of `train export --checkpoint`) through the same struct.

use crate::checkpoint::EvaluatedWeights;
use crate::files::{self, FileError};
use crate::recipe::Recipe;
use cifar_models::metadata::{ModelFacts, ModelMetadata, Quantization};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const SUMMARY: &str = "summary.json";

/// A finished run. Accuracies are fractions in [0, 1]. Fields added after the first shipped
/// runs have serde defaults, so their summaries (`model-zoo/*/summary.json`) still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    #[serde(flatten)]
    pub facts: ModelFacts,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    #[serde(rename = "best_val_acc")]
    pub best_val_acc_frac: Option<f64>,
    #[serde(rename = "final_val_acc")]
    pub final_val_acc_frac: Option<f64>,
    #[serde(rename = "test_acc")]
    pub test_acc_frac: f64,
    pub test_loss: f64,
    pub test_images: usize,
    /// Training seconds summed over every epoch, across resumes.
    pub train_seconds: f64,
    /// Wall-clock seconds of this invocation only: a resumed run counts from its resume.
    pub wall_seconds: f64,
    pub mean_train_img_s: f64,
    pub device: String,
    /// Compute precision; runs from before bf16 existed were f32.
    #[serde(default = "f32_name")]
    pub precision: String,
    /// Whether the training set lived on the device; false before that existed.
    #[serde(default)]
    pub data_on_device: bool,
    pub threads: usize,
    /// Which weights were tested and exported: the raw ones or their EMA (the better on
    /// validation); raw before EMA existed.
    #[serde(default)]
    pub evaluated_weights: EvaluatedWeights,
    pub seed: u64,
    pub git_commit: String,
    pub onnx: Option<String>,
    pub onnx_parity_max_abs_diff: Option<f32>,
    pub recipe: Recipe,
    /// Set in the summary of an int8 file (`train quantize --run-dir`): the test figures above
    /// are then the int8 model's own; absent for the trained f32 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantized: Option<Quantized>,
}

/// How an int8 file was made from a run's f32 export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantized {
    /// The f32 file it was quantized from (the run's `onnx`).
    pub from: String,
    #[serde(flatten)]
    pub quantization: Quantization,
    /// The f32 model's test accuracy, measured beside the int8 one.
    #[serde(rename = "f32_test_acc")]
    pub f32_test_acc_frac: f64,
}

fn f32_name() -> String {
    "f32".into()
}

impl Summary {
    pub fn read(dir: &Path) -> Result<Self, FileError> {
        files::read_json(&dir.join(SUMMARY), "run summary")
    }

    pub fn write(&self, dir: &Path) -> Result<(), FileError> {
        files::write_json(&dir.join(SUMMARY), self)
    }

    /// The name the summarised file ships under in `model-zoo/`: the model, `-int8` for a
    /// quantized file.
    pub fn zoo_name(&self) -> String {
        match self.quantized {
            Some(_) => format!("{}-int8", self.model),
            None => self.model.clone(),
        }
    }

    /// What the weights of this run are known to do, in the exported file's metadata.
    pub fn describe(&self, meta: &mut ModelMetadata) {
        meta.val_acc_frac = self.best_val_acc_frac;
        meta.test_acc_frac = Some(self.test_acc_frac);
        meta.epochs = Some(self.epochs as u64);
        meta.recipe = Some(serde_json::to_value(&self.recipe).expect("a recipe serialises"));
    }
}

/// Fills accuracies, epochs and the recipe from the `summary.json` beside `checkpoint`, when
/// the checkpoint comes from a finished `train` run, and returns that summary. Without a
/// readable summary the metadata stays that of fresh weights, with a warning when a summary is
/// there but does not parse.
pub fn fill_metadata(checkpoint: &Path, meta: &mut ModelMetadata) -> Option<Summary> {
    let dir = checkpoint.parent()?;
    if !dir.join(SUMMARY).exists() {
        return None;
    }
    match Summary::read(dir) {
        Ok(summary) => {
            summary.describe(meta);
            Some(summary)
        }
        Err(e) => {
            tracing::warn!("{:#}; the export's metadata carries no accuracy", with_causes(&e));
            None
        }
    }
}

/// `err` and its causes joined by ": " (what `{:#}` prints for an anyhow error).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first shipped run (a fixture now) was written before `precision` and
    /// `data_on_device` existed; it and every shipped summary must load and describe a
    /// finished run.
    #[test]
    fn the_shipped_summaries_load() {
        let zoo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-zoo");
        let s = Summary::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-before-presets")).unwrap();
        assert_eq!(s.model, "resnet-light");
        assert_eq!(s.facts, ModelFacts::for_model("resnet-light").unwrap());
        assert_eq!((s.epochs, s.best_epoch, s.test_images), (30, Some(29), 10_000));
        assert_eq!((s.precision.as_str(), s.data_on_device), ("f32", false));
        assert_eq!(s.recipe.milestones, [15, 22]);
        for entry in std::fs::read_dir(&zoo).unwrap() {
            let dir = entry.unwrap().path();
            if dir.join("summary.json").exists() {
                let s = Summary::read(&dir).unwrap();
                assert_eq!(s.zoo_name(), dir.file_name().unwrap().to_str().unwrap());
                assert_eq!(s.epochs, s.recipe.epochs, "{} shipped an unfinished run", s.model);
            }
        }
    }

    #[test]
    fn a_summary_round_trips_and_describes_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let old_run = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-before-presets");
        let s = Summary::read(&old_run).unwrap();
        s.write(dir.path()).unwrap();
        assert_eq!(Summary::read(dir.path()).unwrap(), s);
        let mut meta = ModelMetadata::for_model("resnet-light").unwrap();
        fill_metadata(&dir.path().join("best.safetensors"), &mut meta);
        assert_eq!((meta.val_acc_frac, meta.test_acc_frac, meta.epochs), (Some(0.8398), Some(0.8349), Some(30)));
        assert_eq!(meta.recipe.unwrap()["milestones"], serde_json::json!([15, 22]));
    }
}
