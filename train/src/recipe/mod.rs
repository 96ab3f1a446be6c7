//! The training recipe: every hyper-parameter in one struct, the seed's values as its defaults
//! (docs/models.md §5, [`Recipe::seed`]: the one place they are declared), recorded with each
//! run (`recipe.json`, `state.json`). The command line only overrides fields
//! ([`RecipeOverrides`]).
//!
//! A field added later needs `#[serde(default)]` (or a default function), so that runs
//! written before it still load and resume.

mod ingredients;
mod overrides;
mod schedule;

pub use ingredients::{DecayOn, FlipMode, OptimizerKind, Preset, Schedule, Tta};
pub use overrides::{show_default, with_recipe_defaults, RecipeOverrides};

use serde::{Deserialize, Serialize};

use crate::data::PAD;

/// A recipe value the trainer cannot run with; the message names the flag that sets it.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("--{flag} must be {expected}")]
pub struct RecipeError {
    pub flag: &'static str,
    pub expected: &'static str,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub model: String,
    pub epochs: usize,
    pub batch_size: usize,
    /// AdamW learning rate before any milestone.
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Epochs (0-based) at whose start the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
    /// Seeds the weights, the dropout masks, the shuffles and the augmentation.
    pub seed: u64,
    /// Seeds the 45k/5k split (numpy's `np.random.seed(42)` shuffle, reproduced exactly).
    pub split_seed: u32,
    /// Use only the first N images of the training split (None: all 45,000).
    pub limit_train: Option<usize>,
    /// Use only the first N images of the validation and test sets.
    pub limit_eval: Option<usize>,
    /// The preset the other fields started from (`--recipe`); informative only.
    #[serde(default)]
    pub preset: Preset,
    /// How the learning rate moves: per epoch at the milestones, or per batch (cosine,
    /// one-cycle) over the whole run.
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs (fractions allowed) of linear warm-up from 0 to `lr`, before the schedule.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Where cosine and one-cycle end, as a fraction of `lr`.
    #[serde(default)]
    pub final_lr_frac: f64,
    /// Weight of the uniform distribution mixed into the one-hot targets.
    #[serde(default)]
    pub label_smoothing: f64,
    /// Decay of the exponential moving average of the weights and BatchNorm statistics
    /// (0: none).
    #[serde(default)]
    pub ema_decay: f64,
    /// Test-time augmentation of validation and test (and of an export that asks for it).
    #[serde(default)]
    pub tta: Tta,
    /// Largest global L2 norm of the gradients; larger ones are scaled down (0: no clipping).
    #[serde(default)]
    pub clip_grad_norm: f64,
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// SGD momentum (AdamW uses `beta1`).
    #[serde(default = "seed_momentum")]
    pub momentum: f64,
    /// SGD with Nesterov momentum.
    #[serde(default)]
    pub nesterov: bool,
    /// Horizontal flips of the training augmentation.
    #[serde(default)]
    pub flip: FlipMode,
    /// Zero padding of the training crop, pixels per side (the seed's 4; less is a milder
    /// translation).
    #[serde(default = "seed_crop_padding")]
    pub crop_padding: usize,
    /// Which parameters `weight_decay` shrinks (runs written before it read `all`).
    #[serde(default)]
    pub weight_decay_on: DecayOn,
}

fn seed_momentum() -> f64 {
    0.9
}

fn seed_crop_padding() -> usize {
    PAD
}

impl Recipe {
    /// The seed's recipe for `model`: AdamW(3e-3, wd 0.1), batch 128, 100 epochs,
    /// MultiStepLR([50, 75], 0.1).
    pub fn seed(model: &str) -> Self {
        let epochs = 100;
        Self {
            model: model.to_string(),
            epochs,
            batch_size: 128,
            lr: 3e-3,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            milestones: Self::scaled_milestones(epochs),
            gamma: 0.1,
            seed: 42,
            split_seed: 42,
            limit_train: None,
            limit_eval: None,
            preset: Preset::Seed,
            schedule: Schedule::Multistep,
            warmup_epochs: 0.0,
            final_lr_frac: 0.0,
            label_smoothing: 0.0,
            ema_decay: 0.0,
            tta: Tta::None,
            clip_grad_norm: 0.0,
            optimizer: OptimizerKind::Adamw,
            momentum: seed_momentum(),
            nesterov: false,
            flip: FlipMode::Random,
            crop_padding: seed_crop_padding(),
            weight_decay_on: DecayOn::All,
        }
    }

    /// The compute-efficient preset (`--recipe fast`): the seed's AdamW and batch under a
    /// one-cycle schedule with warm-up, label smoothing, an EMA of the weights, alternating
    /// flips, a training crop padded by 2 pixels instead of 4 and flip test-time augmentation,
    /// for 25 epochs. Chosen by the sweep in `benches/sweep-recipe.sh` and full-length runs of
    /// resnet-light and vgg (README, "Training recipes"; docs/recipe-sweep/).
    pub fn fast(model: &str) -> Self {
        Self {
            preset: Preset::Fast,
            epochs: 25,
            milestones: Vec::new(),
            schedule: Schedule::Onecycle,
            warmup_epochs: 2.0,
            final_lr_frac: 0.0,
            label_smoothing: 0.1,
            ema_decay: 0.999,
            tta: Tta::Flip,
            flip: FlipMode::Alternating,
            crop_padding: 2,
            ..Self::seed(model)
        }
    }

    /// The preset's recipe for `model`.
    pub fn preset(preset: Preset, model: &str) -> Self {
        match preset {
            Preset::Seed => Self::seed(model),
            Preset::Fast => Self::fast(model),
        }
    }

    /// The seed's milestones (at 50 % and 75 % of the schedule) for a schedule of `epochs`;
    /// a milestone at epoch 0 would only lower the starting rate, so very short runs have none.
    pub fn scaled_milestones(epochs: usize) -> Vec<usize> {
        [epochs / 2, epochs * 3 / 4].into_iter().filter(|&m| m >= 1).collect()
    }

    /// Refuses values the trainer cannot run with (an empty schedule, a rate of zero, AdamW
    /// moments that never decay or a bias correction that divides by zero).
    pub fn check(&self) -> Result<(), RecipeError> {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        let fraction = |v: f64| (0.0..1.0).contains(&v);
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        let rules: [(&'static str, bool, &'static str); 15] = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch-size", self.batch_size >= 1, "at least 1"),
            ("lr", positive(self.lr), "a positive number"),
            ("weight-decay", non_negative(self.weight_decay), "0 or more"),
            ("beta1", fraction(self.beta1), "in [0, 1)"),
            ("beta2", fraction(self.beta2), "in [0, 1)"),
            ("eps", positive(self.eps), "a positive number"),
            ("gamma", positive(self.gamma), "a positive number"),
            ("warmup-epochs", non_negative(self.warmup_epochs) && self.warmup_epochs < self.epochs as f64, "0 or more and shorter than --epochs"),
            ("final-lr-frac", (0.0..=1.0).contains(&self.final_lr_frac), "in [0, 1]"),
            ("label-smoothing", fraction(self.label_smoothing), "in [0, 1)"),
            ("ema-decay", fraction(self.ema_decay), "in [0, 1) (0: no EMA)"),
            ("clip-grad-norm", non_negative(self.clip_grad_norm), "0 or more (0: no clipping)"),
            ("momentum", fraction(self.momentum), "in [0, 1)"),
            ("crop-padding", self.crop_padding <= PAD, "0 to 4"),
        ];
        match rules.into_iter().find(|(_, ok, _)| !ok) {
            Some((flag, _, expected)) => Err(RecipeError { flag, expected }),
            None => Ok(()),
        }
    }

    /// Differences that make a run folder's recipe incompatible with this one for `--resume`.
    /// The number of epochs may grow under the multistep schedule only: cosine and one-cycle
    /// are shaped by the run's length, so a longer run would not continue the same curve.
    pub fn resume_conflicts(&self, saved: &Recipe) -> Vec<String> {
        let mut a = serde_json::to_value(self).expect("recipe serialises");
        let mut b = serde_json::to_value(saved).expect("recipe serialises");
        let epochs_may_change = self.schedule == Schedule::Multistep && saved.schedule == Schedule::Multistep;
        for v in [&mut a, &mut b] {
            if epochs_may_change {
                v.as_object_mut().expect("object").remove("epochs");
            }
        }
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        let why = |k: &str| match k {
            "epochs" => " (a cosine or one-cycle schedule is shaped by the run's length; only multistep runs may grow)",
            _ => "",
        };
        let saved_value = |k: &str| b.get(k).map_or("nothing".to_string(), |v| v.to_string());
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: run has {}, asked {v}{}", saved_value(k), why(k))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_milestones_sit_at_half_and_three_quarters() {
        assert_eq!(Recipe::scaled_milestones(100), vec![50, 75]);
        assert_eq!(Recipe::scaled_milestones(30), vec![15, 22]);
        assert_eq!(Recipe::scaled_milestones(1), Vec::<usize>::new());
        assert_eq!(Recipe::scaled_milestones(2), vec![1, 1]);
    }

    #[test]
    fn check_names_the_flag_of_the_first_bad_value() {
        let mut r = Recipe::seed("vgg");
        assert_eq!(r.check(), Ok(()));
        r.batch_size = 0;
        assert_eq!(r.check().unwrap_err().to_string(), "--batch-size must be at least 1");
        r.batch_size = 1;
        for (lr, ok) in [(0.0, false), (f64::NAN, false), (-1e-3, false), (1e-3, true)] {
            r.lr = lr;
            assert_eq!(r.check().is_ok(), ok, "lr {lr}");
        }
        r.beta2 = 1.0;
        assert_eq!(r.check().unwrap_err(), RecipeError { flag: "beta2", expected: "in [0, 1)" });
    }

    /// A run folder written before any later field was added still loads: this is the key set
    /// of the `recipe.json` of the resnet-light run shipped until 2026-12-05 (kept as a
    /// fixture), trained with an earlier version of `train`.
    #[test]
    fn a_recipe_json_written_before_presets_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/run-before-presets/recipe.json");
        let r: Recipe = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut want = Recipe::seed("resnet-light");
        want.epochs = 30;
        want.milestones = vec![15, 22];
        assert_eq!(r, want);
    }

    #[test]
    fn resume_conflicts_ignore_epochs_only() {
        let a = Recipe::seed("vgg");
        let mut b = a.clone();
        b.epochs = 200;
        assert!(a.resume_conflicts(&b).is_empty());
        b.lr = 1e-3;
        let c = a.resume_conflicts(&b);
        assert_eq!(c.len(), 1);
        assert!(c[0].starts_with("lr:"), "{c:?}");
    }

    #[test]
    fn a_run_shaped_by_its_length_cannot_grow() {
        let a = Recipe::fast("resnet-light");
        let mut b = a.clone();
        assert!(a.resume_conflicts(&b).is_empty());
        b.epochs = 30;
        let c = b.resume_conflicts(&a);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].starts_with("epochs: run has 25, asked 30 (a cosine or one-cycle"), "{c:?}");
    }

    #[test]
    fn the_new_fields_refuse_bad_values_naming_their_flag() {
        let bad: [(&str, fn(&mut Recipe)); 7] = [
            ("label-smoothing", |r| r.label_smoothing = -0.1),
            ("ema-decay", |r| r.ema_decay = 1.0),
            ("warmup-epochs", |r| r.warmup_epochs = r.epochs as f64),
            ("clip-grad-norm", |r| r.clip_grad_norm = -1.0),
            ("momentum", |r| r.momentum = 1.0),
            ("final-lr-frac", |r| r.final_lr_frac = 1.5),
            ("crop-padding", |r| r.crop_padding = PAD + 1),
        ];
        for (flag, spoil) in bad {
            let mut r = Recipe::fast("vgg");
            assert_eq!(r.check(), Ok(()));
            spoil(&mut r);
            assert_eq!(r.check().unwrap_err().flag, flag);
        }
    }
}
