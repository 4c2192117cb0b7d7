//! UCI HAPT raw recordings (Reyes-Ortiz et al., "Transition-Aware Human Activity
//! Recognition Using Smartphones", Neurocomputing 2016) in the `.npz` that `braid fetch
//! hapt` writes: `uNN_rK_imu` f32 `[T, 6]` (acc xyz in g, gyro xyz in rad/s, 50 Hz) and
//! `uNN_rK_label` i8 `[T]` (1-12, -1 unlabelled) for user NN's K-th recording.

use std::collections::BTreeMap;
use std::path::Path;

use braid_core::checkpoint::{read_npz, NpyArray, NpyData};
use braid_core::{Error, Result};

use super::{check_finite, ImuDataset, Recording, UNLABELLED};

/// HAPT's channels, in stored order.
pub const HAPT_CHANNELS: [&str; 6] = ["acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z"];

/// HAPT's activities (`activity_labels.txt`); stored label `k` is class `k - 1`.
pub const HAPT_CLASSES: [&str; 12] = [
    "walking",
    "walking_upstairs",
    "walking_downstairs",
    "sitting",
    "standing",
    "laying",
    "stand_to_sit",
    "sit_to_stand",
    "sit_to_lie",
    "lie_to_sit",
    "stand_to_lie",
    "lie_to_stand",
];

/// Reads every recording, ordered by user then recording; the subject is the user id.
pub fn read_hapt(path: impl AsRef<Path>) -> Result<ImuDataset> {
    let path = path.as_ref();
    let mut imu = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for (name, array) in read_npz(path)? {
        let Some((user, rec, kind)) = parse_key(&name) else {
            return Err(Error::format(
                path,
                format!("unexpected array `{name}` (want uNN_rK_imu / uNN_rK_label)"),
            ));
        };
        match kind {
            "imu" => imu.insert((user, rec), array),
            _ => labels.insert((user, rec), array),
        };
    }
    let mut recordings = Vec::with_capacity(imu.len());
    for ((user, rec), array) in imu {
        let name = format!("u{user:02}_r{rec}");
        let label = labels
            .remove(&(user, rec))
            .ok_or_else(|| Error::format(path, format!("{name}_imu has no {name}_label")))?;
        recordings.push(recording(path, name, user, array, label)?);
    }
    if let Some((user, rec)) = labels.keys().next() {
        return Err(Error::format(
            path,
            format!("u{user:02}_r{rec}_label has no matching _imu array"),
        ));
    }
    Ok(ImuDataset {
        recordings,
        channels: HAPT_CHANNELS.iter().map(|s| s.to_string()).collect(),
        classes: HAPT_CLASSES.iter().map(|s| s.to_string()).collect(),
    })
}

/// `u07_r2_imu` -> (7, 2, "imu").
fn parse_key(name: &str) -> Option<(u32, u32, &str)> {
    let rest = name.strip_prefix('u')?;
    let (user, rest) = rest.split_once("_r")?;
    let (rec, kind) = rest.split_once('_')?;
    matches!(kind, "imu" | "label").then_some(())?;
    Some((user.parse().ok()?, rec.parse().ok()?, kind))
}

fn recording(
    path: &Path,
    name: String,
    user: u32,
    imu: NpyArray,
    label: NpyArray,
) -> Result<Recording> {
    let bad = |msg: String| Error::format(path, format!("{name}: {msg}"));
    let (NpyData::F32(values), [t, 6]) = (imu.data, imu.shape.as_slice()) else {
        return Err(bad(format!("imu must be f32 [T, 6], got shape {:?}", imu.shape)));
    };
    let labels: Vec<i32> = match label.data {
        NpyData::I8(v) => v.into_iter().map(i32::from).collect(),
        NpyData::I32(v) => v,
        NpyData::I64(v) => v.into_iter().map(|x| x as i32).collect(),
        _ => return Err(bad("labels must be integers".into())),
    };
    if labels.len() != *t {
        return Err(bad(format!("{} labels for {t} samples", labels.len())));
    }
    let labels = labels
        .into_iter()
        .map(|l| match l {
            1..=12 => Ok(l - 1),
            -1 => Ok(UNLABELLED),
            other => Err(bad(format!("label {other} is outside 1..=12 and -1"))),
        })
        .collect::<Result<Vec<i32>>>()?;
    check_finite(path, &name, &values, 6)?;
    Ok(Recording { name, values, labels, subject: Some(user) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_core::checkpoint::write_npz;

    fn arr(shape: &[usize], data: NpyData) -> NpyArray {
        NpyArray { shape: shape.to_vec(), data }
    }

    #[test]
    fn reads_recordings_with_subjects_and_zero_based_classes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.npz");
        let arrays = vec![
            ("u02_r0_imu".to_string(), arr(&[2, 6], NpyData::F32(vec![0.5; 12]))),
            ("u02_r0_label".to_string(), arr(&[2], NpyData::I8(vec![-1, 5]))),
            ("u01_r1_imu".to_string(), arr(&[1, 6], NpyData::F32(vec![1.0; 6]))),
            ("u01_r1_label".to_string(), arr(&[1], NpyData::I8(vec![1]))),
        ];
        write_npz(&path, &arrays).unwrap();
        let ds = read_hapt(&path).unwrap();
        assert_eq!(ds.recordings[0].name, "u01_r1");
        assert_eq!(ds.recordings[0].subject, Some(1));
        assert_eq!(ds.recordings[1].labels, [UNLABELLED, 4]);
    }

    #[test]
    fn nan_in_a_recording_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.npz");
        let mut v = vec![0.0; 12];
        v[7] = f32::NAN;
        let arrays = vec![
            ("u03_r0_imu".to_string(), arr(&[2, 6], NpyData::F32(v))),
            ("u03_r0_label".to_string(), arr(&[2], NpyData::I8(vec![1, 1]))),
        ];
        write_npz(&path, &arrays).unwrap();
        let e = read_hapt(&path).unwrap_err().to_string();
        assert!(e.contains("u03_r0: value NaN at time step 1, channel 1"), "{e}");
    }

    #[test]
    fn reads_the_fetched_hapt() {
        let Some(dir) = crate::imu::fetched_dataset("hapt") else { return };
        let ds = read_hapt(dir.join("hapt.npz")).unwrap();
        assert_eq!(ds.recordings.len(), 61);
        let subjects: std::collections::BTreeSet<_> =
            ds.recordings.iter().filter_map(|r| r.subject).collect();
        assert_eq!(subjects.len(), 30);
    }
}
