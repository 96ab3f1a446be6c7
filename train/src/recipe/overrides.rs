//! The command line's view of a [`Recipe`]: one optional flag per field, merged over the
//! recipe in [`RecipeOverrides::apply`]. The flags carry no defaults of their own; `--help`
//! shows the recipe's ([`with_recipe_defaults`]), so a default is declared once.

use super::Recipe;
use clap::{Arg, Args, Command};
use std::fmt::Display;

/// Flags that override recipe fields; a flag left out keeps the recipe's value. Each field's
/// name is the recipe field's (clap's argument id), its flag the kebab-case of it.
#[derive(Clone, Debug, Default, PartialEq, Args)]
pub struct RecipeOverrides {
    /// Epochs to train.
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Images per batch, in training and evaluation.
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// AdamW learning rate (before any milestone).
    #[arg(long)]
    pub lr: Option<f64>,

    /// AdamW decoupled weight decay (applied to every trainable parameter, as the seed does).
    #[arg(long)]
    pub weight_decay: Option<f64>,

    /// AdamW decay of the first moment (the gradient's running mean), in [0, 1).
    #[arg(long)]
    pub beta1: Option<f64>,

    /// AdamW decay of the second moment (the squared gradient's running mean), in [0, 1).
    #[arg(long)]
    pub beta2: Option<f64>,

    /// AdamW's term added to the root of the second moment, > 0.
    #[arg(long)]
    pub eps: Option<f64>,

    /// Epochs at which the learning rate is multiplied by --gamma (comma-separated). Default:
    /// 50% and 75% of --epochs (the seed's 50,75 for 100 epochs).
    #[arg(long, value_delimiter = ',', value_name = "E1,E2")]
    pub milestones: Option<Vec<usize>>,

    /// Factor applied to the learning rate at each milestone.
    #[arg(long)]
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
}

/// Recipe fields whose help explains their default instead of printing a value: the model
/// has none, and the milestones follow `--epochs`.
const DEFAULT_IN_PROSE: [&str; 2] = ["model", "milestones"];

impl RecipeOverrides {
    /// Merges the flags given over `recipe`. Without `--milestones`, a new `--epochs` moves
    /// the milestones to 50 % and 75 % of it, so a shortened schedule keeps the seed's shape.
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
        set(&mut recipe.beta1, &self.beta1);
        set(&mut recipe.beta2, &self.beta2);
        set(&mut recipe.eps, &self.eps);
        match (&self.milestones, self.epochs) {
            (Some(m), _) => recipe.milestones = m.clone(),
            (None, Some(epochs)) => recipe.milestones = Recipe::scaled_milestones(epochs),
            (None, None) => {}
        }
        set(&mut recipe.gamma, &self.gamma);
        set(&mut recipe.seed, &self.seed);
        set(&mut recipe.split_seed, &self.split_seed);
        recipe.limit_train = self.limit_train.or(recipe.limit_train);
        recipe.limit_eval = self.limit_eval.or(recipe.limit_eval);
    }
}

/// `cmd` (which flattens [`RecipeOverrides`]) with each recipe flag's help ending in the value
/// of [`Recipe::seed`]. Panics when a recipe field has no flag, which a test turns into a
/// failure: every field is settable from the command line.
pub fn with_recipe_defaults(mut cmd: Command) -> Command {
    let seed = serde_json::to_value(Recipe::seed("")).expect("a recipe serialises");
    for (field, value) in seed.as_object().expect("a recipe is a JSON object") {
        if DEFAULT_IN_PROSE.contains(&field.as_str()) || value.is_null() {
            continue;
        }
        cmd = cmd.mut_arg(field, |arg| show_default(arg, value));
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
        };
        assert_eq!(r, want);
        parse(&["--epochs", "30", "--milestones", "3,4"]).apply(&mut r);
        assert_eq!(r.milestones, [3, 4]);
    }

    #[test]
    fn help_shows_each_default_once_from_the_recipe() {
        let help = with_recipe_defaults(Flags::command()).render_long_help().to_string();
        // The help of one flag: from its name to the blank line before the next.
        let help_of = |flag: &str| -> String {
            let rest = help.split(&format!("  {flag} ")).nth(1).unwrap_or_else(|| panic!("{flag} in {help}"));
            rest.split("\n\n").next().unwrap().to_string()
        };
        for (flag, default) in [("--lr", "0.003"), ("--beta1", "0.9"), ("--eps", "1e-8"), ("--epochs", "100"), ("--split-seed", "42")] {
            let text = help_of(flag);
            assert_eq!(text.matches("[default: ").count(), 1, "{flag}: {text}");
            assert!(text.contains(&format!("[default: {default}]")), "{flag}: {text}");
        }
        for flag in ["--milestones", "--limit-train", "--model"] {
            assert!(!help_of(flag).contains("[default: "), "{flag}: {}", help_of(flag));
        }
    }
}
