//! What a run folder says about its weights, for metadata of exports made from a checkpoint.

use cifar_models::metadata::ModelMetadata;
use std::path::Path;

/// Fills accuracies, epochs and the recipe from the `summary.json` beside `checkpoint`, when
/// the checkpoint comes from a finished `train` run.
pub fn fill_metadata(checkpoint: &Path, meta: &mut ModelMetadata) {
    let Some(dir) = checkpoint.parent() else { return };
    let Ok(text) = std::fs::read_to_string(dir.join("summary.json")) else { return };
    let Ok(summary) = serde_json::from_str::<serde_json::Value>(&text) else { return };
    meta.val_acc = summary["best_val_acc"].as_f64().or(meta.val_acc);
    meta.test_acc = summary["test_acc"].as_f64().or(meta.test_acc);
    meta.epochs = summary["epochs"].as_u64().or(meta.epochs);
    if !summary["recipe"].is_null() {
        meta.recipe = Some(summary["recipe"].clone());
    }
}
