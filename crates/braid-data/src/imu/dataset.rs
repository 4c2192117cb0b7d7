//! The in-memory form every IMU reader produces.

use std::path::Path;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};

/// The label of a sample that belongs to no class.
pub const UNLABELLED: i32 = -1;

/// One continuous recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// A name for messages (`u01_r0`, `case 3`).
    pub name: String,
    /// Samples, row-major `[len, channels]`.
    pub values: Vec<f32>,
    /// Class index per sample (`len` of them), [`UNLABELLED`] where none applies.
    pub labels: Vec<i32>,
    /// The person recorded, when the source says.
    pub subject: Option<u32>,
}

impl Recording {
    /// Number of time steps.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no time steps.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Recordings with their channel and class names.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImuDataset {
    /// The recordings.
    pub recordings: Vec<Recording>,
    /// Channel names (`acc-x`, `dim0`, ...); their count is the channel count.
    pub channels: Vec<String>,
    /// Class names, indexed by the labels in the recordings.
    pub classes: Vec<String>,
}

impl ImuDataset {
    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Appends `other`'s recordings; channels and classes must agree.
    pub fn extend(&mut self, other: ImuDataset) -> Result<()> {
        if self.recordings.is_empty() && self.channels.is_empty() {
            *self = other;
            return Ok(());
        }
        if other.channels != self.channels || other.classes != self.classes {
            return Err(Error::Invalid(format!(
                "cannot merge IMU datasets: channels {:?} / classes {:?} differ from {:?} / {:?}",
                other.channels, other.classes, self.channels, self.classes
            )));
        }
        self.recordings.extend(other.recordings);
        Ok(())
    }

    /// The samples of `recording` from `start` for `len` steps as `[len, channels]`.
    pub fn slice(&self, recording: usize, start: usize, len: usize) -> Result<Tensor> {
        let c = self.num_channels();
        let rec = self
            .recordings
            .get(recording)
            .ok_or_else(|| Error::Invalid(format!("no recording {recording}")))?;
        if start + len > rec.len() {
            return Err(Error::Invalid(format!(
                "{}: window {start}..{} past the end ({} steps)",
                rec.name,
                start + len,
                rec.len()
            )));
        }
        let v = &rec.values[start * c..(start + len) * c];
        Ok(Tensor::from_slice(v, (len, c), &Device::Cpu)?)
    }
}

/// Fails naming the row and channel of the first NaN or infinite value in `values`
/// (`[rows, channels]`, row-major).
pub fn check_finite(path: &Path, what: &str, values: &[f32], channels: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::format(
            path,
            format!(
                "{what}: value {} at time step {}, channel {}; IMU data must be finite \
                 (interpolate or drop missing samples before loading)",
                values[i],
                i / channels.max(1),
                i % channels.max(1)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_reported_with_its_position() {
        let e = check_finite(Path::new("x.csv"), "rec", &[0.0, 1.0, 2.0, f32::NAN], 2).unwrap_err();
        assert_eq!(e.to_string(), "x.csv: rec: value NaN at time step 1, channel 1; IMU data must be finite (interpolate or drop missing samples before loading)");
        assert!(check_finite(Path::new("x"), "r", &[1.0, 2.0], 2).is_ok());
    }

    #[test]
    fn slices_a_window() {
        let ds = ImuDataset {
            recordings: vec![Recording {
                name: "r".into(),
                values: (0..6).map(|v| v as f32).collect(),
                labels: vec![0; 3],
                subject: None,
            }],
            channels: vec!["a".into(), "b".into()],
            classes: vec!["c".into()],
        };
        let t = ds.slice(0, 1, 2).unwrap();
        assert_eq!(t.to_vec2::<f32>().unwrap(), vec![vec![2.0, 3.0], vec![4.0, 5.0]]);
        assert!(ds.slice(0, 2, 2).is_err());
    }
}
