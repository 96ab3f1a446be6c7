//! One run's folder, `<out>/<model>/`: the one type that decides what is written there and in
//! which order, so that a run killed at any instant leaves a folder `--resume` can continue.

use crate::checkpoint::{self, EvaluatedWeights, Resume, ResumeTensors, TrainState};
use crate::ema::Ema;
use crate::error::TrainError;
use crate::export::{export_checked, ParityCheck};
use crate::files::{self, FileError};
use crate::metrics::{self, EpochMetrics};
use crate::optim::Optimizer;
use crate::recipe::Recipe;
use crate::report::{self, Confusion};
use crate::summary::{Summary, SUMMARY};
use candle_core::Device;
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use std::path::{Path, PathBuf};

pub const RECIPE: &str = "recipe.json";
pub const ONNX: &str = "model.onnx";

/// Files whose presence means the folder holds a run (started, or finished).
const RUN_MARKERS: [&str; 6] = [checkpoint::RESUME, checkpoint::STATE, checkpoint::LAST, metrics::JSONL, SUMMARY, RECIPE];

/// The folder of a run: `<out>/<model>`.
pub fn run_dir(out: &Path, model: &str) -> PathBuf {
    out.join(model)
}

pub struct RunFolder {
    dir: PathBuf,
}

impl RunFolder {
    /// The folder for `recipe` under `out`, with its resume point when `resume` is asked and
    /// there is one. Writes nothing: a folder holding another run is refused
    /// ([`TrainError::RunExists`]), and so is a resume point of another recipe
    /// ([`TrainError::ResumeMismatch`]; only the number of epochs may differ).
    pub fn open(out: &Path, recipe: &Recipe, resume: bool) -> Result<(Self, Option<Resume>), TrainError> {
        let dir = run_dir(out, &recipe.model);
        if resume && dir.join(checkpoint::RESUME).exists() {
            let point = checkpoint::load_resume(&dir)?;
            let conflicts = recipe.resume_conflicts(&point.state.recipe);
            if !conflicts.is_empty() {
                return Err(TrainError::ResumeMismatch { dir, conflicts });
            }
            return Ok((Self { dir }, Some(point)));
        }
        if !resume && RUN_MARKERS.iter().any(|f| dir.join(f).exists()) {
            return Err(TrainError::RunExists { dir });
        }
        Ok((Self { dir }, None))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records the recipe the run goes on with; a resumed run also rewrites its metrics from
    /// the `committed` epochs, dropping anything written for an epoch that was not committed.
    pub fn start(&self, recipe: &Recipe, committed: Option<&[EpochMetrics]>) -> Result<(), FileError> {
        files::write_json(&self.dir.join(RECIPE), recipe)?;
        match committed {
            Some(history) => metrics::write(&self.dir, history),
            None => Ok(()),
        }
    }

    /// Commits a finished epoch into `state` and onto disk, in the order that keeps the folder
    /// consistent at every instant: best (if improved), last, the resume point
    /// (`resume.safetensors`, then `state.json`), `metrics.jsonl`/`.csv`, `curves.svg`. The
    /// best checkpoint holds the raw weights or their EMA, whichever validated better.
    pub fn commit_epoch(&self, net: &Network, opt: &Optimizer, ema: Option<&Ema>, state: &mut TrainState, m: EpochMetrics) -> Result<(), FileError> {
        let tensors = net.named_tensors();
        let ema_tensors = ema.map_or(&[][..], |e| e.tensors());
        let (val_acc, weights) = match m.val_acc_ema_frac {
            Some(ema_acc) if ema_acc > m.val_acc_frac => (ema_acc, EvaluatedWeights::Ema),
            _ => (m.val_acc_frac, EvaluatedWeights::Raw),
        };
        if state.best_val_acc_frac.is_none_or(|best| val_acc > best) {
            state.best_val_acc_frac = Some(val_acc);
            state.best_epoch = Some(m.epoch);
            state.best_weights = weights;
            let best = if weights == EvaluatedWeights::Ema { ema_tensors } else { &tensors[..] };
            checkpoint::save_model(&self.dir.join(checkpoint::BEST), best)?;
        }
        checkpoint::save_model(&self.dir.join(checkpoint::LAST), &tensors)?;
        state.epochs_done = m.epoch;
        state.optimizer_step = opt.step_count();
        state.ema_updates = ema.map_or(0, |e| e.updates());
        state.dropout = net.dropout_state();
        state.train_seconds += m.epoch_seconds;
        state.history.push(m);
        let moments = opt.moments().map_err(|e| FileError::encode(&self.dir.join(checkpoint::RESUME), e))?;
        checkpoint::save_resume(&self.dir, ResumeTensors { model: &tensors, moments: &moments, ema: ema_tensors }, state)?;
        metrics::write(&self.dir, &state.history)?;
        report::draw_curves(&self.dir.join(report::CURVES), &state.recipe.model, &state.history)
    }

    /// Loads the best checkpoint into `net`, when an epoch has been committed.
    pub fn load_best(&self, net: &Network) -> Result<(), FileError> {
        let path = self.dir.join(checkpoint::BEST);
        if !path.exists() {
            return Ok(());
        }
        let bad = |e: candle_core::Error| FileError::decode(&path, "checkpoint of this model", e);
        net.load(&candle_core::safetensors::load(&path, &Device::Cpu).map_err(bad)?).map_err(bad)
    }

    /// The end of a run: the test confusion matrix, `model.onnx` (exported from `net`, the
    /// best checkpoint, with `summary`'s figures in its metadata and checked as `check` says)
    /// and `summary.json`, which gets the parity figure.
    pub fn finish(&self, net: &Network, mut summary: Summary, confusion: &Confusion, check: ParityCheck) -> Result<Summary, TrainError> {
        report::draw_confusion(&self.dir, &summary.model, confusion)?;
        let mut meta = ModelMetadata::for_model(&summary.model)?;
        meta.classes = confusion.classes.clone();
        meta.source_commit = Some(summary.git_commit.clone());
        summary.describe(&mut meta);
        let exported = export_checked(net, &meta, summary.recipe.tta, check, &self.dir.join(ONNX))?;
        summary.onnx = Some(ONNX.to_string());
        summary.onnx_parity_max_abs_diff = exported.parity.map(|p| p.max_abs_diff);
        summary.write(&self.dir)?;
        Ok(summary)
    }
}
