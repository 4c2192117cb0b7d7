//! IMU slots: the per-channel statistics training standardised with, the window, and the
//! sampling rate when known. A recording is `.npy` `[time, channels]`, `.csv` (a header,
//! one time step per row) or `.ts` (UEA; its first case).
//!
//! Only a CSV can state its rate: a column named `t`, `time`, `time_s` or `timestamp`
//! (seconds) or `time_ms` / `timestamp_ms` (milliseconds) is its time axis, never a
//! channel (unless the slot names it as one). With `rate_hz` set, the rate measured from
//! that column (rows - 1 over the time spanned) must lie within [`RATE_TOLERANCE`] of it.
//! `.npy` and `.ts` files carry no rate: theirs is taken on trust, as is a CSV's without a
//! time column.

use std::path::Path;

use braid_core::checkpoint::read_npy;
use braid_core::{Error, Result};
use braid_data::imu::{read_csv, read_ts, ChannelStats, CsvOptions, ImuDataset};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// An IMU slot's standardisation and windowing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuPreprocess {
    /// Channel names, in input order.
    pub channels: Vec<String>,
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
    /// Samples per window the model was trained on (absent: whole recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// Samples between window starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Samples per second the model was trained on, checked against a recording that
    /// states its rate (a CSV with a time column; see the module notes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_hz: Option<f64>,
}

/// How far a recording's measured rate may lie from `rate_hz` (timestamps jitter).
pub const RATE_TOLERANCE: f64 = 0.05;

/// CSV columns read as the time axis, with the seconds per unit.
const TIME_COLUMNS: [(&str, f64); 6] = [
    ("t", 1.0),
    ("time", 1.0),
    ("time_s", 1.0),
    ("timestamp", 1.0),
    ("time_ms", 1e-3),
    ("timestamp_ms", 1e-3),
];

/// Longest recording read for one input (samples), so a hostile file cannot size an
/// unbounded tensor.
const MAX_IMU_SAMPLES: usize = 1 << 22;

impl ImuPreprocess {
    /// The statistics, checked: one mean and one positive finite std per channel.
    pub fn stats(&self) -> Result<ChannelStats> {
        let c = self.channels.len();
        if c == 0 || self.mean.len() != c || self.std.len() != c {
            return Err(Error::config(
                "preprocess",
                format!("{c} channels but {} means and {} stds", self.mean.len(), self.std.len()),
            ));
        }
        if self.window == Some(0) || self.stride == Some(0) {
            return Err(Error::config("preprocess.window", "window and stride must be at least 1"));
        }
        if let Some(r) = self.rate_hz.filter(|r| !(r.is_finite() && *r > 0.0)) {
            return Err(Error::config("preprocess.rate_hz", format!("{r} (must be > 0 Hz)")));
        }
        let stats = ChannelStats {
            channels: self.channels.clone(),
            mean: self.mean.clone(),
            std: self.std.clone(),
        };
        stats.check().map_err(|msg| Error::config("preprocess", msg))?;
        Ok(stats)
    }

    /// The preprocessing of `stats`, windowed as given.
    pub fn from_stats(stats: &ChannelStats, window: Option<usize>, stride: Option<usize>) -> Self {
        Self {
            channels: stats.channels.clone(),
            mean: stats.mean.clone(),
            std: stats.std.clone(),
            window,
            stride,
            rate_hz: None,
        }
    }

    /// A whole recording (`.npy` `[T, C]` float, `.csv` with a header, `.ts`: its first
    /// case) -> standardised `[1, T, C]`.
    pub fn load(&self, path: &Path, device: &Device) -> Result<Tensor> {
        let (values, t, c) = match path.extension().and_then(|e| e.to_str()) {
            Some("npy") => {
                let a = read_npy(path)?;
                let [t, c] = a.shape[..] else {
                    return Err(Error::format(
                        path,
                        format!("expected a [time, channels] array, got shape {:?}", a.shape),
                    ));
                };
                let v = a
                    .to_tensor(&Device::Cpu)?
                    .to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                (v, t, c)
            }
            Some("csv") => self.read_csv(path)?,
            Some("ts") => first_recording(path, read_ts(path)?)?,
            _ => return Err(Error::format(path, "an IMU recording must be .npy, .csv or .ts")),
        };
        self.standardise(values, t, c, path, device)
    }

    /// A recording sent as rows of channel values (an upload), sampled at `rate_hz` when
    /// the sender says; `name` stands for it in errors.
    pub fn from_rows(
        &self,
        rows: &[Vec<f32>],
        rate_hz: Option<f64>,
        name: &Path,
        device: &Device,
    ) -> Result<Tensor> {
        let c = self.channels.len();
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != c) {
            let msg = format!(
                "row {i} has {} values, but the model reads {c} channels ({})",
                r.len(),
                self.channels.join(", ")
            );
            return Err(Error::format(name, msg));
        }
        if let (Some(want), Some(got)) = (self.rate_hz, rate_hz) {
            if !(got.is_finite() && (got - want).abs() <= RATE_TOLERANCE * want) {
                let msg = format!(
                    "sampled at {got} Hz, but the model reads {want} Hz recordings; resample it"
                );
                return Err(Error::format(name, msg));
            }
        }
        let values = rows.iter().flatten().copied().collect();
        self.standardise(values, rows.len(), c, name, device)
    }

    /// `values` ([time t, channels c], row-major) checked and standardised -> [1, t, c].
    fn standardise(
        &self,
        values: Vec<f32>,
        t: usize,
        c: usize,
        path: &Path,
        device: &Device,
    ) -> Result<Tensor> {
        let stats = self.stats()?;
        if c != self.channels.len() {
            return Err(Error::format(
                path,
                format!(
                    "{c} channels, but the model reads {} ({})",
                    self.channels.len(),
                    self.channels.join(", ")
                ),
            ));
        }
        if t == 0 || t > MAX_IMU_SAMPLES {
            return Err(Error::format(
                path,
                format!("{t} samples (1 to {MAX_IMU_SAMPLES} are read)"),
            ));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::format(path, "holds NaN or infinite samples"));
        }
        stats.apply(&Tensor::from_vec(values, (1, t, c), device)?)
    }
}

impl ImuPreprocess {
    /// A CSV's first recording, its time column (if any) left out of the channels and, with
    /// `rate_hz` set, checked against it.
    fn read_csv(&self, path: &Path) -> Result<(Vec<f32>, usize, usize)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let header: Vec<&str> = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        let time = header.iter().enumerate().find_map(|(i, name)| {
            let unit = TIME_COLUMNS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?.1;
            (!self.channels.iter().any(|c| c.as_str() == *name)).then_some((
                i,
                name.to_string(),
                unit,
            ))
        });
        let opts = CsvOptions {
            ignore: time.iter().map(|(_, name, _)| name.clone()).collect(),
            ..CsvOptions::default()
        };
        let read = first_recording(path, read_csv(path, &opts)?)?;
        if let (Some(want), Some((col, name, unit))) = (self.rate_hz, &time) {
            let got = csv_rate(path, &text, *col, name, *unit)?;
            if (got - want).abs() > RATE_TOLERANCE * want {
                return Err(Error::format(
                    path,
                    format!(
                        "sampled at {got:.1} Hz (its `{name}` column), but the model reads {want} Hz recordings; resample it"
                    ),
                ));
            }
        }
        Ok(read)
    }
}

/// Rows per second of the time column `col` (`unit` seconds per value): rows - 1 over the
/// time from the first row to the last.
fn csv_rate(path: &Path, text: &str, col: usize, name: &str, unit: f64) -> Result<f64> {
    let times = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .skip(1)
        .map(|l| {
            let cell = l.split(',').nth(col).map(str::trim).unwrap_or_default();
            cell.parse::<f64>().map_err(|_| {
                Error::format(path, format!("time column `{name}`: `{cell}` is not a number"))
            })
        })
        .collect::<Result<Vec<f64>>>()?;
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return Err(Error::format(path, "no rows"));
    };
    let span = (last - first) * unit;
    if times.len() < 2 || !(span.is_finite() && span > 0.0) {
        return Err(Error::format(
            path,
            format!("its `{name}` column does not increase: no sampling rate can be read from it"),
        ));
    }
    Ok((times.len() - 1) as f64 / span)
}

fn first_recording(path: &Path, ds: ImuDataset) -> Result<(Vec<f32>, usize, usize)> {
    let c = ds.channels.len();
    let rec =
        ds.recordings.into_iter().next().ok_or_else(|| Error::format(path, "no recording"))?;
    let t = rec.values.len() / c.max(1);
    Ok((rec.values, t, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> ImuPreprocess {
        ImuPreprocess {
            channels: vec!["ax".into(), "ay".into()],
            mean: vec![2.0, 20.0],
            std: vec![1.0, 10.0],
            window: None,
            stride: None,
            rate_hz: None,
        }
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> Result<std::path::PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    #[test]
    fn a_recording_is_standardised_with_the_stored_statistics() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = write(&dir, "r.csv", "ax,ay\n1,10\n3,30\n")?;
        let p = two();
        let x = p.load(&path, &Device::Cpu)?;
        assert_eq!(x.squeeze(0)?.to_vec2::<f32>()?, vec![vec![-1.0, -1.0], vec![1.0, 1.0]]);
        let three = ImuPreprocess {
            channels: vec!["a".into(), "b".into(), "c".into()],
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
            ..p.clone()
        };
        let e = three.load(&path, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("r.csv") && e.contains("2 channels"), "{e}");
        let bad = ImuPreprocess { std: vec![1.0, 0.0], ..p };
        let e = bad.stats().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("preprocess") && e.contains("std[1] of channel `ay` is 0"), "{e}");
        Ok(())
    }

    #[test]
    fn a_wrong_channel_count_in_an_npy_names_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let path = dir.path().join("r.npy");
        let x = Tensor::zeros((8, 3), candle_core::DType::F32, &Device::Cpu)?;
        braid_core::checkpoint::write_npy(
            &path,
            &braid_core::checkpoint::NpyArray::from_tensor(&x)?,
        )?;
        let e = two().load(&path, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("r.npy") && e.contains("3 channels") && e.contains("ax, ay"), "{e}");
        Ok(())
    }

    #[test]
    fn a_csv_time_column_is_no_channel_and_its_rate_is_checked() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tmp", e))?;
        let at_50 = write(&dir, "r50.csv", "time,ax,ay\n0.00,1,10\n0.02,3,30\n0.04,1,10\n")?;
        let at_100 = write(&dir, "r100.csv", "time_ms,ax,ay\n0,1,10\n10,3,30\n20,1,10\n")?;
        // No rate in the slot: the time column is still left out of the channels.
        assert_eq!(two().load(&at_100, &Device::Cpu)?.dims(), &[1, 3, 2]);
        let p = ImuPreprocess { rate_hz: Some(50.0), ..two() };
        assert_eq!(p.load(&at_50, &Device::Cpu)?.dims(), &[1, 3, 2]);
        let e = p.load(&at_100, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("r100.csv") && e.contains("100.0 Hz") && e.contains("50 Hz"), "{e}");
        let flat = write(&dir, "flat.csv", "t,ax,ay\n0,1,10\n0,3,30\n")?;
        let e = p.load(&flat, &Device::Cpu).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("flat.csv") && e.contains("does not increase"), "{e}");
        let e = ImuPreprocess { rate_hz: Some(0.0), ..two() }
            .stats()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("rate_hz"), "{e}");
        Ok(())
    }
}
