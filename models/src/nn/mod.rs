//! The layer graph interpreted as a candle module: one file per building block.

pub mod activation;
pub mod batch_norm;
pub mod conv;
pub mod conv_bn;
pub mod dropout;
pub mod init;
pub mod kernels;
pub mod linear;
pub mod network;
pub mod ops;
pub mod pool;

pub use dropout::DropoutState;
pub use kernels::Kernels;
pub use network::Network;
