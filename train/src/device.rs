//! `--device auto|cpu|cuda[:N]`.

use anyhow::{bail, Result};
use candle_core::Device;

/// Resolves a `--device` value; `auto` takes CUDA when this build has it and a GPU answers.
pub fn select(spec: &str) -> Result<(Device, String)> {
    let spec = spec.trim().to_ascii_lowercase();
    match spec.as_str() {
        "cpu" => Ok((Device::Cpu, "cpu".into())),
        "auto" => {
            if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
                if let Ok(d) = Device::new_cuda(0) {
                    return Ok((d, "cuda:0".into()));
                }
            }
            Ok((Device::Cpu, "cpu".into()))
        }
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| anyhow::anyhow!("bad --device {s}: expected cuda:N with N a GPU index"))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                bail!("--device {s}: this `train` was built without CUDA; rebuild with `--features cuda` or use --device cpu");
            }
            match Device::new_cuda(ordinal) {
                Ok(d) => Ok((d, format!("cuda:{ordinal}"))),
                Err(e) => bail!("--device {s}: CUDA device {ordinal} cannot be used: {e}"),
            }
        }
        other => bail!("bad --device `{other}`: expected auto, cpu, cuda or cuda:N"),
    }
}
