//! Training side of the CIFAR-10 pipeline: data, trainer, checkpoints and export.

pub mod checkpoint;
pub mod data;
pub mod device;
pub mod export;
pub mod fit;
pub mod metrics;
pub mod optim;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod resident;
pub mod runtime;
pub mod run_info;
