//! The seven CIFAR-10 architectures of the seed study (`../shared/spec/models.md`), each
//! described once as a layer graph ([`spec::Graph`]), and the interpreters of that description:
//! counts ([`count`]), a trainable candle module ([`nn`], feature `candle`), and — in `train` —
//! the ONNX exporter.

pub mod count;
pub mod metadata;
pub mod seed;
pub mod spec;
pub mod summary;
pub mod zoo;

#[cfg(feature = "candle")]
pub mod nn;

pub use count::{count, Counts, LayerCount};
pub use spec::{Graph, Node, NodeId, Op, Shape};
pub use zoo::{build, info, ModelInfo, ZooError, MODEL_NAMES};
