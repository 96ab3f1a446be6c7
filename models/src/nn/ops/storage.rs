//! Helpers for reading and writing CPU storage in custom ops.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result, WithDType};

/// The contiguous slice a layout views; custom ops are applied to contiguous tensors only.
pub fn contiguous<'a, T: WithDType>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous"),
    }
}

pub mod num_like {
    /// The arithmetic the pooling kernels need, for f32 and f64.
    pub trait NumLike: Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> + Send + Sync {
        const ZERO: Self;
        const NEG_INF: Self;
        fn from_f64(v: f64) -> Self;
    }
    impl NumLike for f32 {
        const ZERO: Self = 0.0;
        const NEG_INF: Self = f32::NEG_INFINITY;
        fn from_f64(v: f64) -> Self {
            v as f32
        }
    }
    impl NumLike for f64 {
        const ZERO: Self = 0.0;
        const NEG_INF: Self = f64::NEG_INFINITY;
        fn from_f64(v: f64) -> Self {
            v
        }
    }
}

/// Dispatches a generic kernel over the float storages the ops support.
macro_rules! float_dispatch {
    ($storage:expr, $layout:expr, $name:expr, |$data:ident| $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(v) => {
                let $data = $crate::nn::ops::storage::contiguous(v, $layout, $name)?;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::CpuStorage::F64(v) => {
                let $data = $crate::nn::ops::storage::contiguous(v, $layout, $name)?;
                candle_core::CpuStorage::F64($body)
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", $name, candle_core::backend::BackendStorage::dtype(other)),
        }
    };
}
pub(crate) use float_dispatch;

/// Same dtype for both operands of a two-input op.
pub fn same_dtype(a: &CpuStorage, b: &CpuStorage, op: &str) -> Result<()> {
    if a.dtype() != b.dtype() {
        bail!("{op}: dtype mismatch {:?} vs {:?}", a.dtype(), b.dtype());
    }
    Ok(())
}
