//! The CIFAR-10 inference server as a library: the binary `serve` and the criterion benches
//! put these pieces together; [`bench`] measures them (`serve bench`, `/benchmark`).
//!
//! Request path: HTTP body → [`preprocess`] (decode with limits, crop, resize, normalise) →
//! [`batcher`] (one queue and one thread per model) → [`backend`] (ONNX Runtime, [`ort`]) →
//! logits → [`predict`] (softmax, top-k) → JSON.

pub mod backend;
pub mod bench;
pub mod batcher;
pub mod device;
pub mod http;
pub mod metrics;
pub mod ort;
pub mod predict;
pub mod preprocess;
pub mod registry;
pub mod server;

pub use backend::{Backend, BackendError};
pub use device::Device;
pub use registry::{LoadError, Registry, RegistryOptions, ServedModel};
pub use server::{ServeError, ServerOptions};

/// Name of the one input every exported model takes: float32 [batch, 3, 32, 32], normalised.
pub const INPUT_NAME: &str = "input";
/// Name of the one output: float32 [batch, classes] logits.
pub const OUTPUT_NAME: &str = "logits";
/// Channels, height and width of one input image.
pub const IMAGE_SHAPE: [usize; 3] = [3, 32, 32];
/// Floats in one preprocessed image.
pub const IMAGE_LEN: usize = 3 * 32 * 32;
