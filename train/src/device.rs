//! `--device auto|cpu|cuda[:N]`.

use candle_core::Device;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("bad --device `{0}`: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("bad --device {0}: expected cuda:N with N a GPU index")]
    BadOrdinal(String),
    #[error("--device {0}: this `train` was built without CUDA; rebuild with `--features cuda` or use --device cpu")]
    NoCudaBuild(String),
    #[error("--device {spec}: CUDA device {ordinal} cannot be used")]
    Unusable { spec: String, ordinal: usize, source: candle_core::Error },
}

/// Resolves a `--device` value; `auto` takes CUDA when this build has it and a GPU answers.
pub fn select(spec: &str) -> Result<(Device, String), DeviceError> {
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
                Some(n) => n.parse().map_err(|_| DeviceError::BadOrdinal(s.into()))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                return Err(DeviceError::NoCudaBuild(s.into()));
            }
            match Device::new_cuda(ordinal) {
                Ok(d) => Ok((d, format!("cuda:{ordinal}"))),
                Err(source) => Err(DeviceError::Unusable { spec: s.into(), ordinal, source }),
            }
        }
        other => Err(DeviceError::Unknown(other.into())),
    }
}
