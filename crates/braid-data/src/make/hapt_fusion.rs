//! HAPT (Reyes-Ortiz et al. 2016) as a fusion dataset ([`crate::fusion`]): the windows of
//! `recipes/hapt/cnn.toml` (128 samples every 64, majority label, windows whose majority is
//! unlabelled or a postural transition dropped, no purity filter), each split into two
//! inputs, `acc` (accelerometer x, y, z in g) and `gyro` (gyroscope x, y, z in rad/s), both
//! `[3, window]` in raw units: a model standardises them itself. The classes are the six
//! activities; the group of a window is its user. Users 1 to [`LAST_TRAIN_USER`] are the
//! training split, the others (22 to 30) the test split.

use std::path::Path;

use braid_core::{Error, Modality, Result};
use candle_core::{Device, Tensor};

use super::hapt_chat::LAST_TRAIN_USER;
use crate::fusion::{FusionDataset, FusionInputMeta, FusionMeta, FusionSplit};
use crate::imu::{sliding_windows, ImuDataset, WindowConfig};

/// The classes: HAPT's six activities, named as the classify recipe names them.
pub const CLASSES: [&str; 6] =
    ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"];

/// The inputs: name and the HAPT channels each takes.
const INPUTS: [(&str, std::ops::Range<usize>); 2] = [("acc", 0..3), ("gyro", 3..6)];

/// How HAPT is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaptFusionOptions {
    /// Samples per window (128: 2.56 s at 50 Hz).
    pub window: usize,
    /// Samples between window starts.
    pub stride: usize,
    /// Replace the fusion dataset in a folder that is not empty.
    pub force: bool,
}

impl Default for HaptFusionOptions {
    /// The UCI HAR windows: 128 samples every 64.
    fn default() -> Self {
        Self { window: 128, stride: 64, force: false }
    }
}

/// The windows of one split, gathered.
#[derive(Default)]
struct Gathered {
    /// Per input: `[n, 3, window]` values.
    values: [Vec<f32>; 2],
    labels: Vec<usize>,
    users: Vec<usize>,
}

impl Gathered {
    fn split(self, window: usize) -> Result<FusionSplit> {
        let n = self.labels.len();
        let [acc, gyro] = self.values;
        let inputs = [acc, gyro]
            .into_iter()
            .map(|v| Tensor::from_vec(v, (n, 3, window), &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(FusionSplit { inputs, labels: self.labels, groups: Some(self.users) })
    }
}

/// The fusion dataset of `hapt` ([`crate::imu::read_hapt`]'s, or a part of it), written to
/// `dir` (see the module's documentation).
pub fn make_hapt_fusion(
    hapt: &ImuDataset,
    dir: &Path,
    opts: &HaptFusionOptions,
) -> Result<FusionDataset> {
    if hapt.num_channels() != 6 || hapt.classes.len() != 12 {
        return Err(Error::Invalid(format!(
            "hapt-fusion reads HAPT's 6 channels and 12 classes, got {} channels and {} classes",
            hapt.num_channels(),
            hapt.classes.len()
        )));
    }
    super::check_fusion_out(dir, opts.force)?;
    let cfg = WindowConfig { length: opts.window, stride: opts.stride, drop_unlabelled: true };
    let (mut train, mut test) = (Gathered::default(), Gathered::default());
    for w in sliding_windows(hapt, &cfg)? {
        // Majority a postural transition (or unlabelled): not one of the six classes.
        let Some(label) = w.label.filter(|&l| l < CLASSES.len()) else { continue };
        let Some(rec) = hapt.recordings.get(w.recording) else { continue };
        let Some(user) = w.subject else {
            return Err(Error::Invalid(format!(
                "{}: no user id; hapt-fusion splits by user",
                rec.name
            )));
        };
        let Some(values) = rec.values.get(w.start * 6..(w.start + opts.window) * 6) else {
            continue;
        };
        let g = if user <= LAST_TRAIN_USER { &mut train } else { &mut test };
        for ((_, channels), out) in INPUTS.iter().zip(&mut g.values) {
            // [window, 6] samples -> [3, window] channels.
            for c in channels.clone() {
                out.extend(values.iter().skip(c).step_by(6));
            }
        }
        g.labels.push(label);
        g.users.push(user as usize);
    }
    let input = |name: &str| FusionInputMeta {
        name: name.into(),
        modality: Modality::Imu,
        shape: vec![3, opts.window],
    };
    let meta = FusionMeta {
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        inputs: INPUTS.iter().map(|(name, _)| input(name)).collect(),
        about: format!(
            "UCI HAPT (Reyes-Ortiz et al. 2016, CC BY 4.0): windows of {} samples (50 Hz) every \
             {}, majority label among the six activities; acc in g, gyro in rad/s, raw; group \
             = user; users 1-{LAST_TRAIN_USER} train, the rest test",
            opts.window, opts.stride
        ),
    };
    let ds =
        FusionDataset { meta, train: train.split(opts.window)?, test: test.split(opts.window)? };
    ds.write(dir)?;
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imu::{read_hapt, Recording, HAPT_CHANNELS};

    /// Users 1 and 22; 40 samples: 20 walking, 20 sit-to-stand (a transition).
    fn hapt() -> ImuDataset {
        let rec = |user: u32| Recording {
            name: format!("u{user:02}_r0"),
            values: (0..40 * 6).map(|v| (v + 1000 * user) as f32).collect(),
            labels: [vec![0; 20], vec![7; 20]].concat(),
            subject: Some(user),
        };
        ImuDataset {
            recordings: vec![rec(1), rec(22)],
            channels: HAPT_CHANNELS.iter().map(|s| s.to_string()).collect(),
            classes: crate::imu::HAPT_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn windows_split_into_acc_and_gyro_by_user() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hf");
        let opts = HaptFusionOptions { window: 8, stride: 8, force: false };
        let ds = make_hapt_fusion(&hapt(), &out, &opts).unwrap();
        // Windows at 0, 8, 16 (walking majority; 16..24 ties 4-4, the lower class wins);
        // 24 and 32 are sit-to-stand and dropped.
        assert_eq!((ds.train.len(), ds.test.len()), (3, 3));
        assert_eq!(ds.train.groups, Some(vec![1; 3]));
        assert_eq!(ds.test.groups, Some(vec![22; 3]));
        assert_eq!(ds.train.labels, [0, 0, 0]);
        let acc = ds.train.inputs[0].get(1).unwrap().to_vec2::<f32>().unwrap();
        let gyro = ds.train.inputs[1].get(1).unwrap().to_vec2::<f32>().unwrap();
        // Window 1 starts at sample 8: value 1000 + 8 * 6 + channel, then + 6 a sample.
        assert_eq!(acc[1][..2], [1049.0, 1055.0]);
        assert_eq!(gyro[2][..2], [1053.0, 1059.0]);
        assert_eq!(FusionDataset::load(&out).unwrap().test.inputs[1].dims(), [3, 3, 8]);
        let e = make_hapt_fusion(&hapt(), &out, &opts).unwrap_err().to_string();
        assert!(e.contains("--force"), "{e}");
        make_hapt_fusion(&hapt(), &out, &HaptFusionOptions { force: true, ..opts }).unwrap();
    }

    #[test]
    fn the_fetched_hapt_gives_the_classify_recipes_windows() {
        let Some(dir) = crate::imu::fetched_dataset("hapt") else { return };
        let hapt = read_hapt(dir.join("hapt.npz")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let ds = make_hapt_fusion(&hapt, &out.path().join("hf"), &Default::default()).unwrap();
        eprintln!("hapt-fusion: {ds}");
        assert_eq!(ds.test.len(), 3799);
        // The 11,729 activity windows of `braid data stats hapt`, less the test users'.
        assert_eq!(ds.train.len(), 7930);
        assert_eq!(ds.train.inputs[0].dims(), [ds.train.len(), 3, 128]);
        assert!(ds.train.class_counts(6).iter().all(|&c| c > 500));
    }
}
