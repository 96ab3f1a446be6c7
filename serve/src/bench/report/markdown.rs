//! `report.md`: the report for people, with the charts embedded as images.

use super::charts;
use super::schema::{gmacs, ModelReport, Report};
use cifar_models::metadata::Precision;
use cifar_models::seed::SEED_MAC_BATCH;
use cifar_models::summary::thousands;
use crate::bench::stats::Percentiles;
use std::fmt::Write;

/// The note on the two MAC conventions, shared with the README.
pub const MAC_CONVENTIONS: &str = "\
**Two MAC conventions.** *MMACs / image* counts the multiply-accumulates of the convolutions and \
linear layers for one 3×32×32 image (Σ Cout·Cin/g·k²·Hout·Wout + in·out): the honest per-image \
cost. *GMACs (batch 128)* is the seed README's convention: torchinfo 1.5.2 \"mult-adds\" for a \
batch of 128, which also counts conv and linear biases and 2·C per BatchNorm, in 1e9; divide by \
128 for a per-image figure in that convention. The seed columns are its published figures; ours \
are derived from the layer graph the file was exported from.";

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark report\n");
    let _ = writeln!(
        s,
        "{} model{} from `{}`, {} on {} ({} threads), ONNX Runtime {}; written {} by {} (report.json schema version {}).\n",
        r.models.len(),
        if r.models.len() == 1 { "" } else { "s" },
        r.settings.models_dir,
        r.machine.execution_provider,
        r.machine.cpu_model,
        r.machine.threads,
        r.machine.onnxruntime_version,
        r.generated_at,
        r.tool,
        r.schema_version
    );
    summary(&mut s, r);
    machine(&mut s, r);
    cost_table(&mut s, r);
    latency(&mut s, r);
    int8_beside_f32(&mut s, r);
    throughput(&mut s, r);
    accuracy(&mut s, r);
    http(&mut s, r);
    s
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn rate(v: f64) -> String {
    thousands(v.round() as u64)
}

fn summary(s: &mut String, r: &Report) {
    let (lo, hi) = (r.settings.batch_sizes.iter().min(), r.settings.batch_sizes.iter().max());
    let (Some(lo), Some(hi)) = (lo, hi) else { return };
    let _ = writeln!(s, "## Summary\n");
    let with_http = r.models.iter().any(|m| m.http.is_some());
    let http_cols = if with_http { " HTTP img/s | HTTP / in-process img/s | HTTP 1-client p50 ms | overhead ms |" } else { "" };
    let _ = writeln!(s, "| model | MMACs / image | p50 ms at batch {lo} | p99 ms at batch {lo} | img/s at batch {hi} |{http_cols}");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|{}", if with_http { "---:|---:|---:|---:|" } else { "" });
    for m in &r.models {
        let Some((small, large)) = m.smallest_and_largest() else { continue };
        let mut row = format!(
            "| `{}` | {:.2} | {} | {} | {} |",
            m.name,
            m.facts.macs_per_image as f64 / 1e6,
            ms(small.latency.p50_ms),
            ms(small.latency.p99_ms),
            rate(large.images_per_s)
        );
        if with_http {
            let cells = m.http.as_ref().map_or(["–".to_string(), "–".into(), "–".into(), "–".into()], |h| {
                [
                    rate(h.images_per_s),
                    h.throughput_ratio.map_or("–".into(), |v| format!("{v:.2}")),
                    h.single_client.latency.map_or("–".into(), |l| ms(l.p50_ms)),
                    opt_ms(h.overhead_b1_ms),
                ]
            });
            let _ = write!(row, " {} |", cells.join(" | "));
        }
        let _ = writeln!(s, "{row}");
    }
    let _ = writeln!(s);
}

fn machine(s: &mut String, r: &Report) {
    let m = &r.machine;
    let _ = writeln!(s, "## Machine\n");
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(s, "| CPU | {} |", m.cpu_model);
    let _ = writeln!(s, "| logical CPUs | {} |", m.logical_cpus);
    let _ = writeln!(s, "| ONNX Runtime threads per session | {} |", m.threads);
    if let Some(spin) = &m.ort_spin {
        let _ = writeln!(s, "| ONNX Runtime threads spin (`--ort-spin`) | {spin} |");
    }
    if let Some(bytes) = m.memory_bytes {
        let _ = writeln!(s, "| memory | {:.1} GiB |", bytes as f64 / (1u64 << 30) as f64);
    }
    let _ = writeln!(s, "| OS | {} {} {} |", m.os, m.arch, m.kernel.as_deref().unwrap_or(""));
    let _ = writeln!(s, "| ONNX Runtime | {} |", m.onnxruntime_version);
    let _ = writeln!(s, "| execution provider | {} (`{}`) |\n", m.execution_provider, m.device);
}

fn cost_table(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Size and cost beside the seed's figures\n");
    let _ = writeln!(
        s,
        "| model | architecture | params | seed params | MMACs / image | GMACs (batch {SEED_MAC_BATCH}) | seed GMACs (batch {SEED_MAC_BATCH}) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for m in &r.models {
        let (seed_params, seed_gmacs) = match &m.seed {
            Some(seed) => (mark(thousands(seed.params), seed.params_match), mark(gmacs(seed.gmacs_batch128), seed.gmacs_match)),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {:.2} | {} | {} |",
            m.name,
            m.architecture,
            thousands(m.facts.params),
            seed_params,
            m.facts.macs_per_image as f64 / 1e6,
            gmacs(m.facts.seed_gmacs_batch128),
            seed_gmacs
        );
    }
    let differs = r.models.iter().filter_map(|m| m.seed.as_ref()).any(|seed| !(seed.params_match && seed.gmacs_match));
    let legend = if differs { " A seed figure marked † differs from ours." } else { "" };
    let _ = writeln!(s, "\n{MAC_CONVENTIONS}{legend}\n");
}

fn mark(text: String, matches: bool) -> String {
    if matches {
        text
    } else {
        format!("{text} †")
    }
}

fn latency(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "## In-process latency\n\nONNX Runtime calls on each model's session, no HTTP: {} untimed calls, then {} timed calls per batch size. \
         Latency is per call (the whole batch); img/s = batch size × calls / total call time.\n",
        r.settings.warmup_iters, r.settings.iters
    );
    let _ = writeln!(s, "| model | batch | calls | p50 ms | p95 ms | p99 ms | mean ms | img/s |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &r.models {
        for b in &m.latency {
            let l = &b.latency;
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                m.name,
                b.batch_size,
                b.iters,
                ms(l.p50_ms),
                ms(l.p95_ms),
                ms(l.p99_ms),
                ms(l.mean_ms),
                rate(b.images_per_s)
            );
        }
    }
    let _ = writeln!(s, "\n![p50 and p99 latency against batch size]({})\n", charts::LATENCY);
}

/// Every int8 file next to the f32 file of its architecture (the first, in file-name order).
fn int8_beside_f32(s: &mut String, r: &Report) {
    let pairs: Vec<(&ModelReport, &ModelReport)> = r
        .models
        .iter()
        .filter(|m| m.precision == Precision::Int8)
        .filter_map(|q| r.models.iter().find(|f| f.precision == Precision::F32 && f.architecture == q.architecture).map(|f| (f, q)))
        .collect();
    let (Some(lo), Some(hi)) = (r.settings.batch_sizes.iter().min(), r.settings.batch_sizes.iter().max()) else { return };
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(s, "## int8 beside f32

The same architecture in f32 and as quantized by `train quantize`, from the runs above.
");
    let _ = writeln!(
        s,
        "| architecture | f32 | int8 | p50 ms at batch {lo}: f32 / int8 | img/s at batch {hi}: f32 / int8 | int8 speed-up at batch {hi} | test %: f32 / int8 |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|");
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    for (f, q) in pairs {
        let (Some((f_small, f_large)), Some((q_small, q_large))) = (f.smallest_and_largest(), q.smallest_and_largest()) else { continue };
        let _ = writeln!(
            s,
            "| {} | `{}` | `{}` | {} / {} | {} / {} | {:.2}× | {} / {} |",
            f.architecture,
            f.name,
            q.name,
            ms(f_small.latency.p50_ms),
            ms(q_small.latency.p50_ms),
            rate(f_large.images_per_s),
            rate(q_large.images_per_s),
            q_large.images_per_s / f_large.images_per_s,
            pct(f.test_acc_pct),
            pct(q.test_acc_pct)
        );
    }
    let _ = writeln!(s);
}

fn throughput(s: &mut String, r: &Report) {
    if r.charts.iter().any(|c| c == charts::THROUGHPUT) {
        let _ = writeln!(s, "## Throughput against cost\n\n![images per second against MACs per image]({})\n", charts::THROUGHPUT);
    }
}

fn accuracy(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Accuracy against cost\n");
    let carrying: Vec<&ModelReport> = r.models.iter().filter(|m| m.accuracy().is_some()).collect();
    if carrying.is_empty() {
        let _ = writeln!(
            s,
            "No model file carries an accuracy (fresh exports do not; `train export --checkpoint` of a trained run does), \
             so there is no accuracy chart.\n"
        );
        return;
    }
    let _ = writeln!(s, "| model | GMACs (batch {SEED_MAC_BATCH}) | val % | test % | seed val % | seed test % |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
    for m in carrying {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            m.name,
            gmacs(m.facts.seed_gmacs_batch128),
            pct(m.val_acc_pct),
            pct(m.test_acc_pct),
            pct(m.seed.as_ref().map(|x| x.val_acc_pct)),
            pct(m.seed.as_ref().map(|x| x.test_acc_pct))
        );
    }
    let _ = writeln!(s, "\n![accuracy against GMACs]({})\n", charts::ACCURACY);
}

fn http(s: &mut String, r: &Report) {
    let Some(h) = &r.settings.http else { return };
    let _ = writeln!(
        s,
        "## Over HTTP\n\nEach model served at {} got two runs of {:.1} s, POSTing {} to `/v1/models/NAME/classify` \
         (decoding, batching and JSON included; latency is the client's, request to full answer): one keep-alive client, \
         one request after another, then {} such clients at once. *Overhead* is the one-client p50 minus the in-process \
         batch-1 p50; *ratio* is the {}-client img/s over the best in-process img/s of any batch size.\n",
        h.url, h.duration_s, h.image, h.concurrency, h.concurrency
    );
    http_single(s, r);
    http_concurrent(s, r);
}

/// Figures of the same model's in-process run, for the HTTP tables.
fn in_process(m: &ModelReport) -> (String, String) {
    let batch1 = m.latency.iter().find(|b| b.batch_size == 1).map_or("–".into(), |b| ms(b.latency.p50_ms));
    let best = m.latency.iter().map(|b| b.images_per_s).reduce(f64::max).map_or("–".into(), rate);
    (batch1, best)
}

fn errors(count: u64, statuses: Option<&std::collections::BTreeMap<String, u64>>) -> String {
    match statuses {
        Some(statuses) if count > 0 => {
            let kinds: Vec<String> = statuses.iter().filter(|(k, _)| k.as_str() != "200").map(|(k, v)| format!("{v}× {k}")).collect();
            format!("{count} ({})", kinds.join(", "))
        }
        _ => count.to_string(),
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:+.2}"))
}

fn http_single(s: &mut String, r: &Report) {
    let _ = writeln!(s, "### One client (batch-1 latency)\n");
    let _ = writeln!(s, "| model | requests | errors | p50 ms | p95 ms | p99 ms | in-process p50 ms (batch 1) | overhead ms |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (m, load) in r.models.iter().filter_map(|m| m.http.as_ref().map(|l| (m, l))) {
        let one = &load.single_client;
        let pct = |f: fn(&Percentiles) -> f64| one.latency.as_ref().map_or("–".into(), |l| ms(f(l)));
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            one.requests,
            one.errors,
            pct(|l| l.p50_ms),
            pct(|l| l.p95_ms),
            pct(|l| l.p99_ms),
            in_process(m).0,
            opt_ms(load.overhead_b1_ms)
        );
    }
    let _ = writeln!(s);
}

fn http_concurrent(s: &mut String, r: &Report) {
    let Some(h) = &r.settings.http else { return };
    let _ = writeln!(s, "### {} clients (throughput)\n", h.concurrency);
    let _ = writeln!(s, "| model | requests | errors | img/s | p50 ms | p95 ms | p99 ms | best in-process img/s | ratio |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for m in &r.models {
        let Some(load) = &m.http else {
            let _ = writeln!(s, "| `{}` | not served at {} | | | | | | | |", m.name, h.url);
            continue;
        };
        let pct = |f: fn(&Percentiles) -> f64| load.latency.as_ref().map_or("–".into(), |l| ms(f(l)));
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.name,
            load.requests,
            errors(load.errors, Some(&load.statuses)),
            rate(load.images_per_s),
            pct(|l| l.p50_ms),
            pct(|l| l.p95_ms),
            pct(|l| l.p99_ms),
            in_process(m).1,
            load.throughput_ratio.map_or("–".into(), |v| format!("{v:.2}"))
        );
    }
    let _ = writeln!(s);
}
