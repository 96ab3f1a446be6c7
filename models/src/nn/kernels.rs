//! The one decision between the project's CPU ops ([`super::ops`]) and candle's generic ops,
//! made the same way by every building block.

use candle_core::{DType, Tensor};

/// Which implementation of the building blocks a [`super::Network`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The project's CPU ops where they apply (a CPU tensor in f32 or f64), candle's generic
    /// ops elsewhere (CUDA, half precision).
    #[default]
    Fast,
    /// candle's generic ops everywhere: what CUDA runs, forced on CPU so that tests can
    /// compare that path with the fast one.
    Portable,
}

impl Kernels {
    /// Whether the fast CPU op runs for input `x`.
    pub fn fast_for(self, x: &Tensor) -> bool {
        self == Kernels::Fast && x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
    }
}
