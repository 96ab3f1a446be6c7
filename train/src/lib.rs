//! Training side of the CIFAR-10 pipeline: data, trainer, checkpoints and export.

pub mod checkpoint;
pub mod data;
pub mod ema;
pub mod device;
pub mod error;
pub mod export;
pub mod files;
pub mod fit;
pub mod metrics;
pub mod loss;
pub mod optim;
pub mod progress;
pub mod quantize;
pub mod recipe;
pub mod report;
pub mod resident;
pub mod run_folder;
pub mod runtime;
pub mod speed;
pub mod summary;
pub mod tta;

pub use error::TrainError;

/// The commit this binary was built from (`build.rs`), recorded in summaries and exports.
pub const GIT_COMMIT: &str = env!("CIFAR_GIT_COMMIT");
