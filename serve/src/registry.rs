//! The models a server serves: every `*.onnx` in one folder, named by file stem, each with its
//! metadata, its ONNX Runtime session and its batcher.

use crate::backend::{Backend, BackendError};
use crate::batcher::{self, BatchPolicy, Batcher, Padding, SharedBackend};
use crate::device::Device;
use crate::metrics::Metrics;
use crate::ort::{OrtBackend, OrtError, OrtOptions};
use crate::preprocess::Normalisation;
use cifar_models::metadata::ModelMetadata;
use cifar_onnxrt::{Flavor, OrtLoadError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub dir: PathBuf,
    /// Model for `/v1/classify`; default: the first name in alphabetical order.
    pub default_model: Option<String>,
    /// ONNX Runtime library; default: ORT_DYLIB_PATH, then `.ort/cpu|cuda/` (see cifar-onnxrt).
    pub ort_lib: Option<PathBuf>,
    pub ort: OrtOptions,
    /// Batching (padding is decided per model from the device it really runs on).
    pub policy: BatchPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the model folder {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("no *.onnx files in {0}: export one with `train export --model resnet-light --out {0}/resnet-light.onnx`")]
    NoModels(PathBuf),
    #[error("{0}: a model's file name must be letters, digits, '-', '_' or '.' followed by .onnx (the name is used in URLs)")]
    BadName(PathBuf),
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
    #[error("--default {name}: no such model (loaded: {available})")]
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

pub struct Registry {
    models: BTreeMap<String, Arc<ServedModel>>,
    default: String,
    /// The ONNX Runtime library in use.
    pub runtime_path: PathBuf,
}

impl Registry {
    /// Loads and warms up every model; fails on the first model that cannot be served.
    pub fn load(opts: &RegistryOptions, metrics: &Metrics) -> Result<Self, LoadError> {
        let files = model_files(&opts.dir)?;
        let mut ort = opts.ort.clone();
        let (runtime_path, env) = init_runtime(opts.ort_lib.as_deref(), &mut ort)?;
        tracing::info!("ONNX Runtime from {}", runtime_path.display());
        let mut models = BTreeMap::new();
        for (name, file) in files {
            let started = Instant::now();
            let bytes = std::fs::read(&file).map_err(|source| LoadError::Read { file: file.clone(), source })?;
            let (mut backend, meta) = OrtBackend::load(&env, &bytes, &ort).map_err(|source| LoadError::Model { file: file.clone(), source })?;
            batcher::warm_up(&mut backend, opts.policy.max_batch).map_err(|source| LoadError::WarmUp { name: name.clone(), source })?;
            let device = backend.device();
            let backend: SharedBackend = Arc::new(Mutex::new(Box::new(backend) as Box<dyn Backend>));
            let batcher = Batcher::start(&name, backend.clone(), opts.policy.clone(), Padding::for_device(device), metrics.for_model(&name))
                .map_err(LoadError::Thread)?;
            tracing::info!(
                "model {name} ({}, {} params, {:.1} MMACs/image) on {device}, warmed up to batch {} in {:.2} s",
                meta.model,
                meta.facts.params,
                meta.facts.macs_per_image as f64 / 1e6,
                opts.policy.max_batch,
                started.elapsed().as_secs_f64()
            );
            let norm = Normalisation { mean: meta.mean, std: meta.std };
            let model = ServedModel { name: name.clone(), file, meta, norm, device, threads: ort.threads, backend, batcher };
            models.insert(name, Arc::new(model));
        }
        let default = match &opts.default_model {
            Some(name) if models.contains_key(name) => name.clone(),
            Some(name) => {
                let available = models.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(LoadError::UnknownDefault { name: name.clone(), available });
            }
            None => models.keys().next().cloned().ok_or_else(|| LoadError::NoModels(opts.dir.clone()))?,
        };
        Ok(Self { models, default, runtime_path })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ServedModel>> {
        self.models.get(name)
    }

    pub fn default_model(&self) -> &Arc<ServedModel> {
        // `load` only builds a registry whose default names a loaded model.
        &self.models[&self.default]
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.values()
    }

    /// Stops every batcher once its queue is empty and waits for the threads.
    pub fn close(&self) {
        self.models.values().for_each(|m| m.batcher.close());
        self.models.values().for_each(|m| m.batcher.join());
    }
}

/// `*.onnx` files of `dir`, sorted by name.
pub(crate) fn model_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Dir { dir: dir.to_path_buf(), source })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| LoadError::Dir { dir: dir.to_path_buf(), source })?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("onnx") || !path.is_file() {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).filter(|s| valid_name(s)).ok_or_else(|| LoadError::BadName(path.clone()))?;
        files.push((name.to_string(), path));
    }
    if files.is_empty() {
        return Err(LoadError::NoModels(dir.to_path_buf()));
    }
    files.sort();
    Ok(files)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Loads the library for the requested device; a CUDA request without the CUDA library falls
/// back to the CPU library only when allowed.
pub(crate) fn init_runtime(explicit: Option<&Path>, ort: &mut OrtOptions) -> Result<(PathBuf, cifar_onnxrt::Environment), LoadError> {
    if ort.device != Device::Cpu && !cfg!(feature = "cuda") {
        let err = OrtError::CudaNotBuilt(ort.device);
        if !ort.allow_cpu_fallback {
            return Err(LoadError::Device(err));
        }
        tracing::warn!("{err}; running on the CPU");
        ort.device = Device::Cpu;
    }
    let flavor = if ort.device == Device::Cpu { Flavor::Cpu } else { Flavor::Cuda };
    match cifar_onnxrt::init(explicit, flavor) {
        Ok(loaded) => Ok(loaded),
        Err(err) if flavor == Flavor::Cuda && ort.allow_cpu_fallback => {
            tracing::warn!("no CUDA build of ONNX Runtime ({err}); running on the CPU (--allow-cpu-fallback)");
            ort.device = Device::Cpu;
            Ok(cifar_onnxrt::init(explicit, Flavor::Cpu)?)
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe() {
        assert!(valid_name("resnet-light"));
        assert!(valid_name("vgg_v2.1"));
        for bad in ["", ".hidden", "a b", "a/b", "ü", "a?b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn folder_errors_say_what_to_do() {
        let dir = std::env::temp_dir().join(format!("serve-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = model_files(&dir).unwrap_err().to_string();
        assert!(err.contains("train export"), "{err}");
        std::fs::write(dir.join("bad name.onnx"), b"x").unwrap();
        assert!(matches!(model_files(&dir), Err(LoadError::BadName(_))));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(model_files(Path::new("/nonexistent/models")), Err(LoadError::Dir { .. })));
    }
}
