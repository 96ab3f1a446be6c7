//! `resnextlike()` of the seed (docs/models.md §4.3): chunks of two ResNeXt blocks (grouped 3×3 with a
//! fixed 256-channel bottleneck) plus a chunk-level 1×1 strided shortcut without BN or ReLU.

use crate::spec::{Graph, GraphBuilder, GraphError, NodeId, Op};

/// Constructor parameters of `resnextlike`, with the seed's defaults (the large model).
#[derive(Clone, Debug, PartialEq)]
pub struct ResNeXtConfig {
    pub in_channels: usize,
    pub kernel_size: usize,
    pub expansion: usize,
    pub down_stride: usize,
    pub num_chunks: usize,
    pub cardinality: usize,
    pub bottleneck_width: usize,
    pub num_classes: usize,
}

impl Default for ResNeXtConfig {
    fn default() -> Self {
        Self {
            in_channels: 64,
            kernel_size: 3,
            expansion: 2,
            down_stride: 2,
            num_chunks: 4,
            cardinality: 64,
            bottleneck_width: 4,
            num_classes: 10,
        }
    }
}

fn block(b: &mut GraphBuilder, cfg: &ResNeXtConfig, x: NodeId, out: usize, stride: usize) -> Result<NodeId, GraphError> {
    // The bottleneck width is not scaled by stage: 256 channels in every block.
    let mid = cfg.cardinality * cfg.bottleneck_width;
    let y = b.conv("conv1", x, mid, 1, 1, 1)?;
    let y = b.batch_norm("bn1", y)?;
    let y = b.relu("relu1", y)?;
    let y = b.conv("conv2", y, mid, cfg.kernel_size, stride, cfg.cardinality)?;
    let y = b.batch_norm("bn2", y)?;
    let y = b.relu("relu2", y)?;
    let y = b.conv("conv3", y, out, 1, 1, 1)?;
    let y = b.batch_norm("bn3", y)?;
    let s = b.conv("conv4", x, out, 1, stride, 1)?;
    let s = b.batch_norm("bn4", s)?;
    let sum = b.push("add", Op::Add, &[y, s])?;
    b.relu("relu_out", sum)
}

pub fn resnext(name: &str, cfg: &ResNeXtConfig) -> Result<Graph, GraphError> {
    let (mut b, mut x) = super::stem(name, cfg.in_channels)?;
    for i in 0..cfg.num_chunks {
        let c = cfg.in_channels * cfg.expansion.pow(i as u32);
        x = b.scoped(format!("chunks.{i}"), |b| {
            let r = x;
            let y = b.scoped("block1", |b| block(b, cfg, r, c, 1))?;
            let y = b.scoped("block2", |b| block(b, cfg, y, c * cfg.expansion, cfg.down_stride))?;
            // Chunk shortcut: biased 1x1 conv, no BN, and no ReLU after the add.
            let s = b.conv("conv", r, c * cfg.expansion, 1, cfg.down_stride, 1)?;
            b.push("add", Op::Add, &[y, s])
        })?;
    }
    let x = b.push("gap", Op::GlobalAvgPool, &[x])?;
    let out = b.linear("fc", x, cfg.num_classes)?;
    Ok(b.finish(out))
}
