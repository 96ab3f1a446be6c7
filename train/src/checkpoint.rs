//! Run-folder checkpoints, each file written atomically ([`files::write`]).
//!
//! - `last.safetensors` / `best.safetensors`: the model's tensors (parameters and BatchNorm
//!   running statistics) by path — what `train export --checkpoint` reads.
//! - `resume.safetensors`: the commit point of an epoch: model tensors, optimizer state, the
//!   EMA of the weights (when the recipe keeps one) and the whole [`TrainState`] (as JSON in the safetensors metadata) in one file, so a run killed at
//!   any instant resumes from one consistent epoch.
//! - `state.json`: a readable copy of the [`TrainState`] of the last committed epoch.

use crate::files::{self, BoxError, FileError};
use crate::metrics::EpochMetrics;
use crate::recipe::Recipe;
use candle_core::{Device, Tensor};
use cifar_models::nn::DropoutState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const RESUME: &str = "resume.safetensors";
pub const STATE: &str = "state.json";
const STATE_KEY: &str = "train_state";
const MODEL_PREFIX: &str = "model.";
const OPTIM_PREFIX: &str = "optim.";
const EMA_PREFIX: &str = "ema.";

/// Which weights a run's best checkpoint (and so its test pass and export) holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluatedWeights {
    /// The optimizer's weights.
    #[default]
    Raw,
    /// Their exponential moving average.
    Ema,
}

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub recipe: Recipe,
    /// Epochs completed (the next epoch to run, 0-based).
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub optimizer_step: u64,
    /// EMA updates taken (0 without an EMA).
    #[serde(default)]
    pub ema_updates: u64,
    /// What `best.safetensors` holds: the raw weights or their EMA, whichever validated better.
    #[serde(default)]
    pub best_weights: EvaluatedWeights,
    /// The dropout mask stream.
    pub dropout: DropoutState,
    #[serde(rename = "best_val_acc")]
    pub best_val_acc_frac: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Training seconds spent so far (excluding time lost to interruptions).
    pub train_seconds: f64,
    /// One entry per completed epoch.
    pub history: Vec<EpochMetrics>,
    pub git_commit: String,
}

impl TrainState {
    /// The state of a run before its first epoch.
    pub fn start(recipe: Recipe, dropout: DropoutState, git_commit: &str) -> Self {
        Self {
            recipe,
            epochs_done: 0,
            optimizer_step: 0,
            ema_updates: 0,
            best_weights: EvaluatedWeights::Raw,
            dropout,
            best_val_acc_frac: None,
            best_epoch: None,
            train_seconds: 0.0,
            history: Vec::new(),
            git_commit: git_commit.to_string(),
        }
    }
}

fn serialize(path: &Path, tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>, FileError> {
    let cpu = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(|e| FileError::encode(path, e))?;
    safetensors::serialize(cpu.iter().map(|(n, t)| (*n, t)), metadata).map_err(|e| FileError::encode(path, e))
}

/// Saves model tensors (a loadable checkpoint).
pub fn save_model(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), FileError> {
    files::write(path, &serialize(path, tensors, None)?)
}

/// What a resume point holds besides the [`TrainState`], each by name.
pub struct ResumeTensors<'a> {
    pub model: &'a [(String, Tensor)],
    pub moments: &'a [(String, Tensor)],
    /// The EMA of the model's tensors (empty without one).
    pub ema: &'a [(String, Tensor)],
}

/// Saves the resume point: tensors and the state in one file (the commit), then `state.json`,
/// the readable copy.
pub fn save_resume(dir: &Path, tensors: ResumeTensors<'_>, state: &TrainState) -> Result<(), FileError> {
    let path = dir.join(RESUME);
    let mut all: Vec<(String, Tensor)> = Vec::new();
    for (prefix, group) in [(MODEL_PREFIX, tensors.model), (OPTIM_PREFIX, tensors.moments), (EMA_PREFIX, tensors.ema)] {
        all.extend(group.iter().map(|(n, t)| (format!("{prefix}{n}"), t.clone())));
    }
    let state_json = serde_json::to_string(state).map_err(|e| FileError::encode(&path, e))?;
    let meta = HashMap::from([(STATE_KEY.to_string(), state_json)]);
    files::write(&path, &serialize(&path, &all, Some(meta))?)?;
    files::write_json(&dir.join(STATE), state)
}

pub struct Resume {
    pub state: TrainState,
    pub model: HashMap<String, Tensor>,
    pub moments: HashMap<String, Tensor>,
    pub ema: HashMap<String, Tensor>,
}

pub fn load_resume(dir: &Path) -> Result<Resume, FileError> {
    let path = dir.join(RESUME);
    let bytes = files::read(&path)?;
    let bad = |e: BoxError| FileError::decode(&path, "resume point (safetensors with a training state)", e);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.into()))?;
    let state_json = header.metadata().as_ref().and_then(|m| m.get(STATE_KEY)).ok_or_else(|| bad("it holds no training state".into()))?;
    let state: TrainState = serde_json::from_str(state_json).map_err(|e| bad(e.into()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| bad(e.into()))?;
    let (mut model, mut moments, mut ema) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (name, t) in tensors {
        for (prefix, group) in [(MODEL_PREFIX, &mut model), (OPTIM_PREFIX, &mut moments), (EMA_PREFIX, &mut ema)] {
            if let Some(n) = name.strip_prefix(prefix) {
                group.insert(n.to_string(), t);
                break;
            }
        }
    }
    Ok(Resume { state, model, moments, ema })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `state.json` as the code before the recipe overrides wrote it (recipe with the key
    /// set of `train/tests/fixtures/run-before-presets/recipe.json`) still loads, so such runs resume.
    #[test]
    fn a_state_written_by_the_earlier_code_loads() {
        let old = r#"{
          "recipe": {"model": "resnet-light", "epochs": 30, "batch_size": 128, "lr": 0.003,
                     "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                     "milestones": [15, 22], "gamma": 0.1, "seed": 42, "split_seed": 42,
                     "limit_train": null, "limit_eval": null},
          "epochs_done": 2, "optimizer_step": 704, "dropout": {"seed": 42, "calls": 0},
          "best_val_acc": 0.61, "best_epoch": 2, "train_seconds": 440.5,
          "history": [{"epoch": 1, "train_loss": 1.5, "train_acc": 0.45, "val_loss": 1.3, "val_acc": 0.52,
                       "lr": 0.003, "epoch_seconds": 220.0, "train_img_s": 205.0, "train_images": 45000}],
          "git_commit": "5344c4bfd67c"
        }"#;
        let state: TrainState = serde_json::from_str(old).unwrap();
        let mut recipe = Recipe::seed("resnet-light");
        recipe.epochs = 30;
        recipe.milestones = vec![15, 22];
        assert_eq!(state.recipe, recipe);
        assert_eq!((state.epochs_done, state.optimizer_step, state.history.len()), (2, 704, 1));
        // The same run asked again with more epochs resumes.
        recipe.epochs = 40;
        assert!(recipe.resume_conflicts(&state.recipe).is_empty());
    }
}
