//! Per-epoch metrics and the files that hold them (`metrics.jsonl`, `metrics.csv`).

use crate::files::{self, FileError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One completed epoch. Accuracies are fractions in [0, 1]; `epoch` counts from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    #[serde(rename = "train_acc")]
    pub train_acc_frac: f64,
    pub val_loss: f64,
    #[serde(rename = "val_acc")]
    pub val_acc_frac: f64,
    /// Validation of the weights' EMA (runs with `--ema-decay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss_ema: Option<f64>,
    #[serde(default, rename = "val_acc_ema", skip_serializing_if = "Option::is_none")]
    pub val_acc_ema_frac: Option<f64>,
    /// Learning rate of the epoch's first batch (the whole epoch's under multistep).
    pub lr: f64,
    /// Wall time of the training pass plus validation.
    pub epoch_seconds: f64,
    /// Training images per second over the training pass (data loading included).
    pub train_img_s: f64,
    pub train_images: usize,
}

pub const JSONL: &str = "metrics.jsonl";
pub const CSV: &str = "metrics.csv";

/// Rewrites both files from the history of committed epochs (so an epoch that was not
/// checkpointed never shows up in them).
pub fn write(dir: &Path, history: &[EpochMetrics]) -> Result<(), FileError> {
    let jsonl_path = dir.join(JSONL);
    let mut jsonl = String::new();
    for m in history {
        jsonl += &serde_json::to_string(m).map_err(|e| FileError::encode(&jsonl_path, e))?;
        jsonl.push('\n');
    }
    files::write(&jsonl_path, jsonl.as_bytes())?;
    let csv_path = dir.join(CSV);
    files::write(&csv_path, &to_csv(history).map_err(|e| FileError::encode(&csv_path, e))?)
}

/// The history as CSV with a header row (the header alone when there is no epoch yet).
fn to_csv(history: &[EpochMetrics]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for m in history {
        w.serialize(m)?;
    }
    if history.is_empty() {
        w.write_record([
            "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_seconds", "train_img_s", "train_images",
        ])?;
    }
    w.into_inner().map_err(|e| e.into_error().into())
}
