//! The report writer: `report.json` (the schema in [`schema`]), `report.md` and the SVG
//! charts, all in one folder.

pub mod charts;
pub mod markdown;
pub mod schema;

pub use schema::{HttpSettings, ModelReport, Report, SeedPublished, Settings, SCHEMA_VERSION};

use std::path::{Path, PathBuf};

pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error("serialising the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Draws the charts (recording their names in `report.charts`), then writes every file into
/// `out` (created if needed); returns the paths written.
pub fn write(report: &mut Report, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let svgs = charts::draw_all(report)?;
    report.charts = svgs.iter().map(|(name, _)| name.to_string()).collect();
    let json = serde_json::to_string_pretty(report)?;
    let md = markdown::render(report);
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write { path: out.to_path_buf(), source })?;
    let mut files: Vec<(&str, &[u8])> = vec![(REPORT_JSON, json.as_bytes()), (REPORT_MD, md.as_bytes())];
    files.extend(svgs.iter().map(|(name, svg)| (*name, svg.as_bytes())));
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = out.join(name);
        cifar_models::fsutil::write_atomically(&path, bytes).map_err(|source| ReportError::Write { path: path.clone(), source })?;
        written.push(path);
    }
    // A chart of an earlier run that this one has no data for would contradict the report.
    for stale in [charts::THROUGHPUT, charts::ACCURACY].into_iter().filter(|c| !report.charts.iter().any(|n| n == c)) {
        let _ = std::fs::remove_file(out.join(stale));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::latency::BatchLatency;
    use crate::bench::machine::Machine;
    use crate::bench::stats::Percentiles;
    use cifar_models::metadata::{ModelFacts, Precision};

    fn model(name: &str, params: u64, val_acc_pct: Option<f64>) -> ModelReport {
        let latency = [1, 8]
            .map(|n| BatchLatency {
                batch_size: n,
                iters: 2,
                latency: Percentiles::of_seconds(&[0.001 * n as f64, 0.002 * n as f64]).unwrap(),
                images_per_s: 700.0,
            })
            .to_vec();
        let facts = ModelFacts { params, macs_per_image: 69_440_000, seed_gmacs_batch128: 8.951 };
        ModelReport {
            name: name.into(),
            architecture: "resnet-light".into(),
            precision: Precision::F32,
            file: format!("{name}.onnx"),
            facts,
            seed: SeedPublished::for_architecture("resnet-light", &facts),
            val_acc_pct,
            test_acc_pct: None,
            latency,
            http: None,
        }
    }

    fn report(models: Vec<ModelReport>) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            generated_at: "2025-01-01T00:00:00Z".into(),
            tool: "cifar-serve test".into(),
            settings: Settings { models_dir: "m".into(), iters: 2, warmup_iters: 0, batch_sizes: vec![1, 8], http: None },
            machine: Machine {
                cpu_model: "test CPU".into(),
                logical_cpus: 2,
                threads: 2,
                ort_spin: Some("run".into()),
                memory_bytes: None,
                os: "linux".into(),
                arch: "x86_64".into(),
                kernel: None,
                onnxruntime_version: "1.31.1".into(),
                device: "cpu".into(),
                execution_provider: "CPUExecutionProvider".into(),
            },
            models,
            charts: Vec::new(),
        }
    }

    #[test]
    fn accuracy_gets_a_chart_and_a_table_when_a_file_carries_it() {
        let r = report(vec![model("fresh", 310_474, None), model("trained", 310_474, Some(91.5))]);
        let names: Vec<&str> = charts::draw_all(&r).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [charts::LATENCY, charts::THROUGHPUT, charts::ACCURACY]);
        let md = markdown::render(&Report { charts: names.iter().map(|n| n.to_string()).collect(), ..r });
        assert!(md.contains("| `trained` | 8.95 | 91.50 | – |") && md.contains("](accuracy_vs_gmacs.svg)"), "{md}");
        assert!(!md.contains("| `fresh` | 8.95 |"), "{md}");

        let fresh = report(vec![model("fresh", 310_474, None)]);
        assert!(charts::draw_all(&fresh).unwrap().iter().all(|(n, _)| *n != charts::ACCURACY));
        assert!(markdown::render(&fresh).contains("no accuracy chart"));
    }

    #[test]
    fn a_figure_that_differs_from_the_seed_is_marked() {
        let same = markdown::render(&report(vec![model("a", 310_474, None)]));
        assert!(same.contains("| `a` | resnet-light | 310,474 | 310,474 | 69.44 | 8.95 | 8.95 |") && !same.contains('†'), "{same}");
        let other = markdown::render(&report(vec![model("b", 310_475, None)]));
        assert!(other.contains("| 310,475 | 310,474 † |") && other.contains("marked † differs"), "{other}");
    }

    #[test]
    fn int8_and_f32_of_one_architecture_stand_side_by_side() {
        let mut int8 = model("resnet-light-int8", 310_474, None);
        int8.precision = Precision::Int8;
        int8.latency.iter_mut().for_each(|b| b.images_per_s *= 2.5);
        let md = markdown::render(&report(vec![model("resnet-light", 310_474, None), int8]));
        assert!(md.contains("## int8 beside f32"), "{md}");
        assert!(md.contains("| resnet-light | `resnet-light` | `resnet-light-int8` |"), "{md}");
        assert!(md.contains("| 2.50× |"), "{md}");
        assert!(!markdown::render(&report(vec![model("a", 310_474, None)])).contains("int8 beside f32"));
    }
}
