//! The command line's view of a [`Recipe`]: one optional flag per field, merged over the
//! recipe in [`RecipeOverrides::apply`]. The flags carry no defaults of their own; `--help`
//! shows the recipe's ([`with_recipe_defaults`]), so a default is declared once.

use super::{DecayOn, FlipMode, OptimizerKind, Preset, Recipe, Schedule, Tta};
use clap::{Arg, Args, Command};
use std::fmt::Display;

/// Flags that override recipe fields; a flag left out keeps the recipe's value. Each field's
/// name is the recipe field's (clap's argument id), its flag the kebab-case of it. Numbers may
/// be negative on the command line, so that `Recipe::check` can name the flag that is wrong.
#[derive(Clone, Debug, Default, PartialEq, Args)]
pub struct RecipeOverrides {
    /// The preset every other recipe flag overrides: seed (the study's recipe, 100 epochs) or
    /// fast (one-cycle, label smoothing, EMA, flip TTA: 25 epochs).
    #[arg(long = "recipe", id = "preset", value_name = "PRESET")]
    pub preset: Option<Preset>,

    /// Epochs to train.
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Images per batch, in training and evaluation.
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// AdamW learning rate (before any milestone).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,

    /// Weight decay: AdamW's decoupled decay, SGD's L2 term (on the parameters
    /// --weight-decay-on names).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,

    /// Parameters --weight-decay shrinks: all (every trainable parameter, as the seed does) or
    /// weights (convolution and linear weights; no decay on BatchNorm scales and shifts or
    /// biases).
    #[arg(long, value_name = "WHICH")]
    pub weight_decay_on: Option<DecayOn>,

    /// AdamW decay of the first moment (the gradient's running mean), in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub beta1: Option<f64>,

    /// AdamW decay of the second moment (the squared gradient's running mean), in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub beta2: Option<f64>,

    /// AdamW's term added to the root of the second moment, > 0.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,

    /// Epochs at which the learning rate is multiplied by --gamma (comma-separated). Default:
    /// 50% and 75% of --epochs (the seed's 50,75 for 100 epochs).
    #[arg(long, value_delimiter = ',', value_name = "E1,E2")]
    pub milestones: Option<Vec<usize>>,

    /// Factor applied to the learning rate at each milestone.
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,

    /// Seed of the weights, dropout masks, shuffles and augmentation (the split has its own,
    /// --split-seed).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Seed of the 45,000/5,000 train/validation split (numpy's shuffle, as the seed study).
    #[arg(long)]
    pub split_seed: Option<u32>,

    /// Train on only the first N images of the 45,000-image training split.
    #[arg(long, value_name = "N")]
    pub limit_train: Option<usize>,

    /// Validate and test on only the first N images of each set.
    #[arg(long, value_name = "N")]
    pub limit_eval: Option<usize>,

    /// Learning-rate schedule: multistep (per epoch, at --milestones), cosine or onecycle
    /// (per batch, over the whole run; --epochs cannot change on --resume).
    #[arg(long)]
    pub schedule: Option<Schedule>,

    /// Epochs of linear warm-up from 0 to --lr before the schedule (fractions allowed).
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub warmup_epochs: Option<f64>,

    /// Where cosine and onecycle end, as a fraction of --lr.
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub final_lr_frac: Option<f64>,

    /// Label smoothing of the cross-entropy targets, in [0, 1).
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub label_smoothing: Option<f64>,

    /// Decay of an EMA of the weights and BatchNorm statistics, in [0, 1) (0: off). Both the
    /// EMA and the raw weights are validated each epoch; the better one is kept as best.
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub ema_decay: Option<f64>,

    /// Test-time augmentation of validation and test: none, flip or flip-translate.
    #[arg(long)]
    pub tta: Option<Tta>,

    /// Scale the gradients down to this global L2 norm when larger (0: off).
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub clip_grad_norm: Option<f64>,

    /// adamw, or sgd (with --momentum and --nesterov; --weight-decay is then L2).
    #[arg(long)]
    pub optimizer: Option<OptimizerKind>,

    /// SGD momentum, in [0, 1).
    #[arg(long, allow_negative_numbers = true, value_name = "F")]
    pub momentum: Option<f64>,

    /// SGD with Nesterov momentum (`--nesterov` or `--nesterov false`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub nesterov: Option<bool>,

    /// Training flips: random (p ½ per epoch) or alternating (each image the other way round
    /// from its previous epoch).
    #[arg(long)]
    pub flip: Option<FlipMode>,

    /// Zero padding of the training crop, 0 to 4 pixels per side (the image moves by up to
    /// this much; 0: flips only).
    #[arg(long, value_name = "N")]
    pub crop_padding: Option<usize>,
}

/// Recipe fields whose help explains their default instead of printing a value: the model
/// has none, and the milestones follow `--epochs`.
const DEFAULT_IN_PROSE: [&str; 2] = ["model", "milestones"];

impl RecipeOverrides {
    /// The recipe these flags ask for: the `--recipe` preset for `model`, overridden.
    pub fn recipe_for(&self, model: &str) -> Recipe {
        let mut recipe = Recipe::preset(self.preset.unwrap_or_default(), model);
        self.apply(&mut recipe);
        recipe
    }

    /// Merges the flags given over `recipe`. Without `--milestones`, a new `--epochs` moves
    /// a multistep schedule's milestones to 50 % and 75 % of it, so a shortened schedule
    /// keeps the seed's shape.
    pub fn apply(&self, recipe: &mut Recipe) {
        fn set<T: Clone>(field: &mut T, flag: &Option<T>) {
            if let Some(value) = flag {
                *field = value.clone();
            }
        }
        set(&mut recipe.epochs, &self.epochs);
        set(&mut recipe.batch_size, &self.batch_size);
        set(&mut recipe.lr, &self.lr);
        set(&mut recipe.weight_decay, &self.weight_decay);
        set(&mut recipe.weight_decay_on, &self.weight_decay_on);
        set(&mut recipe.beta1, &self.beta1);
        set(&mut recipe.beta2, &self.beta2);
        set(&mut recipe.eps, &self.eps);
        set(&mut recipe.schedule, &self.schedule);
        match (&self.milestones, self.epochs) {
            (Some(m), _) => recipe.milestones = m.clone(),
            (None, Some(epochs)) if recipe.schedule == Schedule::Multistep => recipe.milestones = Recipe::scaled_milestones(epochs),
            _ => {}
        }
        set(&mut recipe.warmup_epochs, &self.warmup_epochs);
        set(&mut recipe.final_lr_frac, &self.final_lr_frac);
        set(&mut recipe.label_smoothing, &self.label_smoothing);
        set(&mut recipe.ema_decay, &self.ema_decay);
        set(&mut recipe.tta, &self.tta);
        set(&mut recipe.clip_grad_norm, &self.clip_grad_norm);
        set(&mut recipe.optimizer, &self.optimizer);
        set(&mut recipe.momentum, &self.momentum);
        set(&mut recipe.nesterov, &self.nesterov);
        set(&mut recipe.flip, &self.flip);
        set(&mut recipe.crop_padding, &self.crop_padding);
        set(&mut recipe.gamma, &self.gamma);
        set(&mut recipe.seed, &self.seed);
        set(&mut recipe.split_seed, &self.split_seed);
        recipe.limit_train = self.limit_train.or(recipe.limit_train);
        recipe.limit_eval = self.limit_eval.or(recipe.limit_eval);
    }
}

/// `cmd` (which flattens [`RecipeOverrides`]) with each recipe flag's help ending in the value
/// of [`Recipe::seed`], and of [`Recipe::fast`] where that differs. Panics when a recipe field
/// has no flag, which a test turns into a failure: every field is settable from the command
/// line.
pub fn with_recipe_defaults(mut cmd: Command) -> Command {
    let as_json = |r: Recipe| serde_json::to_value(r).expect("a recipe serialises");
    let (seed, fast) = (as_json(Recipe::seed("")), as_json(Recipe::fast("")));
    for (field, value) in seed.as_object().expect("a recipe is a JSON object") {
        if DEFAULT_IN_PROSE.contains(&field.as_str()) || value.is_null() {
            continue;
        }
        let shown = |v: &serde_json::Value| v.as_str().map_or(v.to_string(), str::to_string);
        let text = match &fast[field] {
            f if f == value || field == "preset" => shown(value),
            f => format!("{}; --recipe fast: {}", shown(value), shown(f)),
        };
        cmd = cmd.mut_arg(field, |arg| show_default(arg, text));
    }
    cmd
}

/// `arg` with `[default: VALUE]` after its help, as clap prints a declared default.
pub fn show_default(arg: Arg, value: impl Display) -> Arg {
    let append = |help: Option<&clap::builder::StyledStr>| format!("{} [default: {value}]", help.map(|h| h.to_string()).unwrap_or_default());
    let short = append(arg.get_help());
    let long = arg.get_long_help().is_some().then(|| append(arg.get_long_help()));
    let arg = arg.help(short);
    match long {
        Some(text) => arg.long_help(text),
        None => arg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Debug, Parser)]
    struct Flags {
        /// The model (a recipe field without a default).
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        recipe: RecipeOverrides,
    }

    fn parse(args: &[&str]) -> RecipeOverrides {
        let cmd = with_recipe_defaults(Flags::command());
        let matches = cmd.try_get_matches_from([&["train"], args].concat()).unwrap();
        Flags::from_arg_matches(&matches).unwrap().recipe
    }

    #[test]
    fn no_flags_keep_the_seed_recipe() {
        let mut r = Recipe::seed("vgg");
        parse(&[]).apply(&mut r);
        assert_eq!(r, Recipe::seed("vgg"));
    }

    #[test]
    fn every_field_is_settable_and_milestones_follow_epochs() {
        let mut r = Recipe::seed("vgg");
        let flags = [
            "--epochs", "30", "--batch-size", "64", "--lr", "1e-3", "--weight-decay", "0.05", "--beta1", "0.8",
            "--beta2", "0.99", "--eps", "1e-7", "--gamma", "0.5", "--seed", "7", "--split-seed", "9",
            "--limit-train", "100", "--limit-eval", "50",
        ];
        parse(&flags).apply(&mut r);
        let want = Recipe {
            model: "vgg".into(),
            epochs: 30,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 0.05,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-7,
            milestones: vec![15, 22],
            gamma: 0.5,
            seed: 7,
            split_seed: 9,
            limit_train: Some(100),
            limit_eval: Some(50),
            ..Recipe::seed("vgg")
        };
        assert_eq!(r, want);
        let flags = [
            "--recipe", "fast", "--schedule", "cosine", "--warmup-epochs", "0.5", "--final-lr-frac", "0.05",
            "--label-smoothing", "0.2", "--ema-decay", "0.99", "--tta", "flip-translate", "--clip-grad-norm", "5",
            "--optimizer", "sgd", "--momentum", "0.85", "--nesterov", "--flip", "random", "--epochs", "12", "--crop-padding", "2",
            "--weight-decay-on", "weights",
        ];
        let got = parse(&flags).recipe_for("vgg");
        let want = Recipe {
            epochs: 12,
            schedule: Schedule::Cosine,
            warmup_epochs: 0.5,
            final_lr_frac: 0.05,
            label_smoothing: 0.2,
            ema_decay: 0.99,
            tta: Tta::FlipTranslate,
            clip_grad_norm: 5.0,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.85,
            nesterov: true,
            flip: FlipMode::Random,
            crop_padding: 2,
            weight_decay_on: DecayOn::Weights,
            ..Recipe::fast("vgg")
        };
        assert_eq!(got, want);
        assert_eq!(parse(&["--nesterov", "false"]).nesterov, Some(false));
        parse(&["--epochs", "30", "--milestones", "3,4"]).apply(&mut r);
        assert_eq!(r.milestones, [3, 4]);
    }

    #[test]
    fn help_shows_each_default_once_from_the_recipe() {
        let help = with_recipe_defaults(Flags::command()).render_long_help().to_string();
        // The help of one flag: from its name to the blank line before the next.
        let help_of = |flag: &str| -> String {
            let rest = help.split(&format!("  {flag} ")).nth(1).unwrap_or_else(|| panic!("{flag} in {help}"));
            // Words joined by single spaces: clap wraps long help lines.
            rest.split("\n\n").next().unwrap().split_whitespace().collect::<Vec<_>>().join(" ")
        };
        let defaults = [
            ("--lr", "0.003"),
            ("--beta1", "0.9"),
            ("--eps", "1e-8"),
            ("--epochs", "100; --recipe fast: 25"),
            ("--split-seed", "42"),
            ("--schedule", "multistep; --recipe fast: onecycle"),
            ("--recipe", "seed"),
        ];
        for (flag, default) in defaults {
            let text = help_of(flag);
            assert_eq!(text.matches("[default: ").count(), 1, "{flag}: {text}");
            assert!(text.contains(&format!("[default: {default}]")), "{flag}: {text}");
        }
        for flag in ["--milestones", "--limit-train", "--model"] {
            assert!(!help_of(flag).contains("[default: "), "{flag}: {}", help_of(flag));
        }
    }
}
