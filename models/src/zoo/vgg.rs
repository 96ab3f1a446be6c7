//! `vgglike()` of the seed (docs/models.md §4.1): a 5×5 stem, then blocks of 3×3 convs each followed by
//! BN and ReLU, Dropout2d only after the non-final convs of a block, max pool, two linears.

use crate::spec::{Graph, GraphError, Op};

/// Constructor parameters of `vgglike`, with the seed's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct VggConfig {
    pub in_channels: usize,
    pub kernel_size: usize,
    pub expansion: usize,
    pub pool_size: usize,
    pub drop_rate: f32,
    pub num_blocks: usize,
    pub num_layers: usize,
    pub num_classes: usize,
}

impl Default for VggConfig {
    fn default() -> Self {
        Self {
            in_channels: 32,
            kernel_size: 3,
            expansion: 2,
            pool_size: 2,
            drop_rate: 0.2,
            num_blocks: 3,
            num_layers: 2,
            num_classes: 10,
        }
    }
}

pub fn vgg(name: &str, cfg: &VggConfig) -> Result<Graph, GraphError> {
    let (mut b, mut x) = super::stem(name, cfg.in_channels)?;
    for i in 0..cfg.num_blocks {
        let c = cfg.in_channels * cfg.expansion.pow(i as u32);
        x = b.scoped(format!("blocks.{i}"), |b| {
            let mut x = x;
            for j in 0..cfg.num_layers.saturating_sub(1) {
                x = b.conv_bn_relu(&format!("convs.{j}"), x, c, cfg.kernel_size, 1)?;
                x = b.push(&format!("convs.{j}.dropout"), Op::Dropout2d { p: cfg.drop_rate }, &[x])?;
            }
            let x = b.conv_bn_relu("convf", x, c * cfg.expansion, cfg.kernel_size, 1)?;
            b.push("pool", Op::MaxPool { kernel: cfg.pool_size }, &[x])
        })?;
    }
    let x = b.push("flatten", Op::Flatten, &[x])?;
    let hidden = cfg.in_channels * cfg.expansion.pow(cfg.num_blocks as u32) / 2;
    let x = b.linear("fc1", x, hidden)?;
    // The seed applies dropout before the ReLU here.
    let x = b.push("fc1.dropout", Op::Dropout { p: cfg.drop_rate }, &[x])?;
    let x = b.relu("fc1.relu", x)?;
    let out = b.linear("fc2", x, cfg.num_classes)?;
    Ok(b.finish(out))
}
