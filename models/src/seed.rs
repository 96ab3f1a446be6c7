//! The seed study's published figures (its README, docs/models.md §2 and §5), for reports and tests.

use serde::Serialize;

/// The CIFAR-10 class names, in label order.
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Per-channel normalisation of the seed's transforms (`Normalize(mean, std)`).
pub const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const STD: [f32; 3] = [0.2023, 0.1994, 0.2010];

/// The batch size the seed's torchinfo "GMACs" figures were taken at.
pub const SEED_MAC_BATCH: u64 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SeedFigures {
    pub params: usize,
    /// torchinfo 1.5.2 "Total mult-adds (G)" for a batch of 128, as printed (two decimals).
    pub gmacs_batch128: f64,
    /// Validation and test accuracy in percent, as published.
    #[serde(rename = "val_acc")]
    pub val_acc_pct: f64,
    #[serde(rename = "test_acc")]
    pub test_acc_pct: f64,
}

/// In the order of [`crate::zoo::MODEL_NAMES`].
pub const SEED: [SeedFigures; 7] = [
    SeedFigures { params: 1_110_826, gmacs_batch128: 11.28, val_acc_pct: 90.8, test_acc_pct: 90.16 },
    SeedFigures { params: 310_474, gmacs_batch128: 8.95, val_acc_pct: 91.86, test_acc_pct: 91.20 },
    SeedFigures { params: 3_921_994, gmacs_batch128: 16.73, val_acc_pct: 92.54, test_acc_pct: 91.79 },
    SeedFigures { params: 1_087_114, gmacs_batch128: 19.19, val_acc_pct: 92.96, test_acc_pct: 92.30 },
    SeedFigures { params: 3_090_058, gmacs_batch128: 21.23, val_acc_pct: 93.14, test_acc_pct: 92.00 },
    SeedFigures { params: 508_447, gmacs_batch128: 16.30, val_acc_pct: 93.62, test_acc_pct: 92.8 },
    SeedFigures { params: 1_098_724, gmacs_batch128: 28.75, val_acc_pct: 94.04, test_acc_pct: 93.09 },
];
