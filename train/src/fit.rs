//! The training run: data → epochs (train, validate, commit into the [`RunFolder`]) → test,
//! reports, export.

use crate::checkpoint::{Resume, TrainState};
use crate::ema::Ema;
use crate::data::{self, Cifar10, DataError, DownloadOptions, Loader, LoaderConfig, Records};
use crate::error::TrainError;
use crate::export::ParityCheck;
use crate::files::FileError;
use crate::metrics::EpochMetrics;
use crate::optim::Optimizer;
use crate::progress::{EpochProgress, Running};
use crate::recipe::{Recipe, Tta};
use crate::report::Confusion;
use crate::resident::ResidentData;
use crate::run_folder::RunFolder;
use crate::summary::Summary;
use crate::GIT_COMMIT;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::ModuleT;
use cifar_models::nn::{Kernels, Network};
use cifar_models::spec::Graph;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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
    /// Which building blocks the network runs ([`Kernels::Portable`]: the CUDA path, on any
    /// device).
    pub kernels: Kernels,
    /// Keep the training set on the device and augment it there ([`ResidentData`]).
    pub data_on_device: bool,
}

/// One epoch's training pass. Accuracy is a fraction in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    pub mean_loss: f64,
    pub accuracy: f64,
    pub images: usize,
    pub images_per_s: f64,
}

struct Data {
    classes: Vec<String>,
    train: Loader,
    val: Loader,
    test: Loader,
}

fn load_data(opts: &TrainOptions) -> Result<Data, DataError> {
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
    let train_cfg = LoaderConfig { batch_size: r.batch_size, flip: r.flip, crop_padding: r.crop_padding, ..LoaderConfig::train(r.seed) };
    let eval_cfg = LoaderConfig { batch_size: r.batch_size, ..LoaderConfig::eval() };
    Ok(Data {
        classes: set.classes,
        train: loader(&train_records, train_idx, train_cfg)?,
        val: loader(&train_records, val_idx, eval_cfg.clone())?,
        test: loader(&Arc::new(set.test), test_idx, eval_cfg)?,
    })
}

/// The batch as tensors on `device`; the image buffer moves into the tensor without a copy.
fn batch_tensors(b: &mut data::Batch, device: &Device) -> candle_core::Result<(Tensor, Tensor)> {
    let x = Tensor::from_vec(std::mem::take(&mut b.images), &b.shape()[..], &Device::Cpu)?.to_device(device)?;
    let y = Tensor::from_vec(b.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(), b.len, &Device::Cpu)?.to_device(device)?;
    Ok((x, y))
}

/// How many rows of `logits` pick their label (counted on the device: one scalar comes back).
fn correct(logits: &Tensor, labels: &Tensor) -> candle_core::Result<usize> {
    Ok(logits.argmax(D::Minus1)?.eq(labels)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize)
}

/// Loss and accuracy over a whole loader in evaluation mode (logits averaged over the views
/// of `tta`); fills `confusion` when given.
fn evaluate(net: &Network, loader: &Loader, tta: Tta, mut confusion: Option<&mut Confusion>) -> candle_core::Result<(f64, f64)> {
    let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
    for mut batch in loader.epoch(0) {
        let (x, y) = batch_tensors(&mut batch, net.device())?;
        let logits = crate::tta::logits(net, &x, tta)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
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

/// What learns: the network, its optimizer, the EMA of its weights when the recipe keeps one,
/// and the training set when it lives on the device.
struct Learner {
    net: Network,
    opt: Optimizer,
    ema: Option<Ema>,
    resident: Option<ResidentData>,
    /// The one-image-batch warning is given once per run.
    warned_single_image: bool,
}

impl Learner {
    fn new(graph: Graph, opts: &TrainOptions, train: &Loader) -> Result<Self, TrainError> {
        let r = &opts.recipe;
        let mut net = Network::with_kernels(graph, r.seed, DType::F32, &opts.device, opts.kernels)?;
        if opts.bf16 {
            net.set_compute_dtype(DType::BF16)?;
        }
        let resident = if opts.data_on_device {
            let t = Instant::now();
            let resident = ResidentData::upload(train.records(), train.normalizer(), &opts.device)?;
            tracing::info!("training set on {} ({:.1}s to upload)", opts.device_name, t.elapsed().as_secs_f64());
            Some(resident)
        } else {
            None
        };
        let opt = Optimizer::for_recipe(net.named_trainable(), r)?;
        let ema = (r.ema_decay > 0.0).then(|| Ema::new(&net.named_tensors(), r.ema_decay)).transpose()?;
        Ok(Self { net, opt, ema, resident, warned_single_image: false })
    }

    /// Continues from a resume point (of `dir`) with `recipe`, whose epochs may have grown.
    fn resume(&mut self, point: Resume, dir: &Path, recipe: &Recipe) -> Result<TrainState, FileError> {
        let path = dir.join(crate::checkpoint::RESUME);
        let bad = |e: candle_core::Error| FileError::decode(&path, "resume point of this model", e);
        self.net.load(&point.model).map_err(bad)?;
        self.opt.restore(&point.moments, point.state.optimizer_step).map_err(bad)?;
        if let Some(ema) = self.ema.as_mut() {
            ema.restore(&point.ema, point.state.ema_updates).map_err(bad)?;
        }
        self.net.restore_dropout_state(point.state.dropout);
        tracing::info!("resuming {} after epoch {} of {}", dir.display(), point.state.epochs_done, recipe.epochs);
        Ok(TrainState { recipe: recipe.clone(), git_commit: GIT_COMMIT.to_string(), ..point.state })
    }

}

/// An epoch's training batches as (index, images, labels) on `device`, from the host loader
/// or made on the device from the resident set.
fn epoch_batches<'a>(
    resident: Option<&'a ResidentData>,
    device: Device,
    loader: &'a Loader,
    epoch: usize,
) -> Box<dyn Iterator<Item = candle_core::Result<(usize, Tensor, Tensor)>> + 'a> {
    match resident {
        Some(r) => Box::new(loader.plans_from(epoch as u64, 0).map(|p| {
            let (x, y) = r.batch(&p)?;
            Ok((p.index, x, y))
        })),
        None => Box::new(loader.epoch(epoch as u64).map(move |mut b| {
            let (x, y) = batch_tensors(&mut b, &device)?;
            Ok((b.index, x, y))
        })),
    }
}

/// One training step as every run takes it: training-mode forward, the recipe's loss, and,
/// when that loss is finite, backward and the optimizer's update at `lr` (a non-finite loss
/// leaves the weights as they were). Returns the logits and the loss, read back from the
/// device, which also waits for the step to finish there.
pub(crate) fn train_step(
    net: &Network,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    lr: f64,
    recipe: &Recipe,
) -> candle_core::Result<(Tensor, f32)> {
    let logits = net.forward_t(x, true)?;
    let loss = crate::loss::cross_entropy(&logits, y, recipe.label_smoothing)?;
    let loss_value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
    if loss_value.is_finite() {
        opt.step(&loss.backward()?, lr, recipe.clip_grad_norm)?;
    }
    Ok((logits, loss_value))
}

/// Trains one epoch, the one after `state`'s last committed one (whose number a divergence
/// reports as the last good checkpoint).
fn train_epoch(learner: &mut Learner, loader: &Loader, state: &TrainState, quiet: bool) -> Result<EpochStats, TrainError> {
    let (epoch, recipe) = (state.epochs_done, &state.recipe);
    let steps_per_epoch = loader.batches();
    let mut progress = EpochProgress::new(format!("epoch {}/{}", epoch + 1, recipe.epochs), loader.batches(), quiet);
    let (mut loss_sum, mut right, mut seen) = (0.0f64, 0usize, 0usize);
    for item in epoch_batches(learner.resident.as_ref(), learner.net.device().clone(), loader, epoch) {
        let (index, x, y) = item?;
        let len = x.dim(0)?;
        // BatchNorm cannot take batch statistics of one image at 1x1 (nor can PyTorch).
        if len < 2 {
            if !learner.warned_single_image {
                tracing::warn!("skipping a final training batch of one image");
                learner.warned_single_image = true;
            }
            continue;
        }
        let lr = recipe.lr_at_step((epoch * steps_per_epoch + index) as u64, steps_per_epoch);
        let (logits, loss_value) = train_step(&learner.net, &mut learner.opt, &x, &y, lr, recipe)?;
        if !loss_value.is_finite() {
            return Err(TrainError::Diverged { epoch: epoch + 1, batch: index, loss: loss_value, last_good: epoch });
        }
        if let Some(ema) = learner.ema.as_mut() {
            ema.update(&learner.net.named_tensors())?;
        }
        right += correct(&logits, &y)?;
        loss_sum += loss_value as f64 * len as f64;
        seen += len;
        progress.batch_done(len, &Running { loss: loss_sum / seen as f64, acc: right as f64 / seen as f64, lr }, quiet);
    }
    progress.finish();
    let n = seen.max(1) as f64;
    Ok(EpochStats { mean_loss: loss_sum / n, accuracy: right as f64 / n, images: seen, images_per_s: progress.img_per_s() })
}

/// Trains (or resumes) a run and writes every artifact into its folder.
pub fn train(opts: TrainOptions) -> Result<Summary, TrainError> {
    let wall = Instant::now();
    let recipe = &opts.recipe;
    let graph = cifar_models::build(&recipe.model)?;
    // Refuse to touch another run before anything is written.
    let (folder, resume_point) = RunFolder::open(&opts.out, recipe, opts.resume)?;
    let data = load_data(&opts)?;
    let mut learner = Learner::new(graph, &opts, &data.train)?;
    let resumed = resume_point.is_some();
    let mut state = match resume_point {
        Some(point) => learner.resume(point, folder.dir(), recipe)?,
        None => TrainState::start(recipe.clone(), learner.net.dropout_state(), GIT_COMMIT),
    };
    folder.start(recipe, resumed.then_some(&state.history[..]))?;
    log_start(&opts, &learner.net, &data);
    let first_epoch = state.epochs_done;
    while state.epochs_done < recipe.epochs {
        let m = run_epoch(&mut learner, &data, &state, opts.quiet)?;
        if state.epochs_done == first_epoch && !opts.quiet {
            log_projection(&m, recipe.epochs - m.epoch);
        }
        folder.commit_epoch(&learner.net, &learner.opt, learner.ema.as_ref(), &mut state, m)?;
    }
    finish(&opts, &folder, &learner.net, &data, &state, wall)
}

fn log_start(opts: &TrainOptions, net: &Network, data: &Data) {
    let counts = cifar_models::count(net.graph());
    tracing::info!(
        "{}: {} params, {:.2} MMACs/image; {} train / {} val / {} test images; device {}, {} threads",
        opts.recipe.model,
        counts.params,
        counts.macs_per_image as f64 / 1e6,
        data.train.len(),
        data.val.len(),
        data.test.len(),
        opts.device_name,
        rayon::current_num_threads()
    );
}

/// After the first epoch this invocation runs: how long the rest will take, at its pace.
fn log_projection(m: &EpochMetrics, epochs_left: usize) {
    let seconds = m.epoch_seconds * epochs_left as f64;
    let finish = chrono::Local::now() + chrono::Duration::seconds(seconds as i64);
    eprintln!(
        "projected: {epochs_left} more epochs at {:.0} s each = {} (done about {})",
        m.epoch_seconds,
        crate::progress::human_duration(seconds),
        finish.format("%Y-%m-%d %H:%M")
    );
}

/// The next epoch: training, then validation (of the EMA too, when there is one); its
/// metrics, printed unless `quiet`.
fn run_epoch(learner: &mut Learner, data: &Data, state: &TrainState, quiet: bool) -> Result<EpochMetrics, TrainError> {
    let started = Instant::now();
    let epoch = state.epochs_done;
    let tta = state.recipe.tta;
    let train = train_epoch(learner, &data.train, state, quiet)?;
    let (val_loss, val_acc_frac) = evaluate(&learner.net, &data.val, tta, None)?;
    let ema_val = match &learner.ema {
        Some(ema) => Some(ema.with_weights(&learner.net, |net| evaluate(net, &data.val, tta, None))?),
        None => None,
    };
    let m = EpochMetrics {
        epoch: epoch + 1,
        train_loss: train.mean_loss,
        train_acc_frac: train.accuracy,
        val_loss,
        val_acc_frac,
        val_loss_ema: ema_val.map(|v| v.0),
        val_acc_ema_frac: ema_val.map(|v| v.1),
        lr: state.recipe.lr_at_step((epoch * data.train.batches()) as u64, data.train.batches()),
        epoch_seconds: started.elapsed().as_secs_f64(),
        train_img_s: train.images_per_s,
        train_images: train.images,
    };
    if !quiet {
        let ema = m.val_acc_ema_frac.map_or(String::new(), |a| format!(" (EMA {a:.4})"));
        eprintln!(
            "epoch {}/{}: train loss {:.4} acc {:.4} | val loss {:.4} acc {:.4}{ema} | lr {:.1e} | {:.1}s, {:.0} img/s",
            m.epoch, state.recipe.epochs, m.train_loss, m.train_acc_frac, m.val_loss, m.val_acc_frac, m.lr, m.epoch_seconds, m.train_img_s
        );
    }
    Ok(m)
}

/// The best checkpoint on the test set, then the run folder's last artifacts.
fn finish(opts: &TrainOptions, folder: &RunFolder, net: &Network, data: &Data, state: &TrainState, wall: Instant) -> Result<Summary, TrainError> {
    folder.load_best(net)?;
    let mut confusion = Confusion::new(data.classes.clone());
    let (test_loss, test_acc_frac) = evaluate(net, &data.test, state.recipe.tta, Some(&mut confusion))?;
    confusion.finish();
    let history = &state.history;
    let summary = Summary {
        model: state.recipe.model.clone(),
        facts: cifar_models::count(net.graph()).facts(),
        epochs: state.epochs_done,
        best_epoch: state.best_epoch,
        best_val_acc_frac: state.best_val_acc_frac,
        final_val_acc_frac: history.last().map(|m| m.val_acc_frac),
        test_acc_frac,
        test_loss,
        test_images: data.test.len(),
        train_seconds: state.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        mean_train_img_s: history.iter().map(|m| m.train_img_s).sum::<f64>() / history.len().max(1) as f64,
        device: opts.device_name.clone(),
        precision: if opts.bf16 { "bf16".into() } else { "f32".into() },
        data_on_device: opts.data_on_device,
        threads: rayon::current_num_threads(),
        evaluated_weights: state.best_weights,
        seed: state.recipe.seed,
        git_commit: GIT_COMMIT.to_string(),
        onnx: None,
        onnx_parity_max_abs_diff: None,
        recipe: state.recipe.clone(),
        quantized: None,
    };
    folder.finish(net, summary, &confusion, ParityCheck::WhenAvailable { ort_lib: opts.ort_lib.as_deref() })
}
