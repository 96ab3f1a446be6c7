//! The seven CIFAR-10 architectures of the seed study (`docs/models.md`), each
//! described once as a layer graph ([`spec::Graph`]), and the interpreters of that description:
//! counts ([`count`]), a trainable candle module ([`nn`], feature `candle`), and — in `train` —
//! the ONNX exporter.

pub mod count;
pub mod fsutil;
pub mod metadata;
pub mod plan;
pub mod seed;
pub mod spec;
pub mod summary;
pub mod testdata;
pub mod zoo;

#[cfg(feature = "candle")]
pub mod nn;

pub use count::{count, Counts, LayerCount};
pub use plan::{FusionPlan, Step};
pub use spec::{Graph, Node, NodeId, Op, Shape};
pub use zoo::{build, info, ModelInfo, ZooError, MODEL_NAMES};
