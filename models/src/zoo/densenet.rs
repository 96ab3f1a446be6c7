//! `densenetlike()` of the seed (docs/models.md §4.4): DenseNet-BC with post-activation units
//! (conv → BN → ReLU), dense blocks of 1×1 bottleneck + 3×3 growth layers, compressing
//! transitions with 2×2 average pooling, a final dense block, no dropout.

use crate::spec::{Graph, GraphBuilder, GraphError, NodeId, Op, Shape};

/// Constructor parameters of `densenetlike`, with the seed's defaults (k = 12, 4 chunks).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseNetConfig {
    /// Stem width; `None` means the seed's `4 * growth_rate`.
    pub in_channels: Option<usize>,
    pub kernel_size: usize,
    pub pool_size: usize,
    pub num_chunks: usize,
    pub growth_rate: usize,
    pub num_layers: usize,
    pub bottleneck_width: usize,
    pub compression: f64,
    pub num_classes: usize,
}

impl Default for DenseNetConfig {
    fn default() -> Self {
        Self {
            in_channels: None,
            kernel_size: 3,
            pool_size: 2,
            num_chunks: 4,
            growth_rate: 12,
            num_layers: 8,
            bottleneck_width: 4,
            compression: 0.5,
            num_classes: 10,
        }
    }
}

/// Each layer sees the concatenation `[block input, h0, h1, …]` and adds `growth_rate` channels.
fn dense_block(b: &mut GraphBuilder, cfg: &DenseNetConfig, x: NodeId) -> Result<NodeId, GraphError> {
    let mut features = vec![x];
    let mut cur = x;
    for i in 0..cfg.num_layers {
        let h = b.conv_bn_relu(&format!("bottles.{i}"), cur, cfg.bottleneck_width * cfg.growth_rate, 1, 1)?;
        let h = b.conv_bn_relu(&format!("convs.{i}"), h, cfg.growth_rate, cfg.kernel_size, 1)?;
        features.push(h);
        cur = b.push(&format!("cat.{i}"), Op::Concat, &features)?;
    }
    Ok(cur)
}

pub fn densenet(name: &str, cfg: &DenseNetConfig) -> Result<Graph, GraphError> {
    let stem = cfg.in_channels.unwrap_or(4 * cfg.growth_rate);
    let (mut b, x) = GraphBuilder::new(name, Shape::map(3, 32, 32));
    let mut x = b.conv_bn_relu("conv", x, stem, 5, 1)?;
    for i in 0..cfg.num_chunks {
        x = b.scoped(format!("chunks.{i}"), |b| {
            let x = b.scoped("dense", |b| dense_block(b, cfg, x))?;
            b.scoped("transition", |b| {
                // int(C * compression), as Python truncates.
                let out = (b.shape(x).channels() as f64 * cfg.compression) as usize;
                let x = b.conv_bn_relu("conv", x, out, 1, 1)?;
                b.push("pool", Op::AvgPool { kernel: cfg.pool_size }, &[x])
            })
        })?;
    }
    let x = b.scoped("fblock", |b| dense_block(b, cfg, x))?;
    let x = b.push("gap", Op::GlobalAvgPool, &[x])?;
    let out = b.linear("fc", x, cfg.num_classes)?;
    Ok(b.finish(out))
}
