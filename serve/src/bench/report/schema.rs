//! `report.json`: the schema, as the types that write it.
//!
//! Stability: `schema_version` changes whenever a key is renamed or removed or changes its
//! meaning or unit; keys may be added without a change, so readers should ignore keys they do
//! not know. Optional figures are `null`, never missing. The README ("Benchmarks") lists every
//! key, and the end-to-end test checks that list against a generated report.

use crate::bench::http_load::HttpLoad;
use crate::bench::latency::BatchLatency;
use crate::bench::machine::Machine;
use cifar_models::metadata::{ModelFacts, Precision};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the report was written, RFC 3339 in UTC.
    pub generated_at: String,
    /// `cifar-serve <version>`.
    pub tool: String,
    pub settings: Settings,
    pub machine: Machine,
    /// One entry per `*.onnx` of the models folder, in file-name order.
    pub models: Vec<ModelReport>,
    /// SVG files written beside the report (file names).
    pub charts: Vec<String>,
}

/// How the report was measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub models_dir: String,
    /// Timed calls per batch size and model.
    pub iters: usize,
    /// Untimed calls per batch size and model before them.
    pub warmup_iters: usize,
    pub batch_sizes: Vec<usize>,
    /// The HTTP run, when `--url` was given.
    pub http: Option<HttpSettings>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpSettings {
    pub url: String,
    /// Clients of the throughput run.
    pub concurrency: usize,
    /// Seconds of each run (one client, then `concurrency`), per model.
    pub duration_s: f64,
    /// The image every request carries: the `--image` file, or a description of the generated one.
    pub image: String,
}

/// One model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// The file stem (the name `serve` gives the model).
    pub name: String,
    /// The architecture it was exported from (metadata `cifar.model`).
    pub architecture: String,
    /// `f32`, or `int8` for a file written by `train quantize` (metadata `cifar.precision`).
    #[serde(default)]
    pub precision: Precision,
    pub file: String,
    /// From the file's metadata (derived from the layer graph at export): `params`,
    /// `macs_per_image` and the seed-convention GMACs as `gmacs_batch128`.
    #[serde(flatten, with = "report_keys")]
    pub facts: ModelFacts,
    /// The seed's published figures for the architecture; null for an architecture the seed
    /// does not have.
    pub seed: Option<SeedPublished>,
    /// Accuracy in percent carried by the file (trained exports); null for fresh weights.
    pub val_acc_pct: Option<f64>,
    pub test_acc_pct: Option<f64>,
    /// In-process latency, one entry per batch size, in the order of `settings.batch_sizes`.
    pub latency: Vec<BatchLatency>,
    /// The HTTP run against `settings.http.url`; null without `--url` or when the server does
    /// not serve this model.
    pub http: Option<HttpLoad>,
}

/// [`ModelFacts`] under this report's documented keys (`gmacs_batch128` for the seed GMACs).
mod report_keys {
    use cifar_models::metadata::ModelFacts;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Keys {
        params: u64,
        macs_per_image: u64,
        gmacs_batch128: f64,
    }

    pub fn serialize<S: Serializer>(f: &ModelFacts, s: S) -> Result<S::Ok, S::Error> {
        Keys { params: f.params, macs_per_image: f.macs_per_image, gmacs_batch128: f.seed_gmacs_batch128 }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ModelFacts, D::Error> {
        let k = Keys::deserialize(d)?;
        Ok(ModelFacts { params: k.params, macs_per_image: k.macs_per_image, seed_gmacs_batch128: k.gmacs_batch128 })
    }
}

/// The seed README's figures for one architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedPublished {
    pub params: u64,
    pub gmacs_batch128: f64,
    pub val_acc_pct: f64,
    pub test_acc_pct: f64,
    /// Whether our counts print the same as the seed's (params exactly, GMACs to two decimals).
    pub params_match: bool,
    pub gmacs_match: bool,
}

impl SeedPublished {
    pub fn for_architecture(architecture: &str, facts: &ModelFacts) -> Option<Self> {
        let (params, gmacs_batch128) = (facts.params, facts.seed_gmacs_batch128);
        let seed = cifar_models::info(architecture).ok()?.seed;
        Some(Self {
            params: seed.params as u64,
            gmacs_batch128: seed.gmacs_batch128,
            val_acc_pct: seed.val_acc_pct,
            test_acc_pct: seed.test_acc_pct,
            params_match: seed.params as u64 == params,
            gmacs_match: gmacs(seed.gmacs_batch128) == gmacs(gmacs_batch128),
        })
    }
}

/// GMACs as the seed prints them: two decimals.
pub fn gmacs(v: f64) -> String {
    format!("{v:.2}")
}

impl ModelReport {
    /// The latency entry of the smallest and of the largest batch size.
    pub fn smallest_and_largest(&self) -> Option<(&BatchLatency, &BatchLatency)> {
        let min = self.latency.iter().min_by_key(|b| b.batch_size)?;
        let max = self.latency.iter().max_by_key(|b| b.batch_size)?;
        Some((min, max))
    }

    /// Test accuracy when the file carries it, else validation accuracy (percent, and which).
    pub fn accuracy(&self) -> Option<(f64, &'static str)> {
        self.test_acc_pct.map(|a| (a, "test")).or(self.val_acc_pct.map(|a| (a, "val")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_figures_come_from_the_models_crate() {
        let facts = |params, seed_gmacs_batch128| ModelFacts { params, macs_per_image: 0, seed_gmacs_batch128 };
        let s = SeedPublished::for_architecture("resnet-light", &facts(310_474, 8.951)).unwrap();
        assert!(s.params_match && s.gmacs_match);
        assert_eq!(gmacs(s.gmacs_batch128), "8.95");
        assert!(!SeedPublished::for_architecture("resnet-light", &facts(1, 9.0)).unwrap().params_match);
        assert!(SeedPublished::for_architecture("alexnet", &facts(1, 1.0)).is_none());
    }
}
