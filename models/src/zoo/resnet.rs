//! `resnetlike()` of the seed (docs/models.md §4.2): vanilla (two 3×3) chunks then bottleneck chunks;
//! every block has a 1×1 projection shortcut, even when shapes match.

use crate::spec::{Graph, GraphBuilder, GraphError, NodeId, Op};

/// Constructor parameters of `resnetlike`, with the seed's defaults (the light model).
#[derive(Clone, Debug, PartialEq)]
pub struct ResNetConfig {
    pub in_channels: usize,
    pub kernel_size: usize,
    pub expansion: usize,
    pub down_stride: usize,
    pub vanilla_blocks: usize,
    pub bottleneck_blocks: usize,
    pub vanilla_chunks: usize,
    pub bottleneck_chunks: usize,
    pub num_classes: usize,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 32,
            kernel_size: 3,
            expansion: 2,
            down_stride: 2,
            vanilla_blocks: 3,
            bottleneck_blocks: 3,
            vanilla_chunks: 1,
            bottleneck_chunks: 2,
            num_classes: 10,
        }
    }
}

/// `ReLU(BN(conv3x3) → ReLU → BN(conv3x3) + BN(conv1x1 shortcut))`.
fn vanilla_block(b: &mut GraphBuilder, x: NodeId, out: usize, k: usize, stride: usize) -> Result<NodeId, GraphError> {
    let y = b.conv_bn_relu("conv1", x, out, k, stride)?;
    let y = b.conv_bn("conv2", y, out, k, 1)?;
    let s = b.conv_bn("conv3", x, out, 1, stride)?;
    let sum = b.push("add", Op::Add, &[y, s])?;
    b.relu("relu_out", sum)
}

/// `1x1 → 3x3 (strided) → 1x1` with `out/4` bottleneck channels, plus a 1×1 projection.
fn bottleneck_block(b: &mut GraphBuilder, x: NodeId, out: usize, k: usize, stride: usize) -> Result<NodeId, GraphError> {
    let mid = out / 4;
    let y = b.conv_bn_relu("conv1", x, mid, 1, 1)?;
    let y = b.conv_bn_relu("conv2", y, mid, k, stride)?;
    let y = b.conv_bn("conv3", y, out, 1, 1)?;
    let s = b.conv_bn("conv4", x, out, 1, stride)?;
    let sum = b.push("add", Op::Add, &[y, s])?;
    b.relu("relu_out", sum)
}

type Block = fn(&mut GraphBuilder, NodeId, usize, usize, usize) -> Result<NodeId, GraphError>;

pub fn resnet(name: &str, cfg: &ResNetConfig) -> Result<Graph, GraphError> {
    let (mut b, mut x) = super::stem(name, cfg.in_channels)?;
    let chunks = cfg.vanilla_chunks + cfg.bottleneck_chunks;
    for i in 0..chunks {
        let c = cfg.in_channels * cfg.expansion.pow(i as u32);
        let (scope, blocks, block): (String, usize, Block) = if i < cfg.vanilla_chunks {
            (format!("vanillachunks.{i}"), cfg.vanilla_blocks, vanilla_block)
        } else {
            (format!("bottlechunks.{}", i - cfg.vanilla_chunks), cfg.bottleneck_blocks, bottleneck_block)
        };
        x = b.scoped(scope, |b| {
            let mut x = x;
            for j in 0..blocks.saturating_sub(1) {
                x = b.scoped(format!("blocks.{j}"), |b| block(b, x, c, cfg.kernel_size, 1))?;
            }
            b.scoped("downblock", |b| block(b, x, c * cfg.expansion, cfg.kernel_size, cfg.down_stride))
        })?;
    }
    let x = b.push("gap", Op::GlobalAvgPool, &[x])?;
    let out = b.linear("fc", x, cfg.num_classes)?;
    Ok(b.finish(out))
}
