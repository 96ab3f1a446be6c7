//! CPU custom ops whose gradients candle 0.11 gets wrong or computes slowly.

pub mod pool;
pub(crate) mod storage;
