//! HAPT (Reyes-Ortiz et al., "Transition-Aware Human Activity Recognition Using
//! Smartphones", Neurocomputing 2016) as an IMU chat dataset: sliding windows over the
//! recordings ([`crate::imu::sliding_windows`], majority label, windows whose majority is
//! unlabelled dropped), each written as `imu/uNN_rK_wJ.npy` (f32 `[window, 6]`, raw acc xyz
//! in g and gyro xyz in rad/s; J is the window's start over the stride), with questions
//! whose answers come from the labels:
//!
//! - `activity` ([`ACTIVITIES`]) and `motion` (`moving` for the three walking activities,
//!   `still` otherwise), for windows whose majority is one of the six activities;
//! - `transition` ([`TRANSITIONS`], "sit to stand"), for windows in which one postural
//!   transition covers at least a quarter of the samples.
//!
//! A window whose majority is a transition (it lies within one) gets only the
//! `transition` question: none of the six activities describes it. Users 1 to
//! [`LAST_TRAIN_USER`] are the training split, the others (22 to 30) the test split.

use std::path::Path;

use braid_core::checkpoint::{npy_bytes, NpyArray, NpyData};
use braid_core::{Error, Result};

use super::rng::Rng;
use super::{ask, prepare, write_splits, Made, Splits};
use crate::conversation::NewSample;
use crate::imu::{sliding_windows, ImuDataset, WindowConfig};

/// The last user of the training split; the test split has the rest.
pub const LAST_TRAIN_USER: u32 = 21;

/// Answers of `activity`, by HAPT class (stored label - 1).
pub const ACTIVITIES: [&str; 6] =
    ["walking", "walking upstairs", "walking downstairs", "sitting", "standing", "laying"];

/// Answers of `motion`.
pub const MOTIONS: [&str; 2] = ["moving", "still"];

/// Answers of `transition`, by HAPT class - 6 (stored labels 7 to 12).
pub const TRANSITIONS: [&str; 6] =
    ["stand to sit", "sit to stand", "sit to lie", "lie to sit", "stand to lie", "lie to stand"];

const ACTIVITY_QUESTIONS: [&str; 5] = [
    "What activity is the person doing?",
    "What is the person doing?",
    "Which activity does this motion recording show?",
    "What is the wearer of the sensor doing?",
    "Name the activity in this recording.",
];

const MOTION_QUESTIONS: [&str; 4] = [
    "Is the person moving or still?",
    "Is the wearer moving or keeping still?",
    "Moving or still: which describes the person?",
    "Does the recording show the person moving or still?",
];

const TRANSITION_QUESTIONS: [&str; 4] = [
    "Which postural transition does the person make?",
    "How does the person's posture change?",
    "What change of posture happens in this recording?",
    "Which transition between postures is shown?",
];

const CAPTION_REQUESTS: [&str; 4] = [
    "Describe the motion.",
    "Describe what the person is doing.",
    "Describe this motion recording.",
    "Give a short description of the movement.",
];

const ACTIVITY_CAPTIONS: [&str; 6] = [
    "a person walking",
    "a person walking upstairs",
    "a person walking downstairs",
    "a person sitting",
    "a person standing",
    "a person lying down",
];

const TRANSITION_CAPTIONS: [&str; 6] = [
    "a person sitting down from standing",
    "a person standing up from sitting",
    "a person lying down from sitting",
    "a person sitting up from lying down",
    "a person lying down from standing",
    "a person standing up from lying down",
];

/// The kinds of question about a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuestionType {
    /// Which of the six activities.
    Activity,
    /// Moving or still.
    Motion,
    /// Which postural transition.
    Transition,
}

impl QuestionType {
    /// The id suffix: `activity`, `motion`, `transition`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activity => "activity",
            Self::Motion => "motion",
            Self::Transition => "transition",
        }
    }

    /// Every answer it takes.
    pub fn answers(self) -> &'static [&'static str] {
        match self {
            Self::Activity => &ACTIVITIES,
            Self::Motion => &MOTIONS,
            Self::Transition => &TRANSITIONS,
        }
    }

    fn phrasings(self) -> &'static [&'static str] {
        match self {
            Self::Activity => &ACTIVITY_QUESTIONS,
            Self::Motion => &MOTION_QUESTIONS,
            Self::Transition => &TRANSITION_QUESTIONS,
        }
    }
}

/// How HAPT is cut and asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaptChatOptions {
    /// Samples per window (128: 2.56 s at 50 Hz).
    pub window: usize,
    /// Samples between window starts.
    pub stride: usize,
    /// Chooses the phrasings.
    pub seed: u64,
    /// Write over the dataset in a folder that is not empty.
    pub force: bool,
}

impl Default for HaptChatOptions {
    /// The UCI HAR windows: 128 samples every 64.
    fn default() -> Self {
        Self { window: 128, stride: 64, seed: 0, force: false }
    }
}

/// What a window shows, from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFacts {
    /// Index in [`ACTIVITIES`], when the majority label is one of them.
    pub activity: Option<usize>,
    /// Index in [`TRANSITIONS`] of the most frequent transition, when it covers at least
    /// a quarter of the window.
    pub transition: Option<usize>,
}

impl WindowFacts {
    /// The facts of a window with zero-based HAPT classes `labels` (as
    /// [`crate::imu::read_hapt`] gives them, -1 unlabelled) and majority class `majority`.
    pub fn of(labels: &[i32], majority: Option<usize>) -> Self {
        let n = ACTIVITIES.len();
        let mut counts = [0usize; TRANSITIONS.len()];
        for &l in labels {
            if let Some(c) = usize::try_from(l).ok().and_then(|l| l.checked_sub(n)) {
                if let Some(slot) = counts.get_mut(c) {
                    *slot += 1;
                }
            }
        }
        // Reverse so that ties go to the lower index, as the majority label does.
        let top = counts.iter().enumerate().rev().max_by_key(|(_, &c)| c);
        let transition = top.filter(|(_, &c)| c > 0 && 4 * c >= labels.len()).map(|(k, _)| k);
        Self { activity: majority.filter(|&m| m < n), transition }
    }

    /// The questions that apply, with their answers.
    pub fn questions(&self) -> Vec<(QuestionType, &'static str)> {
        let mut out = Vec::new();
        if let Some(a) = self.activity {
            out.push((QuestionType::Activity, ACTIVITIES[a]));
            // The first three activities are walking on the flat, up and down.
            out.push((QuestionType::Motion, MOTIONS[usize::from(a >= 3)]));
        }
        if let Some(t) = self.transition {
            out.push((QuestionType::Transition, TRANSITIONS[t]));
        }
        out
    }

    /// "a person walking upstairs": the activity, else the transition.
    pub fn caption(&self) -> Option<&'static str> {
        match (self.activity, self.transition) {
            (Some(a), _) => Some(ACTIVITY_CAPTIONS[a]),
            (None, Some(t)) => Some(TRANSITION_CAPTIONS[t]),
            (None, None) => None,
        }
    }
}

/// One of `phrasings`, chosen by `seed` for the sample `id`.
fn phrase(seed: u64, id: &str, phrasings: &'static [&'static str]) -> &'static str {
    Rng::keyed(seed, id).pick(phrasings).copied().unwrap_or_default()
}

/// Writes the HAPT chat dataset into `dir` (see the module's documentation); `hapt` is
/// [`crate::imu::read_hapt`]'s dataset, or a part of it.
pub fn make_hapt_chat(hapt: &ImuDataset, dir: &Path, opts: &HaptChatOptions) -> Result<Made> {
    if hapt.num_channels() != 6 || hapt.classes.len() != 12 {
        return Err(Error::Invalid(format!(
            "hapt-chat reads HAPT's 6 channels and 12 classes, got {} channels and {} classes",
            hapt.num_channels(),
            hapt.classes.len()
        )));
    }
    let cfg = WindowConfig { length: opts.window, stride: opts.stride, drop_unlabelled: true };
    let windows = sliding_windows(hapt, &cfg)?;
    let imu_dir = prepare(dir, opts.force, "imu", "npy")?;
    let mut splits = Splits::default();
    let mut media = 0;
    for w in &windows {
        let Some(rec) = hapt.recordings.get(w.recording) else { continue };
        let Some(user) = w.subject else {
            return Err(Error::Invalid(format!(
                "{}: no user id; hapt-chat splits by user",
                rec.name
            )));
        };
        check_name(&rec.name)?;
        let span = w.start..w.start + opts.window;
        let Some(labels) = rec.labels.get(span.clone()) else { continue };
        let facts = WindowFacts::of(labels, w.label);
        let questions = facts.questions();
        if questions.is_empty() {
            continue;
        }
        let name = format!("{}_w{}", rec.name, w.start / opts.stride);
        let file = format!("imu/{name}.npy");
        let values = rec.values.get(span.start * 6..span.end * 6).unwrap_or_default();
        let array = NpyArray { shape: vec![opts.window, 6], data: NpyData::F32(values.to_vec()) };
        // Not synced one by one: the conversation files, written last, are.
        let path = imu_dir.join(format!("{name}.npy"));
        std::fs::write(&path, npy_bytes(&array)?).map_err(|e| Error::io(&path, e))?;
        media += 1;
        let (split, captions) = splits.of(user <= LAST_TRAIN_USER);
        for (kind, answer) in questions {
            let id = format!("{name}_{}", kind.as_str());
            let question = phrase(opts.seed, &id, kind.phrasings());
            split.push(with_imu(ask(id, "<imu>", question, answer), &file));
        }
        if let Some(caption) = facts.caption() {
            let id = format!("{name}_caption");
            let request = phrase(opts.seed, &id, &CAPTION_REQUESTS);
            captions.push(with_imu(ask(id, "<imu>", request, caption), &file));
        }
    }
    write_splits(dir, media, &splits)
}

fn with_imu(mut sample: NewSample, file: &str) -> NewSample {
    sample.imu = vec![file.to_string()];
    sample
}

/// A recording name becomes a file name and the start of ids: letters, digits, `_`, `-`.
fn check_name(name: &str) -> Result<()> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "recording name `{name}` cannot name a file (letters, digits, `_` and `-` only)"
    )))
}

#[cfg(test)]
mod tests;
