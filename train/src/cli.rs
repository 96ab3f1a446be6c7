//! Command-line interface of `train`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Train, evaluate and export the seed study's CIFAR-10 models.
///
/// Exit status: 0 success; 1 the job failed (bad data, diverged training, I/O); 2 bad usage
/// (unknown flag or model name).
#[derive(Debug, Parser)]
#[command(name = "train", version, args_conflicts_with_subcommands = true, arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model to train or describe (see --list-models).
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,

    /// Print the seven models: params, MACs per image, the seed's GMACs and accuracies.
    #[arg(long)]
    pub list_models: bool,

    /// With --list-models: print a JSON array instead of a table.
    #[arg(long, requires = "list_models")]
    pub json: bool,

    /// With --model: print the per-layer table (output shapes, params, MACs) and exit.
    #[arg(long, requires = "model")]
    pub summary: bool,

    /// Directory holding the CIFAR-10 binary files (or cifar-10-binary.tar.gz).
    #[arg(long, value_name = "DIR", env = "CIFAR10_DIR", default_value = "data/cifar-10-batches-bin")]
    pub data_dir: PathBuf,
}
