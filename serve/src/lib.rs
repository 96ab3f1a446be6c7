//! The CIFAR-10 inference server as a library: the binary `serve` and the criterion benches
//! put these pieces together; [`bench`] measures them (`serve bench`, `/benchmark`).
//!
//! Request path: HTTP body → [`preprocess`] (decode with limits, crop, resize, normalise) →
//! [`batcher`] (one queue and one thread per model) → [`backend`] (ONNX Runtime, [`ort`]) →
//! logits → [`predict`] (softmax, top-k) → JSON. [`grpc`] serves the V2 protocol over gRPC
//! beside the HTTP server, on the same registry and batchers.

pub mod auth;
pub mod backend;
pub mod bench;
pub mod cause;
pub mod batcher;
pub mod device;
pub mod explain;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod ort;
pub mod predict;
pub mod preprocess;
pub mod registry;
pub mod server;
pub mod stats;
pub mod tensor;

pub use backend::{Backend, BackendError};
pub use device::Device;
pub use registry::{LoadError, Registry, RegistryOptions, ServedModel};
pub use server::{ServeError, ServerOptions};

/// The interface every exported model has (the ONNX contract lives in `cifar_models::metadata`).
pub use cifar_models::metadata::{IMAGE_LEN, IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME};
