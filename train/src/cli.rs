//! Command-line interface of `train`.

use cifar_train::quantize::Method;
use cifar_train::recipe::{show_default, with_recipe_defaults, Recipe, RecipeOverrides, Tta};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

impl Cli {
    /// Parses the command line (exiting on bad usage, as clap does); `--help` shows the
    /// recipe's defaults, taken from [`Recipe::seed`] rather than declared here again.
    pub fn parse_with_recipe_defaults() -> Self {
        let seed = Recipe::seed("").seed;
        let cmd = with_recipe_defaults(Self::command()).mut_subcommand("export", |c| c.mut_arg("seed", |a| show_default(a, seed)));
        Self::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
    }
}

/// Train, evaluate and export the seed study's CIFAR-10 models.
///
/// `train --model resnet-light --data-dir DIR` runs the seed recipe (AdamW 3e-3, weight decay
/// 0.1, batch 128, 100 epochs, learning rate x0.1 at epochs 50 and 75) and writes everything
/// into OUT/MODEL/: recipe.json, metrics.jsonl/.csv, curves.svg, last/best.safetensors,
/// resume.safetensors + state.json, confusion.svg/.json, summary.json and model.onnx.
///
/// Exit status: 0 success; 1 the job failed (data, I/O, parity); 2 bad usage (unknown flag or
/// model name); 3 training diverged (NaN/inf loss; the last good checkpoint is kept); 4 the run
/// folder holds another run (pass --resume) or a run with another recipe.
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
    /// Quantize an exported f32 model to int8 (QDQ: int8 weights, uint8 activations),
    /// calibrated on training images and measured on the test set.
    Quantize(QuantizeArgs),
    /// Write a synthetic CIFAR-10 in the official binary layout (class-coloured patterns a
    /// model can learn): for demos and smoke tests where the real set is not at hand.
    Synthetic(SyntheticArgs),
    /// Time training steps as a run takes them (training-mode forward, loss, backward, AdamW)
    /// on one fixed synthetic batch after warm-up steps: img/s per model on this device, one
    /// JSON line each on stdout, with every step's loss (finite and falling when the step learns).
    Speed(SpeedArgs),
}

#[derive(Debug, Args)]
pub struct SpeedArgs {
    /// Comma-separated model names, or all (the seven).
    #[arg(long, value_name = "NAMES", default_value = "all")]
    pub models: String,

    /// auto (CUDA when built with --features cuda and a GPU is present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// f32, or bf16 (mixed precision as `train --precision bf16`; CUDA only).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,

    /// Building blocks, as for training: fast or portable.
    #[arg(long, value_enum, default_value_t = KernelChoice::Fast)]
    pub kernels: KernelChoice,

    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,

    /// Timed steps per model.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,

    /// Untimed steps first (kernel compilation, cuDNN's algorithm search, allocator growth).
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,

    /// CPU threads for compute (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The f32 ONNX file (written by `train export` or a training run).
    #[arg(long, value_name = "IN.onnx")]
    pub onnx: PathBuf,

    /// Where to write the int8 ONNX file (only when it passes --max-accuracy-drop).
    #[arg(long, value_name = "OUT.onnx")]
    pub out: PathBuf,

    /// Folder with training images (any of data_batch_1..5.bin; calibration reads only these)
    /// and, for the accuracy check, test_batch.bin.
    #[arg(long, value_name = "DIR", env = "CIFAR10_DIR")]
    pub data_dir: PathBuf,

    /// Training images to calibrate activation ranges on, spread over the training files.
    #[arg(long, default_value_t = 1000)]
    pub calibration_images: usize,

    /// Activation range: minmax (observed extremes), percentile (99.999 % of |x|) or entropy
    /// (least KL divergence).
    #[arg(long, value_enum, default_value_t = Method::default())]
    pub method: Method,

    /// One scale per weight tensor instead of one per output channel.
    #[arg(long)]
    pub per_tensor_weights: bool,

    /// Weights on the whole int8 grid, [-127, 127], instead of 7 bits, [-63, 63]. One bit
    /// finer, but exact only on CPUs with VNNI or AMX: without them ONNX Runtime's kernels
    /// saturate sums of u8×s8 products and accuracy drops (4 points on resnet-heavy, Zen 3).
    #[arg(long)]
    pub full_weight_range: bool,

    /// Refuse (exit 1, nothing written) when int8 test accuracy is more than this many points
    /// below f32's; `off` writes without measuring when the folder has no test_batch.bin.
    #[arg(long, value_name = "POINTS|off", default_value = "1.0", value_parser = parse_max_drop)]
    pub max_accuracy_drop: MaxDrop,

    /// Keep the first convolution in f32.
    #[arg(long)]
    pub f32_first_conv: bool,

    /// Keep the final classifier (the Gemm producing the logits) in f32.
    #[arg(long)]
    pub f32_classifier: bool,

    /// The training run (or shipped `model-zoo/NAME/` folder) IN.onnx came from: also write
    /// the folder named after OUT (OUT without `.onnx`, e.g. `model-zoo/NAME-int8/`) with the
    /// run's summary.json, carrying the int8 model's own test accuracy and loss, and its
    /// recipe.json, metrics.csv and curves.svg. Needs test_batch.bin in the data folder.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,

    /// ONNX Runtime library (default: $ORT_DYLIB_PATH, then .ort/cpu/).
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
}

/// `--max-accuracy-drop`: points, or off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaxDrop(pub Option<f64>);

fn parse_max_drop(s: &str) -> Result<MaxDrop, String> {
    if s == "off" {
        return Ok(MaxDrop(None));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(MaxDrop(Some(v))),
        _ => Err(format!("`{s}`: expected points (a number ≥ 0) or off")),
    }
}

#[derive(Debug, Args)]
pub struct SyntheticArgs {
    /// Folder to write data_batch_1..5.bin, test_batch.bin and batches.meta.txt into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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

    /// Seed of the initial weights when no checkpoint is given (the recipe's).
    #[arg(long)]
    pub seed: Option<u64>,

    /// ONNX Runtime library for the parity check (default: $ORT_DYLIB_PATH, then
    /// .ort/cpu/libonnxruntime.so.1.31.1 as fetched by scripts/setup.sh).
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,

    /// Write the file without comparing candle and ONNX Runtime logits (not recommended).
    #[arg(long)]
    pub skip_parity: bool,

    /// Test-time augmentation built into the graph: none, flip or flip-translate (the logits
    /// are the mean over the views; the metadata names it and counts every view's MACs).
    /// Default: the run's own (its summary.json beside --checkpoint), else none.
    #[arg(long)]
    pub tta: Option<Tta>,
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

    /// Directory holding the CIFAR-10 binary files (data_batch_1.bin … test_batch.bin), their
    /// cifar-10-batches-bin/ subfolder, or cifar-10-binary.tar.gz.
    #[arg(long, value_name = "DIR", env = "CIFAR10_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Download the official archive into --data-dir when no data is there (MD5-checked).
    #[arg(long)]
    pub download: bool,

    // The recipe: each flag overrides one field of the seed recipe.
    #[command(flatten)]
    pub recipe: RecipeOverrides,

    /// auto (CUDA when built with --features cuda and a GPU is present), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,

    /// Compute precision: f32, or bf16 (mixed: convs and linears in bf16 on f32 master
    /// weights; batch norms, loss and optimizer in f32). bf16 needs CUDA (Ampere or newer):
    /// candle's CPU backend cannot multiply bf16.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    pub precision: Precision,

    /// Where training batches are made: host (CPU worker threads, then a copy per batch),
    /// device (the training set uploaded once and augmented on the device; the same batches
    /// bit for bit) or auto (device on CUDA, host on CPU).
    #[arg(long, value_enum, default_value_t = DataPlacement::Auto)]
    pub data_placement: DataPlacement,

    /// Building blocks: fast (this project's CPU kernels where they apply, candle's ops
    /// elsewhere) or portable (candle's generic ops everywhere, as on CUDA: slow on CPU, for
    /// checking that path without a GPU).
    #[arg(long, value_enum, default_value_t = KernelChoice::Fast)]
    pub kernels: KernelChoice,

    /// CPU threads for compute (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Folder that holds run folders; this run goes to OUT/MODEL.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,

    /// Continue the run in OUT/MODEL from its last completed epoch (same recipe; --epochs may grow).
    #[arg(long)]
    pub resume: bool,

    /// ONNX Runtime library for the parity check of the final export.
    #[arg(long, value_name = "PATH", env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,

    /// No progress bars or per-epoch lines (errors and the final summary only).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    F32,
    Bf16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    Fast,
    Portable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataPlacement {
    Auto,
    Host,
    Device,
}
