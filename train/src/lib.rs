//! Training side of the CIFAR-10 pipeline: data, trainer, checkpoints and export.

pub mod data;
pub mod export;
pub mod run_info;
