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
        let stats = Self {
            channels: channels.to_vec(),
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: std.collect(),
        };
        // Non-finite samples (which the readers refuse) or an f32 overflow of the mean.
        stats.check().map_err(|msg| Error::Invalid(format!("fitted IMU statistics: {msg}")))?;
        Ok(stats)
    }

    /// The first value that cannot standardise, in words naming its channel: a mean that
    /// is not finite, a std that is not finite and positive (a zero std gives Inf/NaN
    /// inputs, not an error, so it is refused here), or lengths that differ.
    pub fn check(&self) -> std::result::Result<(), String> {
        let c = self.channels.len();
        if self.mean.len() != c || self.std.len() != c {
            return Err(format!(
                "{c} channels but {} means and {} stds",
                self.mean.len(),
                self.std.len()
            ));
        }
        let values = self.channels.iter().zip(self.mean.iter().zip(&self.std)).enumerate();
        for (k, (name, (&mean, &std))) in values {
            if !std.is_finite() || std <= 0.0 {
                return Err(format!(
                    "std[{k}] of channel `{name}` is {std} (must be finite and positive)"
                ));
            }
            if !mean.is_finite() {
                return Err(format!("mean[{k}] of channel `{name}` is {mean} (must be finite)"));
            }
        }
        Ok(())
    }

    /// x: [..., channels] -> [..., channels], standardised.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        self.check().map_err(|msg| Error::Invalid(format!("IMU channel statistics: {msg}")))?;
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
        braid_core::fsx::write_file(path, json.as_bytes())
    }

    /// Reads statistics written by [`Self::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let stats: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        stats.check().map_err(|msg| Error::format(path, msg))?;
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

    #[test]
    fn silent_imu_std_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATS_FILE);
        for (std, mean, field, value) in [
            ("[1.0, 0.0]", "[0.0, 0.0]", "std[1] of channel `gyro_x`", "is 0"),
            ("[1.0, -2.0]", "[0.0, 0.0]", "std[1] of channel `gyro_x`", "is -2"),
            ("[1e39, 1.0]", "[0.0, 0.0]", "std[0] of channel `acc_x`", "is inf"),
            ("[1.0, 1.0]", "[1e39, 0.0]", "mean[0] of channel `acc_x`", "is inf"),
        ] {
            let json =
                format!(r#"{{"channels": ["acc_x", "gyro_x"], "mean": {mean}, "std": {std}}}"#);
            std::fs::write(&path, json).unwrap();
            let err = ChannelStats::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(STATS_FILE) && err.contains(field) && err.contains(value),
                "{err}"
            );
        }
        // Built by hand (not loaded): apply refuses too, instead of writing Inf/NaN.
        let stats =
            ChannelStats { channels: vec!["a".into()], mean: vec![0.0], std: vec![f32::NAN] };
        let x = Tensor::zeros((1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = stats.apply(&x).unwrap_err().to_string();
        assert!(err.contains("channel `a`") && err.contains("NaN"), "{err}");
    }
}
