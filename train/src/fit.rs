//! The training run: data → epochs (train, validate, checkpoint) → test, reports, export.

use crate::checkpoint::{self, TrainState};
use crate::data::{self, Cifar10, DownloadOptions, Loader, LoaderConfig, Records};
use crate::export::{check_parity, to_onnx_bytes};
use crate::metrics::{self, EpochMetrics};
use crate::optim::AdamW;
use crate::progress::{EpochProgress, Running};
use crate::recipe::Recipe;
use crate::report::{self, Confusion};
use crate::resident::ResidentData;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{loss::cross_entropy, ModuleT};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const GIT_COMMIT: &str = env!("CIFAR_GIT_COMMIT");
pub const SUMMARY: &str = "summary.json";
pub const RECIPE: &str = "recipe.json";
pub const ONNX: &str = "model.onnx";

/// Failures with their own exit status (see `train --help`).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "{} already holds a run; pass --resume to continue it, or choose another --out (nothing was overwritten)",
        dir.display()
    )]
    RunExists { dir: PathBuf },
    #[error("cannot resume {}: the run was started with another recipe ({})", dir.display(), conflicts.join("; "))]
    ResumeMismatch { dir: PathBuf, conflicts: Vec<String> },
    #[error(
        "training diverged: the loss became {loss} at epoch {epoch}, batch {batch}; stopped. \
         The last good checkpoint (end of epoch {last_good}) is kept; try a lower --lr"
    )]
    Diverged { epoch: usize, batch: usize, loss: f32, last_good: usize },
}

pub struct TrainOptions {
    pub recipe: Recipe,
    pub data_dir: PathBuf,
    pub download: bool,
    pub device: Device,
    pub device_name: String,
    pub out: PathBuf,
    pub resume: bool,
    pub ort_lib: Option<PathBuf>,
    pub quiet: bool,
    /// Mixed precision: bf16 compute on f32 master weights.
    pub bf16: bool,
    /// Keep the training set on the device and augment it there ([`ResidentData`]).
    pub data_on_device: bool,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub model: String,
    pub params: usize,
    pub macs_per_image: u64,
    pub seed_gmacs_batch128: f64,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    pub best_val_acc: Option<f64>,
    pub final_val_acc: Option<f64>,
    pub test_acc: f64,
    pub test_loss: f64,
    pub test_images: usize,
    /// Training seconds summed over every epoch, across resumes.
    pub train_seconds: f64,
    /// Wall-clock seconds of this invocation only: a resumed run counts from its resume.
    pub wall_seconds: f64,
    pub mean_train_img_s: f64,
    pub device: String,
    pub precision: String,
    pub data_on_device: bool,
    pub threads: usize,
    pub seed: u64,
    pub git_commit: String,
    pub onnx: Option<String>,
    pub onnx_parity_max_abs_diff: Option<f32>,
    pub recipe: Recipe,
}

/// The folder of a run: `<out>/<model>`.
pub fn run_dir(out: &Path, model: &str) -> PathBuf {
    out.join(model)
}

struct Data {
    classes: Vec<String>,
    train: Loader,
    val: Loader,
    test: Loader,
}

fn load_data(opts: &TrainOptions) -> Result<Data> {
    let r = &opts.recipe;
    let download = opts.download.then(DownloadOptions::default);
    data::ensure(&opts.data_dir, download.as_ref())?;
    let set = Cifar10::load(&opts.data_dir)?;
    let split = data::split_train_val(set.train.len(), data::VAL_SIZE, r.split_seed)?;
    let (mut train_idx, mut val_idx) = (split.train, split.val);
    let mut test_idx: Vec<u32> = (0..set.test.len() as u32).collect();
    if let Some(n) = r.limit_train {
        train_idx.truncate(n);
    }
    if let Some(n) = r.limit_eval {
        val_idx.truncate(n);
        test_idx.truncate(n);
    }
    let train_records: Arc<Records> = Arc::new(set.train);
    let loader = |records: &Arc<Records>, idx: Vec<u32>, cfg: LoaderConfig| Loader::new(records.clone(), idx, cfg);
    let train_cfg = LoaderConfig { batch_size: r.batch_size, ..LoaderConfig::train(r.seed) };
    let eval_cfg = LoaderConfig { batch_size: r.batch_size, ..LoaderConfig::eval() };
    Ok(Data {
        classes: set.classes,
        train: loader(&train_records, train_idx, train_cfg)?,
        val: loader(&train_records, val_idx, eval_cfg.clone())?,
        test: loader(&Arc::new(set.test), test_idx, eval_cfg)?,
    })
}

/// The batch as tensors on `device`; the image buffer moves into the tensor without a copy.
fn batch_tensors(b: &mut data::Batch, device: &Device) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_vec(std::mem::take(&mut b.images), &b.shape()[..], &Device::Cpu)?.to_device(device)?;
    let y = Tensor::from_vec(b.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), b.len, &Device::Cpu)?.to_device(device)?;
    Ok((x, y))
}

/// How many rows of `logits` pick their label (counted on the device: one scalar comes back).
fn correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    Ok(logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize)
}

/// Loss and accuracy over a whole loader in evaluation mode; fills `confusion` when given.
fn evaluate(net: &Network, loader: &Loader, mut confusion: Option<&mut Confusion>) -> Result<(f64, f64)> {
    let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
    for mut batch in loader.epoch(0) {
        let (x, y) = batch_tensors(&mut batch, net.device())?;
        let logits = net.forward_t(&x, false)?;
        let loss = cross_entropy(&logits, &y)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let pred = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (p, &t) in pred.iter().zip(&batch.labels) {
            right += (*p == t as u32) as usize;
            if let Some(c) = confusion.as_deref_mut() {
                c.add(t as usize, *p as usize);
            }
        }
        loss_sum += loss * batch.len as f64;
        seen += batch.len;
    }
    let seen = seen.max(1) as f64;
    Ok((loss_sum / seen, right as f64 / seen))
}

fn existing_run(dir: &Path) -> bool {
    [checkpoint::RESUME, checkpoint::STATE, checkpoint::LAST, metrics::JSONL, SUMMARY, RECIPE]
        .iter()
        .any(|f| dir.join(f).exists())
}

/// Trains (or resumes) a run and writes every artifact into its folder.
pub fn train(opts: TrainOptions) -> Result<Summary> {
    let wall = Instant::now();
    let recipe = opts.recipe.clone();
    let dir = run_dir(&opts.out, &recipe.model);
    let graph = cifar_models::build(&recipe.model)?;
    let counts = cifar_models::count(&graph);

    // Refuse to touch another run before anything is written.
    let resumed = if opts.resume && dir.join(checkpoint::RESUME).exists() {
        let r = checkpoint::load_resume(&dir)?;
        let conflicts = recipe.resume_conflicts(&r.state.recipe);
        if !conflicts.is_empty() {
            return Err(TrainError::ResumeMismatch { dir, conflicts }.into());
        }
        Some(r)
    } else if existing_run(&dir) && !opts.resume {
        return Err(TrainError::RunExists { dir }.into());
    } else {
        None
    };

    let data = load_data(&opts)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    checkpoint::write_atomically(&dir.join(RECIPE), serde_json::to_string_pretty(&recipe)?.as_bytes())?;

    let mut net = Network::new(graph, recipe.seed, DType::F32, &opts.device)?;
    if opts.bf16 {
        net.set_compute_dtype(DType::BF16)?;
    }
    let resident = if opts.data_on_device {
        let t = Instant::now();
        let r = ResidentData::upload(data.train.records(), data.train.normalizer(), &opts.device)?;
        tracing::info!("training set on {} ({:.1}s to upload)", opts.device_name, t.elapsed().as_secs_f64());
        Some(r)
    } else {
        None
    };
    let mut opt = AdamW::new(net.named_trainable(), recipe.beta1, recipe.beta2, recipe.eps, recipe.weight_decay)?;
    let mut state = TrainState {
        recipe: recipe.clone(),
        epochs_done: 0,
        optimizer_step: 0,
        dropout: net.dropout_state(),
        best_val_acc: None,
        best_epoch: None,
        train_seconds: 0.0,
        history: Vec::new(),
        git_commit: GIT_COMMIT.to_string(),
    };
    if let Some(r) = resumed {
        net.load(&r.model)?;
        opt.restore(&r.moments, r.state.optimizer_step)?;
        net.restore_dropout_state(r.state.dropout);
        state = TrainState { recipe: recipe.clone(), git_commit: GIT_COMMIT.to_string(), ..r.state };
        tracing::info!("resuming {} after epoch {} of {}", dir.display(), state.epochs_done, recipe.epochs);
        // Drop anything written for an epoch that was not committed.
        metrics::write(&dir, &state.history)?;
    }

    tracing::info!(
        "{}: {} params, {:.2} MMACs/image; {} train / {} val / {} test images; device {}, {} threads",
        recipe.model,
        counts.params,
        counts.macs_per_image as f64 / 1e6,
        data.train.len(),
        data.val.len(),
        data.test.len(),
        opts.device_name,
        rayon::current_num_threads()
    );

    let mut warned_single = false;
    for epoch in state.epochs_done..recipe.epochs {
        let lr = recipe.lr_at(epoch);
        let started = Instant::now();
        let label = format!("epoch {}/{}", epoch + 1, recipe.epochs);
        let mut progress = EpochProgress::new(label, data.train.batches(), opts.quiet);
        let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
        // (index, images, labels) on the device, from the host loader or the resident set.
        let batches: Box<dyn Iterator<Item = Result<(usize, Tensor, Tensor)>>> = match &resident {
            Some(r) => Box::new(data.train.plans_from(epoch as u64, 0).map(|p| {
                let (x, y) = r.batch(&p)?;
                Ok((p.index, x, y))
            })),
            None => Box::new(data.train.epoch(epoch as u64).map(|mut b| {
                let (x, y) = batch_tensors(&mut b, &opts.device)?;
                Ok((b.index, x, y))
            })),
        };
        for item in batches {
            let (index, x, y) = item?;
            let len = x.dim(0)?;
            // BatchNorm cannot take batch statistics of one image at 1x1 (nor can PyTorch).
            if len < 2 {
                if !warned_single {
                    tracing::warn!("skipping a final training batch of one image");
                    warned_single = true;
                }
                continue;
            }
            let logits = net.forward_t(&x, true)?;
            let loss = cross_entropy(&logits, &y)?;
            let loss_value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Err(TrainError::Diverged { epoch: epoch + 1, batch: index, loss: loss_value, last_good: state.epochs_done }.into());
            }
            let grads = loss.backward()?;
            opt.step(&grads, lr)?;
            right += correct(&logits, &y)?;
            loss_sum += loss_value as f64 * len as f64;
            seen += len;
            let running = Running { loss: loss_sum / seen as f64, acc: right as f64 / seen as f64, lr };
            progress.batch_done(len, &running, opts.quiet);
        }
        progress.finish();
        let train_img_s = progress.img_per_s();
        let (val_loss, val_acc) = evaluate(&net, &data.val, None)?;
        let m = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: right as f64 / seen.max(1) as f64,
            val_loss,
            val_acc,
            lr,
            epoch_seconds: started.elapsed().as_secs_f64(),
            train_img_s,
            train_images: seen,
        };
        if !opts.quiet {
            eprintln!(
                "epoch {}/{}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4} | lr {:.1e} | {:.1}s, {:.0} img/s",
                m.epoch, recipe.epochs, m.train_loss, m.train_acc, m.val_loss, m.val_acc, lr, m.epoch_seconds, m.train_img_s
            );
        }
        // Commit the epoch: best (if improved), last, then the resume point.
        let tensors = net.named_tensors();
        if state.best_val_acc.is_none_or(|b| val_acc > b) {
            state.best_val_acc = Some(val_acc);
            state.best_epoch = Some(epoch + 1);
            checkpoint::save_model(&dir.join(checkpoint::BEST), &tensors)?;
        }
        checkpoint::save_model(&dir.join(checkpoint::LAST), &tensors)?;
        state.epochs_done = epoch + 1;
        state.optimizer_step = opt.step_count();
        state.dropout = net.dropout_state();
        state.train_seconds += m.epoch_seconds;
        state.history.push(m);
        checkpoint::save_resume(&dir, &tensors, &opt.moments(), &state)?;
        metrics::write(&dir, &state.history)?;
        report::draw_curves(&dir.join(report::CURVES), &recipe.model, &state.history)?;
    }

    finish(&opts, &dir, &mut net, &data, &state, &counts, wall)
}

/// Test accuracy of the best checkpoint, the confusion matrix, the ONNX export and the summary.
fn finish(
    opts: &TrainOptions,
    dir: &Path,
    net: &mut Network,
    data: &Data,
    state: &TrainState,
    counts: &cifar_models::Counts,
    wall: Instant,
) -> Result<Summary> {
    let recipe = &state.recipe;
    let best = dir.join(checkpoint::BEST);
    if best.exists() {
        net.load(&candle_core::safetensors::load(&best, &Device::Cpu)?)?;
    }
    let mut confusion = Confusion::new(data.classes.clone());
    let (test_loss, test_acc) = evaluate(net, &data.test, Some(&mut confusion))?;
    confusion.finish();
    report::draw_confusion(dir, &recipe.model, &confusion)?;

    let mut meta = ModelMetadata::for_model(&recipe.model)?;
    meta.classes = data.classes.clone();
    meta.val_acc = state.best_val_acc;
    meta.test_acc = Some(test_acc);
    meta.epochs = Some(state.epochs_done as u64);
    meta.recipe = Some(serde_json::to_value(recipe)?);
    meta.source_commit = Some(GIT_COMMIT.to_string());
    let cpu_net;
    let export_net = if net.device().is_cpu() && net.compute_dtype() == net.dtype() {
        &*net
    } else {
        // The exporter and the parity check read weights on the CPU.
        cpu_net = Network::new(net.graph().clone(), recipe.seed, DType::F32, &Device::Cpu)?;
        cpu_net.load(&net.named_tensors().into_iter().collect())?;
        &cpu_net
    };
    let bytes = to_onnx_bytes(export_net, &meta)?;
    let parity = match cifar_onnxrt::init(opts.ort_lib.as_deref(), cifar_onnxrt::Flavor::Cpu) {
        Ok((_, env)) => {
            let p = check_parity(&env, export_net, &bytes, 8)?;
            anyhow::ensure!(p.ok(), "ONNX export failed its parity check (max |logit difference| {:e}); model.onnx not written", p.max_abs_diff);
            Some(p.max_abs_diff)
        }
        Err(e) => {
            tracing::warn!("model.onnx written without a parity check: {e}");
            None
        }
    };
    checkpoint::write_atomically(&dir.join(ONNX), &bytes)?;

    let mean_img_s = if state.history.is_empty() {
        0.0
    } else {
        state.history.iter().map(|m| m.train_img_s).sum::<f64>() / state.history.len() as f64
    };
    let summary = Summary {
        model: recipe.model.clone(),
        params: counts.params,
        macs_per_image: counts.macs_per_image,
        seed_gmacs_batch128: counts.seed_gmacs_batch128(),
        epochs: state.epochs_done,
        best_epoch: state.best_epoch,
        best_val_acc: state.best_val_acc,
        final_val_acc: state.history.last().map(|m| m.val_acc),
        test_acc,
        test_loss,
        test_images: data.test.len(),
        train_seconds: state.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        mean_train_img_s: mean_img_s,
        device: opts.device_name.clone(),
        precision: if opts.bf16 { "bf16".into() } else { "f32".into() },
        data_on_device: opts.data_on_device,
        threads: rayon::current_num_threads(),
        seed: recipe.seed,
        git_commit: GIT_COMMIT.to_string(),
        onnx: Some(ONNX.to_string()),
        onnx_parity_max_abs_diff: parity,
        recipe: recipe.clone(),
    };
    checkpoint::write_atomically(&dir.join(SUMMARY), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    Ok(summary)
}
