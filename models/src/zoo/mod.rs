//! The registry of the seven seed models: one constructor call each.

mod densenet;
mod resnet;
mod resnext;
mod vgg;

pub use densenet::{densenet, DenseNetConfig};
pub use resnet::{resnet, ResNetConfig};
pub use resnext::{resnext, ResNeXtConfig};
pub use vgg::{vgg, VggConfig};

use crate::seed::{SeedFigures, SEED};
use crate::spec::{Graph, GraphBuilder, GraphError, NodeId, Shape};

/// The stem of the VGG, ResNet and ResNeXt models: `Conv2d(3, C, 5, padding=2)` (`conv1`) →
/// BN (`bn1`) → ReLU on a 3×32×32 image.
fn stem(name: &str, channels: usize) -> Result<(GraphBuilder, NodeId), GraphError> {
    let (mut b, x) = GraphBuilder::new(name, Shape::map(3, 32, 32));
    let x = b.conv("conv1", x, channels, 5, 1, 1)?;
    let x = b.batch_norm("bn1", x)?;
    let x = b.relu("relu", x)?;
    Ok((b, x))
}

/// The registry names, cheapest to train first within each family.
pub const MODEL_NAMES: [&str; 7] = [
    "vgg",
    "resnet-light",
    "resnet-heavy",
    "resnext-small",
    "resnext-large",
    "densenet-small",
    "densenet-large",
];

/// A registered model: its name, what it is, and the seed's published figures.
#[derive(Clone, Copy, Debug)]
pub struct ModelInfo {
    pub name: &'static str,
    /// The seed's constructor call, e.g. `resnetlike(vanilla_chunks=2, bottleneck_chunks=3)`.
    pub constructor: &'static str,
    pub seed: SeedFigures,
}

#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown model `{0}`; valid names: {names}", names = MODEL_NAMES.join(", "))]
    UnknownModel(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

pub fn info(name: &str) -> Result<ModelInfo, ZooError> {
    let constructor = match name {
        "vgg" => "vgglike()",
        "resnet-light" => "resnetlike()",
        "resnet-heavy" => "resnetlike(vanilla_chunks=2, bottleneck_chunks=3)",
        "resnext-small" => "resnextlike(num_chunks=3)",
        "resnext-large" => "resnextlike()",
        "densenet-small" => "densenetlike()",
        "densenet-large" => "densenetlike(num_chunks=5, growth_rate=16)",
        _ => return Err(ZooError::UnknownModel(name.to_string())),
    };
    let i = MODEL_NAMES.iter().position(|n| *n == name).expect("listed above");
    Ok(ModelInfo { name: MODEL_NAMES[i], constructor, seed: SEED[i] })
}

/// Builds the layer graph of a registered model.
pub fn build(name: &str) -> Result<Graph, ZooError> {
    let graph = match name {
        "vgg" => vgg(name, &VggConfig::default())?,
        "resnet-light" => resnet(name, &ResNetConfig::default())?,
        "resnet-heavy" => resnet(
            name,
            &ResNetConfig { vanilla_chunks: 2, bottleneck_chunks: 3, ..Default::default() },
        )?,
        "resnext-small" => resnext(name, &ResNeXtConfig { num_chunks: 3, ..Default::default() })?,
        "resnext-large" => resnext(name, &ResNeXtConfig::default())?,
        "densenet-small" => densenet(name, &DenseNetConfig::default())?,
        "densenet-large" => densenet(
            name,
            &DenseNetConfig { num_chunks: 5, growth_rate: 16, ..Default::default() },
        )?,
        _ => return Err(ZooError::UnknownModel(name.to_string())),
    };
    Ok(graph)
}
