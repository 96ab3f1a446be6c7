//! CPU custom ops: candle 0.11 computes these slowly (conv backward, grouped conv, batch norm)
//! or wrongly (pooling gradients). Each op has a forward and a backward built from ops of
//! this module, for f32 (fast paths) and f64 (the same code, for gradient checks).

pub mod batch_norm;
pub mod batch_norm_backward;
pub mod channel_conv;
mod channel_conv_kernel;
pub mod conv2d;
pub mod conv2d_backward;
pub mod conv_bn;
pub mod conv_geom;
pub mod conv_plan;
pub(crate) mod gemm;
pub mod grouped_conv;
mod grouped_conv_kernel;
mod grouped_conv_layout;
mod im2col;
pub mod pool;
mod reduce;
pub mod profile;
pub mod relu;
pub(crate) mod simd;
pub(crate) mod scratch;
pub(crate) mod storage;
