//! Helpers for reading and writing CPU storage in custom ops.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Result};

/// The contiguous slice a layout views; custom ops are applied to contiguous tensors only.
pub fn contiguous<'a, T>(data: &'a [T], layout: &Layout, op: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{op}: input must be contiguous"),
    }
}

pub mod num_like {
    use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub};

    /// The arithmetic the CPU kernels need, for f32 and f64 (f64 so that finite-difference
    /// gradient checks run through the same code as training).
    pub trait NumLike:
        Copy
        + PartialOrd
        + Default
        + Add<Output = Self>
        + AddAssign
        + Sub<Output = Self>
        + Mul<Output = Self>
        + Div<Output = Self>
        + Neg<Output = Self>
        + Send
        + Sync
        + std::fmt::Debug
        + 'static
    {
        const ZERO: Self;
        const ONE: Self;
        const NEG_INF: Self;
        fn from_f64(v: f64) -> Self;
        fn to_f64(self) -> f64;
        /// This type's slice of a storage, if the storage holds this type.
        fn slice(s: &candle_core::CpuStorage) -> Option<&[Self]>;
        fn storage(v: Vec<Self>) -> candle_core::CpuStorage;
    }
    impl NumLike for f32 {
        const ZERO: Self = 0.0;
        const ONE: Self = 1.0;
        const NEG_INF: Self = f32::NEG_INFINITY;
        fn from_f64(v: f64) -> Self {
            v as f32
        }
        fn to_f64(self) -> f64 {
            self as f64
        }
        fn slice(s: &candle_core::CpuStorage) -> Option<&[Self]> {
            match s {
                candle_core::CpuStorage::F32(v) => Some(v),
                _ => None,
            }
        }
        fn storage(v: Vec<Self>) -> candle_core::CpuStorage {
            candle_core::CpuStorage::F32(v)
        }
    }
    impl NumLike for f64 {
        const ZERO: Self = 0.0;
        const ONE: Self = 1.0;
        const NEG_INF: Self = f64::NEG_INFINITY;
        fn from_f64(v: f64) -> Self {
            v
        }
        fn to_f64(self) -> f64 {
            self
        }
        fn slice(s: &candle_core::CpuStorage) -> Option<&[Self]> {
            match s {
                candle_core::CpuStorage::F64(v) => Some(v),
                _ => None,
            }
        }
        fn storage(v: Vec<Self>) -> candle_core::CpuStorage {
            candle_core::CpuStorage::F64(v)
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

/// The contiguous `T` data of an operand, or an error naming the op if its dtype is not `T`.
pub fn slice_of<'a, T: num_like::NumLike>(s: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [T]> {
    match T::slice(s) {
        Some(v) => contiguous(v, layout, op),
        None => bail!("{op}: operands must share one float dtype, got {:?}", s.dtype()),
    }
}

/// Runs `$body` with `$T` bound to the Rust type of a float dtype (f32 or f64).
macro_rules! with_float_type {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            other => candle_core::bail!("{}: unsupported dtype {:?}", $name, other),
        }
    };
}
pub(crate) use with_float_type;

/// A vector of `n` elements for an op output that the caller overwrites completely before
/// anything reads it: `vec![0; n]` would zero it first, a whole extra pass over every
/// activation once the allocator hands back used memory.
pub fn output_vec<T: num_like::NumLike>(n: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: T is f32 or f64 (plain data, no drop), and every caller writes all n elements
    // before the vector is read or leaves the op, as candle's own CPU kernels do.
    unsafe { v.set_len(n) };
    v
}
