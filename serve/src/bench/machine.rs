//! The machine a benchmark ran on, for reports: figures mean little without it.

use crate::device::Device;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` of /proc/cpuinfo (`unknown` where there is none).
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub logical_cpus: usize,
    /// ONNX Runtime intra-op threads of each session.
    pub threads: usize,
    /// When those threads busy-wait (`serve --ort-spin`); absent from reports written before
    /// the option existed.
    #[serde(default)]
    pub ort_spin: Option<String>,
    /// Physical memory (`MemTotal` of /proc/meminfo), when known.
    pub memory_bytes: Option<u64>,
    pub os: String,
    pub arch: String,
    /// Kernel release, when known.
    pub kernel: Option<String>,
    pub onnxruntime_version: String,
    /// Where the sessions ran: `cpu` or `cuda:N`.
    pub device: String,
    /// ONNX Runtime's name for it: `CPUExecutionProvider` or `CUDAExecutionProvider`.
    pub execution_provider: String,
}

impl Machine {
    /// Describes this machine; call after ONNX Runtime is loaded (for its version).
    pub fn detect(device: Device, threads: usize, spin: crate::ort::Spin) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Self {
            cpu_model: read("/proc/cpuinfo").as_deref().and_then(cpu_model).unwrap_or_else(|| "unknown".into()),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
            ort_spin: Some(spin.as_str().into()),
            memory_bytes: read("/proc/meminfo").as_deref().and_then(mem_total),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()),
            onnxruntime_version: cifar_onnxrt::runtime_version(),
            device: device.to_string(),
            execution_provider: execution_provider(device).into(),
        }
    }
}

pub fn execution_provider(device: Device) -> &'static str {
    match device {
        Device::Cpu => "CPUExecutionProvider",
        Device::Cuda(_) => "CUDAExecutionProvider",
    }
}

/// x86 says `model name`; some ARM kernels only `Hardware` or `Processor`.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Hardware", "Processor"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Intel(R) Xeon(R) CPU @ 2.20GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(mem_total("MemTotal:       16318480 kB\nMemFree: 1 kB\n"), Some(16318480 * 1024));
        assert_eq!(execution_provider(Device::Cuda(1)), "CUDAExecutionProvider");
    }
}
