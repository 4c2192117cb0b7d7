//! Datasets Braid makes from what it has, written as LLaVA conversation datasets
//! ([`crate::conversation`]) with their media beside them, for OneLLM-style alignment and
//! instruction tuning (Han et al., "OneLLM: One Framework to Align All Modalities with
//! Language", CVPR 2024):
//!
//! - [`hapt_chat`]: HAPT IMU windows (`imu/*.npy`, `[window, 6]` f32) with questions about
//!   the activity, whether the person moves, and the postural transition;
//! - [`spoken_digits`]: "zero" to "nine" synthesised by espeak-ng over many voices, then
//!   resampled to 16 kHz, trimmed, padded to one second and noised by sox (`audio/*.wav`);
//! - [`easy_vqa`]: the fetched easy-VQA in the same layout (its images stay where they
//!   are), so the three modalities of a OneLLM-style model are scored alike.
//!
//! [`image_folder`] writes image-classification target sets for the few-shot adapters
//! (Fashion-MNIST, shapes-shift) in the `ImageFolder` layout.
//!
//! Two more write fusion datasets ([`crate::fusion`]: `fusion.json`, `train.safetensors`,
//! `test.safetensors`), for the fusion classifiers of MultiBench (Liang et al. 2021):
//!
//! - [`hapt_fusion`]: the HAPT windows of the classify recipe as two inputs, `acc` and
//!   `gyro`, with the user as group;
//! - [`av_digits`]: AV-MNIST-style pairs (Vielzeuf et al. 2018) of an MNIST digit with its
//!   leading principal components removed and the log-mel of a noised spoken digit.
//!
//! The conversation makers each write `train.json` and `test.json` (one question a sample), and
//! `captions_train.json` for the `align` stage (the placeholder, a caption request, a
//! caption as the answer) with `captions_test.json`, the held-out items' captions, to
//! score an aligned model on (and what later stages make it forget), into its folder;
//! media are named relative to it.
//!
//! **The question type is the last `_`-separated field of a sample's id**
//! ([`question_type`]): `u22_r0_w17_activity` asks the `activity` of window 17 of user 22's
//! recording 0, `test_00003_en-us+m3_digit` the `digit` of test clip 3 (spoken by voice
//! `en-us+m3`). An evaluation reports accuracy per type from the ids alone, so the files
//! need no field LLaVA lacks. Answers are short fixed phrases, for exact-match scoring.
//! The test file asks each question type that applies once per item. Phrasings and every
//! other choice come from the seed: the same seed gives byte-identical JSON.

pub mod av_digits;
pub mod easy_vqa;
pub mod hapt_chat;
pub mod hapt_fusion;
pub mod image_folder;
mod rng;
pub mod spoken_digits;
mod tools;

use std::fmt;
use std::path::{Path, PathBuf};

use braid_core::{Error, Result};

use crate::conversation::{write_json, NewSample};

/// The kinds of dataset `braid data make` knows.
pub const KINDS: [&str; 7] = [
    "hapt-chat",
    "spoken-digits",
    "easy-vqa",
    "hapt-fusion",
    "av-digits",
    "fashion-mnist",
    "shapes-shift",
];

/// The question-answer training file.
pub const TRAIN_FILE: &str = "train.json";
/// The evaluation file: each applicable question type once per item.
pub const TEST_FILE: &str = "test.json";
/// The captions of the training items, for the `align` stage.
pub const CAPTIONS_FILE: &str = "captions_train.json";
/// The captions of the test items, to score an `align` stage on.
pub const CAPTIONS_TEST_FILE: &str = "captions_test.json";

/// The question type of a sample id: its last `_`-separated field (`activity` of
/// `u22_r0_w17_activity`; the whole id when it has no `_`).
pub fn question_type(id: &str) -> &str {
    id.rsplit('_').next().unwrap_or(id)
}

/// What a maker wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The dataset's folder.
    pub dir: PathBuf,
    /// Media files written (windows, clips).
    pub media: usize,
    /// Each conversation file and its sample count.
    pub files: Vec<(&'static str, usize)>,
}

impl fmt::Display for Made {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} media files", self.dir.display(), self.media)?;
        for (name, n) in &self.files {
            write!(f, "; {name} {n} samples")?;
        }
        Ok(())
    }
}

/// Makes `dir` ready and returns `dir/media`. An absent `dir` is created; an existing one
/// that is not empty is an error unless `force`, which removes the maker's own outputs
/// there (the four conversation files and `media/*.ext`) and nothing else. A maker whose
/// media stay where they are passes an empty `media` (and gets `dir` back).
pub(crate) fn prepare(dir: &Path, force: bool, media: &str, ext: &str) -> Result<PathBuf> {
    let media_dir = dir.join(media);
    if dir.exists() {
        if !force && !is_empty(dir, &media_dir)? {
            return Err(Error::config(
                "out",
                format!(
                    "{} exists and is not empty; choose a new folder, or force (`--force`) to write over the dataset there",
                    dir.display()
                ),
            ));
        }
        for name in [TRAIN_FILE, TEST_FILE, CAPTIONS_FILE, CAPTIONS_TEST_FILE] {
            remove_if_file(&dir.join(name))?;
        }
        if !media.is_empty() && media_dir.is_dir() {
            for entry in std::fs::read_dir(&media_dir).map_err(|e| Error::io(&media_dir, e))? {
                let path = entry.map_err(|e| Error::io(&media_dir, e))?.path();
                if path.extension().is_some_and(|e| e == ext) {
                    remove_if_file(&path)?;
                }
            }
        }
    }
    std::fs::create_dir_all(&media_dir).map_err(|e| Error::io(&media_dir, e))?;
    Ok(media_dir)
}

/// A fusion dataset may be written to `dir`: it is absent or empty, or (with `force`) holds
/// a fusion dataset, which the new one replaces whole. `force` never replaces a folder
/// without `fusion.json`.
pub(crate) fn check_fusion_out(dir: &Path, force: bool) -> Result<()> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => return Ok(()),
    };
    if empty || (force && dir.join(crate::fusion::META_FILE).is_file()) {
        return Ok(());
    }
    let what = if force {
        "holds no fusion dataset (no fusion.json), so --force does not replace it"
    } else {
        "exists and is not empty; choose a new folder, or force (`--force`) to replace the fusion dataset there"
    };
    Err(Error::config("out", format!("{} {what}", dir.display())))
}

/// Whether `dir` holds nothing, or only an empty `media_dir` (as a failed run leaves it).
fn is_empty(dir: &Path, media_dir: &Path) -> Result<bool> {
    let entries = |d: &Path| -> Result<Vec<PathBuf>> {
        let list = std::fs::read_dir(d).map_err(|e| Error::io(d, e))?;
        list.map(|e| e.map(|e| e.path()).map_err(|e| Error::io(d, e))).collect()
    };
    Ok(match entries(dir)?.as_slice() {
        [] => true,
        [only] if only == media_dir && media_dir.is_dir() => entries(media_dir)?.is_empty(),
        _ => false,
    })
}

fn remove_if_file(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The samples of a dataset's four conversation files.
#[derive(Debug, Default)]
pub(crate) struct Splits {
    pub train: Vec<NewSample>,
    pub test: Vec<NewSample>,
    pub captions: Vec<NewSample>,
    pub captions_test: Vec<NewSample>,
}

impl Splits {
    /// The question samples' file of a split, then its captions' file.
    pub fn of(&mut self, train: bool) -> (&mut Vec<NewSample>, &mut Vec<NewSample>) {
        if train {
            (&mut self.train, &mut self.captions)
        } else {
            (&mut self.test, &mut self.captions_test)
        }
    }
}

/// Writes the four conversation files of a dataset, last (once its media exist).
pub(crate) fn write_splits(dir: &Path, media: usize, splits: &Splits) -> Result<Made> {
    let mut files = Vec::new();
    for (name, samples) in [
        (TRAIN_FILE, &splits.train),
        (TEST_FILE, &splits.test),
        (CAPTIONS_FILE, &splits.captions),
        (CAPTIONS_TEST_FILE, &splits.captions_test),
    ] {
        if samples.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: no samples for {name} (too few items for this split)",
                dir.display()
            )));
        }
        write_json(&dir.join(name), samples)?;
        files.push((name, samples.len()));
    }
    Ok(Made { dir: dir.to_path_buf(), media, files })
}

/// A one-question sample about one media file: `<placeholder>\n` then `question`.
pub(crate) fn ask(id: String, placeholder: &str, question: &str, answer: &str) -> NewSample {
    NewSample::single(id, format!("{placeholder}\n{question}"), answer.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_types_come_from_the_id() {
        assert_eq!(question_type("u22_r0_w17_activity"), "activity");
        assert_eq!(question_type("test_00003_en-us+m3_digit"), "digit");
        assert_eq!(question_type("plain"), "plain");
    }

    #[test]
    fn a_non_empty_folder_needs_force_which_removes_only_our_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("d");
        assert_eq!(prepare(&out, false, "imu", "npy").unwrap(), out.join("imu"));
        // Only the empty media folder, as a failed run leaves it: no force needed.
        prepare(&out, false, "imu", "npy").unwrap();
        std::fs::write(out.join("imu/a.npy"), b"x").unwrap();
        assert!(prepare(&out, false, "imu", "npy").is_err());
        for f in ["train.json", "notes.txt", "imu/a.npy", "imu/keep.csv"] {
            std::fs::write(out.join(f), b"x").unwrap();
        }
        let e = prepare(&out, false, "imu", "npy").unwrap_err().to_string();
        assert!(e.contains("is not empty") && e.contains("--force"), "{e}");
        prepare(&out, true, "imu", "npy").unwrap();
        let left = |p: &str| out.join(p).exists();
        assert!(!left("train.json") && !left("imu/a.npy"));
        assert!(left("notes.txt") && left("imu/keep.csv"));
    }
}
