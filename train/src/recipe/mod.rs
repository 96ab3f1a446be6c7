//! The training recipe: every hyper-parameter in one struct, the seed's values as its defaults
//! (docs/models.md §5, [`Recipe::seed`]: the one place they are declared), recorded with each
//! run (`recipe.json`, `state.json`). The command line only overrides fields
//! ([`RecipeOverrides`]).
//!
//! A field added later needs `#[serde(default)]` (or a default function), so that runs
//! written before it still load and resume.

mod overrides;

pub use overrides::{show_default, with_recipe_defaults, RecipeOverrides};

use serde::{Deserialize, Serialize};

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
        let rules: [(&'static str, bool, &'static str); 6] = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch-size", self.batch_size >= 1, "at least 1"),
            ("lr", positive(self.lr), "a positive number"),
            ("beta1", fraction(self.beta1), "in [0, 1)"),
            ("beta2", fraction(self.beta2), "in [0, 1)"),
            ("eps", positive(self.eps), "a positive number"),
        ];
        match rules.into_iter().find(|(_, ok, _)| !ok) {
            Some((flag, _, expected)) => Err(RecipeError { flag, expected }),
            None => Ok(()),
        }
    }

    /// MultiStepLR, stepped once per epoch: the learning rate used during `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let passed = self.milestones.iter().filter(|&&m| epoch >= m).count();
        self.lr * self.gamma.powi(passed as i32)
    }

    /// Differences that make a run folder's recipe incompatible with this one for `--resume`
    /// (the number of epochs may grow).
    pub fn resume_conflicts(&self, saved: &Recipe) -> Vec<String> {
        let mut a = serde_json::to_value(self).expect("recipe serialises");
        let mut b = serde_json::to_value(saved).expect("recipe serialises");
        for v in [&mut a, &mut b] {
            v.as_object_mut().expect("object").remove("epochs");
        }
        let (a, b) = (a.as_object().unwrap(), b.as_object().unwrap());
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: run has {}, asked {v}", b[k])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_steps_at_50_and_75() {
        let r = Recipe::seed("resnet-light");
        let lrs: Vec<f64> = [0, 49, 50, 74, 75, 99].iter().map(|&e| r.lr_at(e)).collect();
        let want = [3e-3, 3e-3, 3e-4, 3e-4, 3e-5, 3e-5];
        for (got, want) in lrs.iter().zip(want) {
            assert!((got - want).abs() < 1e-15, "{lrs:?}");
        }
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
    /// of `model-zoo/resnet-light/recipe.json`, trained with an earlier version of `train`.
    #[test]
    fn a_recipe_json_of_the_shipped_model_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../model-zoo/resnet-light/recipe.json");
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
}
