//! Fusion datasets: several inputs of one sample (an image and a clip, the accelerometer and
//! the gyroscope) and a class, for the late / tensor / attention fusion classifiers of
//! MultiBench (Liang et al., "MultiBench: Multiscale Benchmarks for Multimodal
//! Representation Learning", NeurIPS 2021).
//!
//! A fusion dataset is a folder:
//! - [`META_FILE`] (`fusion.json`): `{"classes": [...], "inputs": [{"name": "acc",
//!   "modality": "imu", "shape": [3, 128]}, ...], "about": "..."}`; unknown fields are
//!   rejected;
//! - [`TRAIN_FILE`] and [`TEST_FILE`]: one f32 tensor per input, named as the input, of
//!   shape `[n, ...shape]`; [`LABEL`], U32 `[n]`; optionally [`GROUP`], U32 `[n]` (the
//!   subject or voice of each sample). No other tensor.
//!
//! [`FusionDataset::load`] checks all of it and fails with one line naming the file and the
//! tensor or field; [`FusionDataset::write`] checks the same, then replaces the folder at
//! once.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use braid_core::{Error, Modality, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// The description of a fusion dataset.
pub const META_FILE: &str = "fusion.json";
/// The training split.
pub const TRAIN_FILE: &str = "train.safetensors";
/// The test split.
pub const TEST_FILE: &str = "test.safetensors";
/// The class of each sample, U32 `[n]`.
pub const LABEL: &str = "label";
/// The subject (or voice) of each sample, U32 `[n]`, optional.
pub const GROUP: &str = "group";

/// One input of every sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionInputMeta {
    /// The tensor's name in each split (`acc`).
    pub name: String,
    /// What the signal is.
    pub modality: Modality,
    /// The shape of one sample (`[3, 128]`).
    pub shape: Vec<usize>,
}

/// `fusion.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionMeta {
    /// Class names, by label.
    pub classes: Vec<String>,
    /// The inputs, in the order of [`FusionSplit::inputs`].
    pub inputs: Vec<FusionInputMeta>,
    /// Where the data came from and how it was made.
    #[serde(default)]
    pub about: String,
}

impl FusionMeta {
    /// The index of the input `name`.
    pub fn input(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.name == name)
    }

    /// Classes and inputs make sense; errors name `file` and the field.
    fn validate(&self, file: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::format(file, msg));
        if self.classes.is_empty() {
            return bad("`classes` is empty".into());
        }
        if let Some(c) =
            self.classes.iter().enumerate().find(|(i, c)| self.classes[..*i].contains(c))
        {
            return bad(format!("`classes`: `{}` is listed twice", c.1));
        }
        if self.inputs.is_empty() {
            return bad("`inputs` is empty: a fusion dataset has at least one input".into());
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let name = &input.name;
            if self.inputs[..i].iter().any(|o| &o.name == name) {
                return bad(format!("`inputs`: the name `{name}` is used twice"));
            }
            if name.is_empty() || name == LABEL || name == GROUP {
                return bad(format!(
                    "`inputs`: `{name}` cannot name an input (empty, `{LABEL}` or `{GROUP}`)"
                ));
            }
            if input.shape.is_empty() || input.shape.contains(&0) {
                return bad(format!(
                    "`inputs`: input `{name}` has shape {:?}; want one or more non-zero dims",
                    input.shape
                ));
            }
        }
        Ok(())
    }
}

/// One split: every input of every sample, its class and its group.
#[derive(Debug, Clone)]
pub struct FusionSplit {
    /// Per input of [`FusionMeta::inputs`], in that order: f32 `[n, ...shape]` on the CPU.
    pub inputs: Vec<Tensor>,
    /// The class of each sample.
    pub labels: Vec<usize>,
    /// The subject or voice of each sample, when known.
    pub groups: Option<Vec<usize>>,
}

impl FusionSplit {
    /// Samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Samples per class, for `classes` classes.
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l) {
                *c += 1;
            }
        }
        counts
    }

    /// Everything [`FusionDataset::load`] checks of a split, against `meta`; errors name
    /// `file` and the tensor.
    fn validate(&self, meta: &FusionMeta, file: &Path) -> Result<()> {
        let bad = |msg: String| Err(Error::format(file, msg));
        let n = self.len();
        if n == 0 {
            return bad("no samples: the split is empty".into());
        }
        if self.inputs.len() != meta.inputs.len() {
            return bad(format!(
                "{} input tensors for the {} inputs of {META_FILE}",
                self.inputs.len(),
                meta.inputs.len()
            ));
        }
        for (t, input) in self.inputs.iter().zip(&meta.inputs) {
            let name = &input.name;
            if t.dtype() != DType::F32 {
                return bad(format!("tensor `{name}` is {:?}; expected f32", t.dtype()));
            }
            let dims = t.dims();
            if dims.len() != input.shape.len() + 1 || dims[1..] != input.shape[..] {
                return bad(format!(
                    "tensor `{name}`: per-sample shape {:?}, expected {:?} ({META_FILE})",
                    dims.get(1..).unwrap_or_default(),
                    input.shape
                ));
            }
            if dims[0] != n {
                return bad(format!("tensor `{name}` has {} samples, `{LABEL}` has {n}", dims[0]));
            }
            check_finite(t, name, file)?;
        }
        let classes = meta.classes.len();
        if let Some((i, l)) = self.labels.iter().enumerate().find(|(_, &l)| l >= classes) {
            return bad(format!(
                "tensor `{LABEL}`: sample {i} has label {l}, but there are {classes} classes"
            ));
        }
        if let Some(g) = &self.groups {
            if g.len() != n {
                return bad(format!("tensor `{GROUP}` has {} samples, `{LABEL}` has {n}", g.len()));
            }
        }
        Ok(())
    }

    /// Reads `file` for `meta` (not yet validated).
    fn read(meta: &FusionMeta, file: &Path) -> Result<Self> {
        std::fs::metadata(file).map_err(|e| Error::io(file, e))?;
        let mut tensors = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
            Error::format(file, format!("not a readable safetensors file: {}", first_line(e)))
        })?;
        let mut take = |name: &str, what: &str| {
            tensors
                .remove(name)
                .ok_or_else(|| Error::format(file, format!("no tensor `{name}` ({what})")))
        };
        let inputs = meta
            .inputs
            .iter()
            .map(|i| take(&i.name, &format!("an input of {META_FILE}")))
            .collect::<Result<Vec<_>>>()?;
        let labels = indices(&take(LABEL, "the class of each sample")?, LABEL, file)?;
        let groups = match tensors.remove(GROUP) {
            Some(t) => Some(indices(&t, GROUP, file)?),
            None => None,
        };
        let mut extra: Vec<&String> = tensors.keys().collect();
        extra.sort();
        if let Some(name) = extra.first() {
            return Err(Error::format(
                file,
                format!(
                    "tensor `{name}` is neither an input of {META_FILE} nor `{LABEL}` / `{GROUP}`"
                ),
            ));
        }
        Ok(Self { inputs, labels, groups })
    }

    /// The tensors written to a split's file.
    fn tensors(&self, meta: &FusionMeta) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (t, input) in self.inputs.iter().zip(&meta.inputs) {
            out.insert(input.name.clone(), t.to_device(&Device::Cpu)?.contiguous()?);
        }
        out.insert(LABEL.to_string(), index_tensor(&self.labels, LABEL)?);
        if let Some(g) = &self.groups {
            out.insert(GROUP.to_string(), index_tensor(g, GROUP)?);
        }
        Ok(out)
    }
}

/// A whole fusion dataset.
#[derive(Debug, Clone)]
pub struct FusionDataset {
    /// `fusion.json`.
    pub meta: FusionMeta,
    /// `train.safetensors`.
    pub train: FusionSplit,
    /// `test.safetensors`.
    pub test: FusionSplit,
}

impl FusionDataset {
    /// Reads and checks the dataset in `dir` (see the module's documentation).
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: FusionMeta =
            serde_json::from_str(&text).map_err(|e| Error::format(&meta_path, e.to_string()))?;
        meta.validate(&meta_path)?;
        let split = |file: &str| -> Result<FusionSplit> {
            let path = dir.join(file);
            let s = FusionSplit::read(&meta, &path)?;
            s.validate(&meta, &path)?;
            Ok(s)
        };
        let (train, test) = (split(TRAIN_FILE)?, split(TEST_FILE)?);
        Ok(Self { meta, train, test })
    }

    /// Checks the dataset as [`Self::load`] does, then writes it as the folder `dir`,
    /// replacing whatever was there once the new folder is complete and on disk.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let meta_path = dir.join(META_FILE);
        self.meta.validate(&meta_path)?;
        self.train.validate(&self.meta, &dir.join(TRAIN_FILE))?;
        self.test.validate(&self.meta, &dir.join(TEST_FILE))?;
        let json = serde_json::to_string_pretty(&self.meta)
            .map_err(|e| Error::format(&meta_path, e.to_string()))?;
        braid_core::fsx::replace_dir(dir, |tmp| {
            braid_core::fsx::write_file(&tmp.join(META_FILE), json.as_bytes())?;
            for (file, split) in [(TRAIN_FILE, &self.train), (TEST_FILE, &self.test)] {
                let path = tmp.join(file);
                candle_core::safetensors::save(&split.tensors(&self.meta)?, &path)
                    .map_err(|e| Error::format(&path, first_line(e)))?;
            }
            Ok(())
        })
    }
}

impl fmt::Display for FusionDataset {
    /// `train 7352, test 3799; acc imu [3, 128], gyro imu [3, 128]; 6 classes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "train {}, test {}; ", self.train.len(), self.test.len())?;
        let inputs: Vec<String> = self
            .meta
            .inputs
            .iter()
            .map(|i| format!("{} {} {:?}", i.name, i.modality.name(), i.shape))
            .collect();
        write!(f, "{}; {} classes", inputs.join(", "), self.meta.classes.len())
    }
}

/// A U32 `[n]` tensor as indices.
fn indices(t: &Tensor, name: &str, file: &Path) -> Result<Vec<usize>> {
    if t.dtype() != DType::U32 || t.rank() != 1 {
        return Err(Error::format(
            file,
            format!("tensor `{name}` is {:?} {:?}; expected U32 [n]", t.dtype(), t.dims()),
        ));
    }
    Ok(t.to_vec1::<u32>()?.into_iter().map(|v| v as usize).collect())
}

fn index_tensor(values: &[usize], name: &str) -> Result<Tensor> {
    let v = values
        .iter()
        .map(|&v| u32::try_from(v))
        .collect::<std::result::Result<Vec<u32>, _>>()
        .map_err(|_| Error::Invalid(format!("tensor `{name}`: a value does not fit in u32")))?;
    Ok(Tensor::from_vec(v, values.len(), &Device::Cpu)?)
}

/// Fails on the first NaN or infinity of `t`, naming the sample.
fn check_finite(t: &Tensor, name: &str, file: &Path) -> Result<()> {
    let n = t.dim(0)?.max(1);
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    let per_sample = values.len() / n;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::format(
            file,
            format!(
                "tensor `{name}`: non-finite value {} in sample {}",
                values[i],
                i / per_sample.max(1)
            ),
        ));
    }
    Ok(())
}

fn first_line(e: candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests;
