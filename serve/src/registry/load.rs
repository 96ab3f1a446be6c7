//! Opening one model: read its file, open an ONNX Runtime session, check the interface, warm
//! it up and start its batcher.

use crate::backend::{Backend, BackendError};
use crate::batcher::{self, BatchPolicy, Batcher, Padding, SharedBackend};
use crate::device::Device;
use crate::metrics::Metrics;
use crate::ort::{OrtBackend, OrtError, OrtOptions};
use crate::preprocess::Normalisation;
use crate::stats::ModelStats;
use cifar_models::metadata::ModelMetadata;
use cifar_onnxrt::OrtLoadError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the model folder {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("no *.onnx files in {0}: export one with `train export --model resnet-light --out {0}/resnet-light.onnx`")]
    NoModels(PathBuf),
    #[error("{0}: a model's file name must be letters, digits, '-', '_' or '.' followed by .onnx (the name is used in URLs)")]
    BadName(PathBuf),
    #[error("no model file {name}.onnx in {dir}")]
    NoFile { name: String, dir: PathBuf },
    #[error("{file} leads to {target}, outside the model folder: models are served only from the folder itself")]
    OutsideFolder { file: PathBuf, target: PathBuf },
    #[error("cannot read {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Runtime(#[from] OrtLoadError),
    #[error("{file}: {source}")]
    Model { file: PathBuf, source: OrtError },
    #[error(transparent)]
    Device(OrtError),
    #[error("{name}: warm-up failed: {source}")]
    WarmUp { name: String, source: BackendError },
    #[error("--default {name}: no such model (in the folder: {available})")]
    UnknownDefault { name: String, available: String },
    #[error("cannot start the batching thread: {0}")]
    Thread(std::io::Error),
}

/// One served model.
pub struct ServedModel {
    /// The file stem: the name in URLs.
    pub name: String,
    pub file: PathBuf,
    pub meta: ModelMetadata,
    pub norm: Normalisation,
    /// Where it really runs (CPU after a fallback).
    pub device: Device,
    pub threads: usize,
    backend: SharedBackend,
    batcher: Batcher,
}

impl ServedModel {
    /// Opens `file` as model `name`, warmed up to the largest batch, with a running batcher.
    pub(crate) fn open(
        name: &str,
        file: PathBuf,
        env: &cifar_onnxrt::Environment,
        ort: &OrtOptions,
        policy: &BatchPolicy,
        metrics: &Metrics,
        stats: Arc<ModelStats>,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let bytes = std::fs::read(&file).map_err(|source| LoadError::Read { file: file.clone(), source })?;
        let (mut backend, meta) = OrtBackend::load(env, &bytes, ort).map_err(|source| LoadError::Model { file: file.clone(), source })?;
        batcher::warm_up(&mut backend, policy.max_batch).map_err(|source| LoadError::WarmUp { name: name.to_string(), source })?;
        let device = backend.device();
        let backend: SharedBackend = Arc::new(Mutex::new(Box::new(backend) as Box<dyn Backend>));
        let mut model_metrics = metrics.for_model(name);
        model_metrics.stats = stats;
        let batcher = Batcher::start(name, backend.clone(), policy.clone(), Padding::for_device(device), model_metrics).map_err(LoadError::Thread)?;
        tracing::debug!("model {name} opened in {:.2} s", started.elapsed().as_secs_f64());
        let norm = Normalisation { mean: meta.mean, std: meta.std };
        Ok(Self { name: name.to_string(), file, meta, norm, device, threads: ort.threads, backend, batcher })
    }

    /// What it is and where it runs, for the log.
    pub fn describe(&self, policy: &BatchPolicy) -> String {
        format!(
            "{}, {} params, {:.1} MMACs/image, on {}, warmed up to batch {}",
            self.meta.model,
            self.meta.facts.params,
            self.meta.facts.macs_per_image as f64 / 1e6,
            self.device,
            policy.max_batch
        )
    }

    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    /// The session itself, for in-process measurements; each call holds it for one run.
    pub fn backend(&self) -> SharedBackend {
        self.backend.clone()
    }

    pub fn classes(&self) -> &[String] {
        &self.meta.classes
    }
}
