//! Run-folder checkpoints, each file written atomically (temporary file, then rename).
//!
//! - `last.safetensors` / `best.safetensors`: the model's tensors (parameters and BatchNorm
//!   running statistics) by path — what `train export --checkpoint` reads.
//! - `resume.safetensors`: the commit point of an epoch: model tensors, AdamW moments and the
//!   whole [`TrainState`] (as JSON in the safetensors metadata) in one file, so a run killed at
//!   any instant resumes from one consistent epoch.
//! - `state.json`: a readable copy of the [`TrainState`] of the last committed epoch.

use crate::metrics::EpochMetrics;
use crate::recipe::Recipe;
use anyhow::{Context, Result};
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

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub recipe: Recipe,
    /// Epochs completed (the next epoch to run, 0-based).
    pub epochs_done: usize,
    /// AdamW steps taken.
    pub optimizer_step: u64,
    /// The dropout mask stream.
    pub dropout: DropoutState,
    pub best_val_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Training seconds spent so far (excluding time lost to interruptions).
    pub train_seconds: f64,
    /// One entry per completed epoch.
    pub history: Vec<EpochMetrics>,
    pub git_commit: String,
}

/// Writes bytes to `path` via a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes).with_context(|| format!("writing {}", path.display()))?;
    // tempfile creates 0600 files; run artifacts are ordinary readable files.
    #[cfg(unix)]
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

fn serialize(tensors: &[(String, Tensor)], metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let cpu: Vec<(String, Tensor)> =
        tensors.iter().map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?))).collect::<Result<_>>()?;
    Ok(safetensors::serialize(cpu.iter().map(|(n, t)| (n.as_str(), t)), metadata)?)
}

/// Saves model tensors (a loadable checkpoint).
pub fn save_model(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_atomically(path, &serialize(tensors, None)?)
}

/// Saves the resume point: model tensors, optimizer moments and the state, in one file.
pub fn save_resume(dir: &Path, model: &[(String, Tensor)], moments: &[(String, Tensor)], state: &TrainState) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = model.iter().map(|(n, t)| (format!("{MODEL_PREFIX}{n}"), t.clone())).collect();
    all.extend(moments.iter().map(|(n, t)| (format!("{OPTIM_PREFIX}{n}"), t.clone())));
    let meta = HashMap::from([(STATE_KEY.to_string(), serde_json::to_string(state)?)]);
    write_atomically(&dir.join(RESUME), &serialize(&all, Some(meta))?)?;
    write_atomically(&dir.join(STATE), serde_json::to_string_pretty(state)?.as_bytes())
}

pub struct Resume {
    pub state: TrainState,
    pub model: HashMap<String, Tensor>,
    pub moments: HashMap<String, Tensor>,
}

pub fn load_resume(dir: &Path) -> Result<Resume> {
    let path = dir.join(RESUME);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let state_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .with_context(|| format!("{} holds no training state", path.display()))?;
    let state: TrainState = serde_json::from_str(state_json).with_context(|| format!("training state in {}", path.display()))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    let (mut model, mut moments) = (HashMap::new(), HashMap::new());
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix(MODEL_PREFIX) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM_PREFIX) {
            moments.insert(n.to_string(), t);
        }
    }
    Ok(Resume { state, model, moments })
}
