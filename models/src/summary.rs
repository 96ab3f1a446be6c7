//! Tables for people: the model list and a torchinfo-like per-layer summary.

use crate::count::count;
use crate::metadata::ModelFacts;
use crate::seed::{SeedFigures, SEED_MAC_BATCH};
use crate::spec::{Graph, Op};
use crate::zoo::{self, ZooError, MODEL_NAMES};
use serde::Serialize;
use std::fmt::Write;

/// One registered model with its derived counts and the seed's published figures.
#[derive(Clone, Debug, Serialize)]
pub struct ModelRow {
    pub name: &'static str,
    pub constructor: &'static str,
    #[serde(flatten)]
    pub facts: ModelFacts,
    /// torchinfo 1.5.2 mult-adds for one image (conv and linear biases and BN included).
    pub torchinfo_macs_per_image: u64,
    pub seed: SeedFigures,
}

pub fn model_row(name: &str) -> Result<ModelRow, ZooError> {
    let info = zoo::info(name)?;
    let counts = count(&zoo::build(name)?);
    Ok(ModelRow {
        name: info.name,
        constructor: info.constructor,
        facts: counts.facts(),
        torchinfo_macs_per_image: counts.torchinfo_macs_per_image,
        seed: info.seed,
    })
}

pub fn model_rows() -> Vec<ModelRow> {
    MODEL_NAMES.iter().map(|n| model_row(n).expect("registered models build")).collect()
}

/// Thousands separators, as torchinfo prints counts.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

pub fn format_model_table(rows: &[ModelRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<15} {:>10} {:>12} {:>12} {:>9} {:>10}",
        "model", "params", "MMACs/image", "seed GMACs", "seed val", "seed test"
    );
    let _ = writeln!(s, "{:<15} {:>10} {:>12} {:>12} {:>9} {:>10}", "", "", "(conv+fc)", "(batch 128)", "acc %", "acc %");
    let _ = writeln!(s, "{}", "-".repeat(73));
    for r in rows {
        let _ = writeln!(
            s,
            "{:<15} {:>10} {:>12.2} {:>12.2} {:>9.2} {:>10.2}",
            r.name,
            thousands(r.facts.params),
            r.facts.macs_per_image as f64 / 1e6,
            r.facts.seed_gmacs_batch128,
            r.seed.val_acc_pct,
            r.seed.test_acc_pct
        );
    }
    let _ = writeln!(
        s,
        "\nMMACs/image: conv+fc multiply-accumulates for one 3x32x32 image.\n\
         seed GMACs: the seed README's figure, torchinfo 1.5.2 mult-adds for a batch of {SEED_MAC_BATCH}\n\
         (conv and linear biases and BatchNorm included), divided by 1e9."
    );
    s
}

/// A torchinfo-like table: every layer in execution order with its output shape, parameters
/// and conv+fc MACs per image.
pub fn format_layer_table(graph: &Graph) -> String {
    let counts = count(graph);
    let mut per_layer = counts.layers.iter().map(|l| (l.name.as_str(), l)).collect::<std::collections::HashMap<_, _>>();
    let mut s = String::new();
    let width = graph.nodes.iter().map(|n| n.name.len()).max().unwrap_or(10).max(10);
    let _ = writeln!(s, "{:<width$}  {:<34} {:>16} {:>11} {:>14}", "layer", "type", "output", "params", "MACs/image");
    let _ = writeln!(s, "{}", "=".repeat(width + 2 + 34 + 1 + 16 + 1 + 11 + 1 + 14));
    for node in graph.nodes.iter().skip(1) {
        let (params, macs) = per_layer.remove(node.name.as_str()).map_or((0, 0), |l| (l.params, l.macs));
        let mut desc = node.op.describe();
        if matches!(node.op, Op::Add | Op::Concat) {
            desc += &format!(" of {}", node.inputs.len());
        }
        let _ = writeln!(
            s,
            "{:<width$}  {:<34} {:>16} {:>11} {:>14}",
            node.name,
            desc,
            format!("[-1, {}]", node.shape.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
            if params > 0 { thousands(params as u64) } else { "--".into() },
            if macs > 0 { thousands(macs) } else { "--".into() },
        );
    }
    let _ = writeln!(s, "{}", "=".repeat(width + 2 + 34 + 1 + 16 + 1 + 11 + 1 + 14));
    let input_bytes = graph.input_shape().numel() * 4;
    let param_bytes = counts.params * 4;
    let _ = writeln!(s, "Total params: {}", thousands(counts.params as u64));
    let _ = writeln!(s, "MACs per image (conv+fc): {} ({:.2} M)", thousands(counts.macs_per_image), counts.macs_per_image as f64 / 1e6);
    let _ = writeln!(
        s,
        "Seed convention, torchinfo 1.5.2 mult-adds for a batch of {SEED_MAC_BATCH}: {:.2} G",
        counts.seed_gmacs_batch128()
    );
    let _ = writeln!(s, "Input size per image (MB): {:.3}", input_bytes as f64 / 1e6);
    let _ = writeln!(s, "Params size (MB): {:.2}", param_bytes as f64 / 1e6);
    s
}
