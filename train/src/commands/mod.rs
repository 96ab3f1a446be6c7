pub mod models;
pub mod export;
pub mod train;
pub mod quantize;
pub mod speed;

use crate::cli::{KernelChoice, Precision};
use anyhow::{bail, Result};
use candle_core::Device;
use cifar_models::nn::Kernels;

/// `--threads N`: compute threads for candle's CPU kernels and ours.
fn set_threads(threads: Option<usize>) -> Result<()> {
    let Some(n) = threads else { return Ok(()) };
    if n == 0 {
        bail!("--threads must be at least 1");
    }
    // candle's CPU kernels size their work from RAYON_NUM_THREADS; set it before any pool exists.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().ok();
    Ok(())
}

/// `--device` for a `--precision`: bf16 is refused on the CPU.
fn select_device(spec: &str, precision: Precision) -> Result<(Device, String)> {
    let (device, name) = cifar_train::device::select(spec)?;
    if precision == Precision::Bf16 && device.is_cpu() {
        bail!("--precision bf16 needs --device cuda: candle's CPU backend has no bf16 matrix multiply (use f32 on CPU)");
    }
    Ok((device, name))
}

impl From<KernelChoice> for Kernels {
    fn from(k: KernelChoice) -> Self {
        match k {
            KernelChoice::Fast => Kernels::Fast,
            KernelChoice::Portable => Kernels::Portable,
        }
    }
}
