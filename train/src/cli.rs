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
pub enum Command {
    /// Export a model to ONNX (opset 17, BatchNorm folded, dropout removed) and check it
    /// against ONNX Runtime.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Model to export (see --list-models).
    #[arg(long, value_name = "NAME")]
    pub model: String,

    /// Where to write the .onnx file.
    #[arg(long, value_name = "FILE.onnx")]
    pub out: PathBuf,

    /// Weights to export (a `train` run's best.safetensors or last.safetensors). Without it,
    /// the seeded initial weights are exported (for speed benchmarks of the bare architecture).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// Seed of the initial weights when no checkpoint is given.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// ONNX Runtime library for the parity check (default: $ORT_DYLIB_PATH, then
    /// .ort/cpu/libonnxruntime.so.1.31.1 as fetched by scripts/setup.sh).
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,

    /// Write the file without comparing candle and ONNX Runtime logits (not recommended).
    #[arg(long)]
    pub skip_parity: bool,
}

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
