//! The train library's error: the failures with their own exit status (see `train --help`),
//! and the module errors a run can end with, each stating its cause once.

use crate::data::DataError;
use crate::export::ExportError;
use crate::files::FileError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "{} already holds a run; pass --resume to continue it, or choose another --out (nothing was overwritten)",
        dir.display()
    )]
    RunExists { dir: PathBuf },
    #[error("cannot resume {}: the run was started with another recipe ({})", dir.display(), conflicts.join("; "))]
    ResumeMismatch { dir: PathBuf, conflicts: Vec<String> },
    #[error(
        "training diverged: the loss became {loss} at epoch {epoch}, batch {batch}; stopped. \
         The last good checkpoint (end of epoch {last_good}) is kept; try a lower --lr"
    )]
    Diverged { epoch: usize, batch: usize, loss: f32, last_good: usize },
    #[error(transparent)]
    Model(#[from] cifar_models::ZooError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Export(#[from] ExportError),
    /// A tensor operation of training or evaluation.
    #[error(transparent)]
    Compute(#[from] candle_core::Error),
}
