//! Per-channel standardisation `(x - mean) / std`, fitted on training recordings and saved
//! as JSON beside the model ([`STATS_FILE`]) so inference uses the same statistics.

use std::path::Path;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::Recording;

/// The file name the statistics are saved under in a model directory.
pub const STATS_FILE: &str = "imu_stats.json";

/// A channel whose standard deviation is below this is only centred (std taken as 1).
const MIN_STD: f64 = 1e-8;

/// Mean and standard deviation of each channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Channel names, for checking against the data they are applied to.
    pub channels: Vec<String>,
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Population standard deviation per channel (1 for constant channels).
    pub std: Vec<f32>,
}

impl ChannelStats {
    /// Fits on every sample of `recordings` (accumulated in f64).
    pub fn fit<'a>(
        recordings: impl IntoIterator<Item = &'a Recording>,
        channels: &[String],
    ) -> Result<Self> {
        let c = channels.len();
        let (mut n, mut sum, mut sq) = (0usize, vec![0f64; c], vec![0f64; c]);
        for rec in recordings {
            for row in rec.values.chunks_exact(c.max(1)) {
                for (k, &v) in row.iter().enumerate() {
                    sum[k] += f64::from(v);
                    sq[k] += f64::from(v) * f64::from(v);
                }
                n += 1;
            }
        }
        if n == 0 || c == 0 {
            return Err(Error::Invalid("cannot fit channel statistics on no samples".into()));
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let std = sq.iter().zip(&mean).map(|(q, m)| {
            let s = (q / n as f64 - m * m).max(0.0).sqrt();
            if s < MIN_STD {
                1.0
            } else {
                s as f32
            }
        });
        Ok(Self {
            channels: channels.to_vec(),
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.collect(),
        })
    }

    /// x: [..., channels] -> [..., channels], standardised.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.mean.len();
        let last = x.dims().last().copied().unwrap_or(0);
        if last != c {
            return Err(Error::shape("IMU input channels", &[c], &[last]));
        }
        let mean = Tensor::from_slice(&self.mean, c, &Device::Cpu)?
            .to_dtype(x.dtype())?
            .to_device(x.device())?;
        let std = Tensor::from_slice(&self.std, c, &Device::Cpu)?
            .to_dtype(x.dtype())?
            .to_device(x.device())?;
        Ok(x.broadcast_sub(&mean)?.broadcast_div(&std)?)
    }

    /// Writes the statistics as JSON.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json =
            serde_json::to_string_pretty(self).map_err(|e| Error::format(path, e.to_string()))?;
        std::fs::write(path, json).map_err(|e| Error::io(path, e))
    }

    /// Reads statistics written by [`Self::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let stats: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        if stats.mean.len() != stats.channels.len() || stats.std.len() != stats.channels.len() {
            return Err(Error::format(path, "mean, std and channels differ in length"));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_each_channel_and_round_trips() {
        let rec = Recording {
            name: "r".into(),
            values: vec![1.0, 5.0, 3.0, 5.0],
            labels: vec![0, 0],
            subject: None,
        };
        let names = vec!["a".to_string(), "b".to_string()];
        let stats = ChannelStats::fit([&rec], &names).unwrap();
        assert_eq!(stats.mean, [2.0, 5.0]);
        assert_eq!(stats.std, [1.0, 1.0]); // b is constant: centred only
        let x = Tensor::new(&[[[1f32, 5.0], [3.0, 6.0]]], &Device::Cpu).unwrap();
        let y = stats.apply(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, [-1.0, 0.0, 1.0, 1.0]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATS_FILE);
        stats.save(&path).unwrap();
        assert_eq!(ChannelStats::load(&path).unwrap(), stats);
        assert!(stats
            .apply(&Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap())
            .is_err());
    }
}
