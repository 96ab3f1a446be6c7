//! Parameter and MAC counts, derived from the graph.
//!
//! Two MAC conventions (docs/models.md §3):
//! - **conv+fc** per image: Σ Cout·(Cin/g)·k²·Hout·Wout over convs plus in·out over linears — the
//!   honest per-image figure;
//! - **seed** (torchinfo 1.5.2 mult-adds): conv (weight+bias numel)·Hout·Wout, BN 2C, linear
//!   weight+bias numel, each per image, times the batch of 128 the seed printed.

use crate::metadata::ModelFacts;
use crate::seed::SEED_MAC_BATCH;
use crate::spec::{Graph, Op, Shape};
use serde::Serialize;

/// One layer's share, for layers that hold parameters or do multiply-adds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerCount {
    pub name: String,
    pub kind: &'static str,
    pub description: String,
    pub output: Shape,
    pub params: usize,
    /// conv+fc MACs for one image.
    pub macs: u64,
    /// torchinfo 1.5.2 mult-adds for one image.
    pub torchinfo_macs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Counts {
    pub layers: Vec<LayerCount>,
    pub params: usize,
    /// conv+fc MACs for one image.
    pub macs_per_image: u64,
    /// torchinfo 1.5.2 mult-adds for one image.
    pub torchinfo_macs_per_image: u64,
}

impl Counts {
    /// The seed's "GMACs": torchinfo mult-adds for a batch of 128, in units of 1e9.
    pub fn seed_gmacs_batch128(&self) -> f64 {
        (self.torchinfo_macs_per_image * SEED_MAC_BATCH) as f64 / 1e9
    }

    /// The totals as the contract's [`ModelFacts`].
    pub fn facts(&self) -> ModelFacts {
        ModelFacts {
            params: self.params as u64,
            macs_per_image: self.macs_per_image,
            seed_gmacs_batch128: self.seed_gmacs_batch128(),
        }
    }
}

pub fn count(graph: &Graph) -> Counts {
    let mut layers = Vec::new();
    for node in &graph.nodes {
        let (macs, torchinfo) = match (node.op, node.shape) {
            (Op::Conv(c), Shape::Map { h, w, .. }) => {
                let weights = (c.out_channels * c.fan_in()) as u64;
                let bias = if c.bias { c.out_channels as u64 } else { 0 };
                let pixels = (h * w) as u64;
                (weights * pixels, (weights + bias) * pixels)
            }
            (Op::BatchNorm { channels }, _) => (0, 2 * channels as u64),
            (Op::Linear { in_features, out_features, bias }, _) => {
                let weights = (in_features * out_features) as u64;
                (weights, weights + if bias { out_features as u64 } else { 0 })
            }
            _ => continue,
        };
        layers.push(LayerCount {
            name: node.name.clone(),
            kind: node.op.kind(),
            description: node.op.describe(),
            output: node.shape,
            params: node.op.param_count(),
            macs,
            torchinfo_macs: torchinfo,
        });
    }
    Counts {
        params: layers.iter().map(|l| l.params).sum(),
        macs_per_image: layers.iter().map(|l| l.macs).sum(),
        torchinfo_macs_per_image: layers.iter().map(|l| l.torchinfo_macs).sum(),
        layers,
    }
}
