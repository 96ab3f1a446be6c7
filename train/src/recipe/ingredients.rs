//! The recipe's named choices: each a closed set, spelled the same on the command line and in
//! `recipe.json`.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Writes the value's command-line spelling (what `--help` and `recipe.json` show).
macro_rules! display_as_value {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.to_possible_value().expect("no skipped variants").get_name())
            }
        }
    )*};
}

/// A starting point for every field (`--recipe`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The seed study's recipe, as published.
    #[default]
    Seed,
    /// The compute-efficient recipe: far fewer epochs for the same accuracy.
    Fast,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// ×gamma at each milestone epoch (PyTorch's MultiStepLR, the seed's).
    #[default]
    Multistep,
    /// Half a cosine from lr to lr·final-lr-frac over the run, stepped per batch.
    Cosine,
    /// Straight line from lr down to lr·final-lr-frac over the run (after the warm-up: the
    /// triangular one-cycle of the fast CIFAR trainers), stepped per batch.
    Onecycle,
}

/// Views averaged (logits) at evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    /// The image as it is.
    #[default]
    None,
    /// The image and its mirror image.
    Flip,
    /// The image and its mirror, each also shifted by one pixel down and right (edges
    /// repeated): four views.
    FlipTranslate,
}

impl Tta {
    /// Forward passes per image.
    pub fn views(self) -> usize {
        match self {
            Tta::None => 1,
            Tta::Flip => 2,
            Tta::FlipTranslate => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// PyTorch's AdamW (decoupled weight decay; --beta1, --beta2, --eps).
    #[default]
    Adamw,
    /// PyTorch's SGD (L2 weight decay in the gradient; --momentum, --nesterov).
    Sgd,
}

/// Horizontal flips of the training augmentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FlipMode {
    /// Each image flipped with probability ½ in every epoch (torchvision's, the seed's).
    #[default]
    Random,
    /// Random in the first epoch, then each image the other way round from the epoch before
    /// (airbench's alternating flips: every image seen both ways every two epochs).
    Alternating,
}

/// The parameters weight decay shrinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecayOn {
    /// Every trainable parameter (the seed's: PyTorch's AdamW over `model.parameters()`).
    #[default]
    All,
    /// Convolution and linear weights only: BatchNorm scales and shifts and biases are left
    /// alone (timm's and the fast CIFAR trainers' rule: a vector's size sets no capacity,
    /// and shrinking a BatchNorm scale only rescales what the next layer sees).
    Weights,
}

impl DecayOn {
    /// Whether decay applies to a parameter of `rank` dimensions (vectors are the BatchNorm
    /// scales and shifts and the biases).
    pub fn applies_to(self, rank: usize) -> bool {
        match self {
            DecayOn::All => true,
            DecayOn::Weights => rank >= 2,
        }
    }
}

display_as_value!(Preset, Schedule, Tta, OptimizerKind, FlipMode, DecayOn);
