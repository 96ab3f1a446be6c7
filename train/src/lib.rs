//! Training side of the CIFAR-10 pipeline: data, trainer, checkpoints and export.

pub mod data;
