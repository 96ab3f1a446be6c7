//! The models a server serves: the `*.onnx` files of one folder, named by file stem, each with
//! its metadata, its ONNX Runtime session and its batcher; a live set (Triton's model
//! repository extension): models load, reload and unload while the server runs.
//!
//! A reload is a swap: the new session is opened and warmed up beside the old one, then the
//! name points at it. Requests that already hold the old model finish on it (its batcher stops
//! once the last of them lets go), new requests reach the new one, and no batch mixes the two
//! because each has its own batcher. A file that fails to load leaves the old model serving;
//! the failure is logged, counted and kept as the name's `reason` in the index.

mod folder;
mod load;
pub mod watch;

pub use folder::{valid_name, FileStamp};
pub use load::{LoadError, ServedModel};

use crate::batcher::BatchPolicy;
use crate::metrics::Metrics;
use crate::ort::OrtOptions;
use crate::stats::ModelStats;
pub(crate) use folder::{init_runtime, model_files};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The one version every model has (V2 URLs and messages carry versions).
pub const MODEL_VERSION: &str = "1";

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

/// What the server knows of one name.
struct Slot {
    /// The model serving under the name; none once unloaded or when its first load failed.
    model: Option<Arc<ServedModel>>,
    /// Why the name is not serving, or why its last reload failed while the old model serves.
    reason: String,
    /// Kept across reloads, as the name's statistics.
    stats: Arc<ModelStats>,
}

/// A name that serves nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No such model in the server.
    Unknown,
    /// Known, not loaded, with the reason.
    Unavailable(String),
}

/// One row of the repository index (Triton's `RepositoryIndexResponse.ModelIndex`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IndexEntry {
    pub name: String,
    pub version: String,
    /// `READY` or `UNAVAILABLE`.
    pub state: &'static str,
    pub reason: String,
}

pub struct Registry {
    dir: PathBuf,
    env: cifar_onnxrt::Environment,
    /// As resolved at start-up (after any CPU fallback): every later load uses the same.
    ort: OrtOptions,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
    slots: RwLock<BTreeMap<String, Slot>>,
    /// One load at a time: two loads of one name must not race to the swap, and each load
    /// already uses every core.
    loading: Mutex<()>,
    default: String,
    /// The ONNX Runtime library in use.
    pub runtime_path: PathBuf,
}

impl Registry {
    /// Loads and warms up every model of the folder; fails on the first that cannot be served.
    pub fn load(opts: &RegistryOptions, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        let files = model_files(&opts.dir)?;
        let mut ort = opts.ort.clone();
        let (runtime_path, env) = init_runtime(opts.ort_lib.as_deref(), &mut ort)?;
        tracing::info!("ONNX Runtime from {}", runtime_path.display());
        let default = match &opts.default_model {
            Some(name) if files.iter().any(|(n, _)| n == name) => name.clone(),
            Some(name) => {
                let available = files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
                return Err(LoadError::UnknownDefault { name: name.clone(), available });
            }
            None => files[0].0.clone(),
        };
        let registry = Self {
            dir: opts.dir.clone(),
            env,
            ort,
            policy: opts.policy.clone(),
            metrics,
            slots: RwLock::new(BTreeMap::new()),
            loading: Mutex::new(()),
            default,
            runtime_path,
        };
        for (name, _) in &files {
            registry.load_model(name)?;
        }
        Ok(registry)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model serving under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<ServedModel>> {
        self.lookup(name).ok()
    }

    /// The model serving under `name`, or why none does.
    pub fn lookup(&self, name: &str) -> Result<Arc<ServedModel>, Missing> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.get(name).ok_or(Missing::Unknown)?;
        slot.model.clone().ok_or_else(|| Missing::Unavailable(slot.reason.clone()))
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The serving models, by name.
    pub fn models(&self) -> Vec<Arc<ServedModel>> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots.values().filter_map(|s| s.model.clone()).collect()
    }

    /// Every name the server knows or the folder holds, with its state.
    pub fn index(&self) -> Vec<IndexEntry> {
        let mut entries: BTreeMap<String, IndexEntry> = BTreeMap::new();
        // Files not loaded (yet): copied in without --watch, or never loaded.
        if let Ok(files) = folder::scan(&self.dir) {
            for (name, stamp) in files {
                if stamp.is_ok() {
                    entries.insert(name.clone(), entry(&name, None, "not loaded: POST /v2/repository/models/NAME/load loads it"));
                }
            }
        }
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        for (name, slot) in slots.iter() {
            entries.insert(name.clone(), entry(name, slot.model.as_ref(), &slot.reason));
        }
        entries.into_values().collect()
    }

    /// Loads `name` from the folder, or reloads it: on success the new model serves; on
    /// failure a model already serving keeps serving, and the error becomes the name's reason.
    pub fn load_model(&self, name: &str) -> Result<(), LoadError> {
        let _one_at_a_time = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = self.stats_of(name);
        let result = folder::model_file(&self.dir, name)
            .and_then(|file| ServedModel::open(name, file, &self.env, &self.ort, &self.policy, &self.metrics, stats.clone()));
        let outcome = if result.is_ok() { "ok" } else { "failed" };
        self.metrics.model_loads.with_label_values(&[name, outcome]).inc();
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let old = slots.get(name).and_then(|s| s.model.clone());
        match result {
            Ok(model) => {
                tracing::info!("model {name}: {} and serving ({})", if old.is_some() { "reloaded" } else { "loaded" }, model.describe(&self.policy));
                slots.insert(name.to_string(), Slot { model: Some(Arc::new(model)), reason: String::new(), stats });
                Ok(())
            }
            Err(err) => {
                let reason = match &old {
                    Some(_) => format!("the last load failed, the model loaded before still serves: {err}"),
                    None => format!("failed to load: {err}"),
                };
                tracing::error!("model {name}: {reason}");
                // A name that never loaded and has no file is not worth an index row.
                if old.is_some() || !matches!(err, LoadError::NoFile { .. } | LoadError::BadName(_)) {
                    slots.insert(name.to_string(), Slot { model: old, reason, stats });
                }
                Err(err)
            }
        }
    }

    /// Stops serving `name`; requests already holding it finish. `forget` also drops the name
    /// from the index (its file is gone).
    pub fn unload_model(&self, name: &str, reason: &str, forget: bool) -> Result<(), Missing> {
        let _one_at_a_time = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.get_mut(name).ok_or(Missing::Unknown)?;
        let was_serving = slot.model.take().is_some();
        slot.reason = reason.to_string();
        if forget {
            slots.remove(name);
        }
        if was_serving {
            tracing::info!("model {name}: unloaded ({reason})");
        }
        Ok(())
    }

    fn stats_of(&self, name: &str) -> Arc<ModelStats> {
        let slots = self.slots.read().unwrap_or_else(PoisonError::into_inner);
        slots.get(name).map(|s| s.stats.clone()).unwrap_or_default()
    }

    /// Stops every batcher once its queue is empty and waits for the threads.
    pub fn close(&self) {
        let models = self.models();
        models.iter().for_each(|m| m.batcher().close());
        models.iter().for_each(|m| m.batcher().join());
    }
}

fn entry(name: &str, model: Option<&Arc<ServedModel>>, reason: &str) -> IndexEntry {
    IndexEntry {
        name: name.to_string(),
        version: MODEL_VERSION.to_string(),
        state: if model.is_some() { "READY" } else { "UNAVAILABLE" },
        reason: reason.to_string(),
    }
}
