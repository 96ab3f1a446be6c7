//! `serve bench`: every model of a folder, measured in process (and over HTTP with `--url`),
//! then the report.

use super::http_load::{self, HttpLoadError, LoadPlan};
use super::latency::{self, LatencyPlan};
use super::machine::Machine;
use super::report::{self, HttpSettings, ModelReport, Report, ReportError, SeedPublished, Settings, SCHEMA_VERSION};
use crate::backend::{Backend, BackendError};
use crate::batcher::SharedBackend;
use crate::ort::{OrtBackend, OrtOptions};
use crate::registry::{self, LoadError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub models_dir: PathBuf,
    pub out_dir: PathBuf,
    /// ONNX Runtime library; default as for the server.
    pub ort_lib: Option<PathBuf>,
    pub ort: OrtOptions,
    pub latency: LatencyPlan,
    /// Also drive a running server.
    pub http: Option<LoadPlan>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{name}: benchmark failed: {source}")]
    Run { name: String, source: BackendError },
    #[error(transparent)]
    Http(#[from] HttpLoadError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Measures, writes the report into `opts.out_dir`, and returns it with the files written.
pub fn run(opts: &BenchOptions) -> Result<(Report, Vec<PathBuf>), BenchError> {
    let files = registry::model_files(&opts.models_dir)?;
    // Check the server first: a wrong --url should fail before minutes of measuring.
    let served = opts.http.as_ref().map(|plan| http_load::served_models(&plan.url, plan.api_key.as_deref())).transpose()?;
    let mut ort = opts.ort.clone();
    let (_, env) = registry::init_runtime(opts.ort_lib.as_deref(), &mut ort)?;
    let mut device = ort.device;
    let mut models = Vec::new();
    for (name, file) in files {
        let bytes = std::fs::read(&file).map_err(|source| LoadError::Read { file: file.clone(), source })?;
        let (backend, meta) = OrtBackend::load(&env, &bytes, &ort).map_err(|source| LoadError::Model { file: file.clone(), source })?;
        device = backend.device();
        let shared: SharedBackend = Arc::new(Mutex::new(Box::new(backend) as Box<dyn Backend>));
        tracing::info!("{name}: timing batch sizes {:?}", opts.latency.batch_sizes);
        let latency = latency::measure(&shared, &opts.latency).map_err(|source| BenchError::Run { name: name.clone(), source })?;
        // Accuracies are fractions of whole test sets (k / 10,000): two decimals of a percent,
        // without binary noise such as 78.03999999999999.
        let pct = |v: Option<f64>| v.map(|v| (v * 1e4).round() / 100.0);
        models.push(ModelReport {
            seed: SeedPublished::for_architecture(&meta.model, &meta.facts),
            file: file_name(&file),
            architecture: meta.model,
            precision: meta.precision,
            name,
            facts: meta.facts,
            val_acc_pct: pct(meta.val_acc_frac),
            test_acc_pct: pct(meta.test_acc_frac),
            latency,
            http: None,
        });
        // The session is dropped here: one model's memory at a time.
    }
    if let (Some(plan), Some(served)) = (&opts.http, &served) {
        for m in models.iter_mut().filter(|m| served.contains(&m.name)) {
            tracing::info!("{}: {} clients over HTTP for {:.1} s", m.name, plan.concurrency, plan.duration.as_secs_f64());
            let mut load = http_load::drive(plan, &m.name)?;
            let batch1_p50 = m.latency.iter().find(|b| b.batch_size == 1).map(|b| b.latency.p50_ms);
            let best = m.latency.iter().map(|b| b.images_per_s).reduce(f64::max);
            load.compare_with(batch1_p50, best);
            m.http = Some(load);
        }
    }
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool: concat!("cifar-serve ", env!("CARGO_PKG_VERSION")).into(),
        settings: Settings {
            models_dir: opts.models_dir.display().to_string(),
            iters: opts.latency.iters,
            warmup_iters: opts.latency.warmup_iters,
            batch_sizes: opts.latency.batch_sizes.clone(),
            http: opts.http.as_ref().map(|p| HttpSettings {
                url: p.url.to_string(),
                concurrency: p.concurrency.clamp(1, http_load::MAX_CONCURRENCY),
                duration_s: p.duration.min(http_load::MAX_DURATION).as_secs_f64(),
                image: p.payload.source.clone(),
            }),
        },
        machine: Machine::detect(device, ort.threads, ort.spin),
        models,
        charts: Vec::new(),
    };
    let written = report::write(&mut report, &opts.out_dir)?;
    Ok((report, written))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}
