//! Device choice: CPU now, CUDA when built with it.

use candle_core::Device;

use crate::{Error, Result};

/// The best device available: CUDA 0 where built with CUDA and present, else CPU.
pub fn default_device() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::new_cuda(0)?),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Ok(Device::new_cuda(n)?),
            None => Err(Error::unknown("device", s, ["cpu", "cuda", "cuda:N"])),
        },
    }
}
