//! Sliding windows over recordings (the fixed-width windows of Anguita et al. 2013:
//! 2.56 s, 50 % overlap on HAPT), each labelled by the majority of its samples and keeping
//! its subject, so splits can be made by subject.

use braid_core::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{ImuDataset, UNLABELLED};

/// Window length and step, in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowConfig {
    /// Samples per window.
    pub length: usize,
    /// Samples between window starts.
    pub stride: usize,
    /// Drop windows whose majority is unlabelled.
    pub drop_unlabelled: bool,
}

impl Default for WindowConfig {
    /// 128 samples (2.56 s at 50 Hz) every 64: the UCI HAR convention.
    fn default() -> Self {
        Self { length: 128, stride: 64, drop_unlabelled: true }
    }
}

/// One window: where it is and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Index of the recording in the dataset.
    pub recording: usize,
    /// First sample.
    pub start: usize,
    /// Majority class; `None` when unlabelled samples outnumber every class.
    pub label: Option<usize>,
    /// The recording's subject.
    pub subject: Option<u32>,
}

/// Every window of `cfg.length` samples starting at multiples of `cfg.stride`; recordings
/// shorter than one window give none. The label is the most frequent class (ties go to the
/// lower class index), or `None` when unlabelled samples are more frequent than it.
pub fn sliding_windows(ds: &ImuDataset, cfg: &WindowConfig) -> Result<Vec<Window>> {
    if cfg.length == 0 || cfg.stride == 0 {
        return Err(Error::config(
            "window",
            format!("length and stride must be positive, got {cfg:?}"),
        ));
    }
    let mut out = Vec::new();
    let mut counts = vec![0usize; ds.classes.len()];
    for (r, rec) in ds.recordings.iter().enumerate() {
        let mut start = 0;
        while start + cfg.length <= rec.len() {
            let label = majority(&rec.labels[start..start + cfg.length], &mut counts)?;
            if label.is_some() || !cfg.drop_unlabelled {
                out.push(Window { recording: r, start, label, subject: rec.subject });
            }
            start += cfg.stride;
        }
    }
    Ok(out)
}

fn majority(labels: &[i32], counts: &mut [usize]) -> Result<Option<usize>> {
    counts.iter_mut().for_each(|c| *c = 0);
    let mut unlabelled = 0;
    for &l in labels {
        match usize::try_from(l).ok().and_then(|k| counts.get_mut(k)) {
            Some(c) => *c += 1,
            None if l == UNLABELLED => unlabelled += 1,
            None => return Err(Error::Invalid(format!("label {l} has no class name"))),
        }
    }
    // max_by_key returns the last maximum; iterate in reverse so ties go to the lower index.
    let best = counts.iter().enumerate().rev().max_by_key(|(_, &c)| c);
    Ok(best.filter(|(_, &c)| c > 0 && c >= unlabelled).map(|(k, _)| k))
}

/// One window per recording, covering all of it (UEA cases are already segmented).
pub fn whole_recordings(ds: &ImuDataset) -> Result<Vec<Window>> {
    let mut counts = vec![0usize; ds.classes.len()];
    ds.recordings
        .iter()
        .enumerate()
        .map(|(r, rec)| {
            Ok(Window {
                recording: r,
                start: 0,
                label: majority(&rec.labels, &mut counts)?,
                subject: rec.subject,
            })
        })
        .collect()
}

/// The windows' samples stacked: `[n, length, channels]`.
pub fn window_batch(ds: &ImuDataset, windows: &[Window], length: usize) -> Result<Tensor> {
    let parts = windows
        .iter()
        .map(|w| ds.slice(w.recording, w.start, length))
        .collect::<Result<Vec<_>>>()?;
    if parts.is_empty() {
        return Err(Error::Invalid("no windows to batch".into()));
    }
    Ok(Tensor::stack(&parts, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imu::Recording;

    fn ds() -> ImuDataset {
        let labels = vec![0, 0, 1, 1, 1, -1, -1, -1, -1, 0];
        ImuDataset {
            recordings: vec![
                Recording {
                    name: "a".into(),
                    values: (0..10).map(|v| v as f32).collect(),
                    labels,
                    subject: Some(7),
                },
                Recording {
                    name: "b".into(),
                    values: vec![0.0; 3],
                    labels: vec![0; 3],
                    subject: Some(8),
                },
            ],
            channels: vec!["x".into()],
            classes: vec!["p".into(), "q".into()],
        }
    }

    #[test]
    fn windows_take_the_majority_label_and_keep_the_subject() {
        let cfg = WindowConfig { length: 4, stride: 2, drop_unlabelled: false };
        let w = sliding_windows(&ds(), &cfg).unwrap();
        let got: Vec<_> = w.iter().map(|w| (w.start, w.label, w.subject)).collect();
        // [0,0,1,1] tie -> 0; [1,1,1,-1] -> 1; [1,-1,-1,-1] -> none; the 3-sample recording is too short.
        assert_eq!(
            got,
            [(0, Some(0), Some(7)), (2, Some(1), Some(7)), (4, None, Some(7)), (6, None, Some(7))]
        );
        let kept = sliding_windows(&ds(), &WindowConfig { drop_unlabelled: true, ..cfg }).unwrap();
        assert_eq!(kept.len(), 2);
        let batch = window_batch(&ds(), &kept, 4).unwrap();
        assert_eq!(batch.dims(), [2, 4, 1]);
        assert_eq!(
            batch.flatten_all().unwrap().to_vec1::<f32>().unwrap()[4..],
            [2.0, 3.0, 4.0, 5.0]
        );
    }

    #[test]
    fn zero_stride_is_a_config_error() {
        let e =
            sliding_windows(&ds(), &WindowConfig { length: 4, stride: 0, drop_unlabelled: true })
                .unwrap_err();
        let whole = whole_recordings(&ds()).unwrap();
        assert_eq!((whole.len(), whole[0].label, whole[1].label), (2, None, Some(0)));
        assert!(e.to_string().starts_with("config field `window`"), "{e}");
    }
}
