//! Conversation datasets in the LLaVA layout (Liu et al., "Visual Instruction Tuning",
//! github.com/haotian-liu/LLaVA, `llava/train/train.py`: `LazySupervisedDataset` reads the
//! file, `preprocess_multimodal` places `<image>`), extended with audio and IMU:
//!
//! ```json
//! [{"id": "17", "image": ["a.png", "b.png"], "audio": "x.wav", "imu": "r.csv",
//!   "conversations": [{"from": "human", "value": "<image>\n<image>\n<audio>\n<imu>\nWhat happens?"},
//!                     {"from": "gpt", "value": "..."}],
//!   "weight": 2}]
//! ```
//!
//! A `.json` file holds a top-level array of samples, a `.jsonl` file one sample a line.
//! `id` is a string or a number; `image`, `audio` and `imu` are a file name or a list of
//! them, relative to the file's directory (absolute paths allowed), with extensions
//! `.png .jpg .jpeg .gif .webp .bmp`, `.wav .flac` and `.csv .npy .ts`; `from` is `human`
//! or `user`, `gpt` or `assistant`, or `system` (first turn only); `weight` (an integer
//! from 1 to [`MAX_WEIGHT`], default 1) repeats the sample. Each `<image>`, `<audio>` and
//! `<imu>` in the human turns stands for the next file of that kind.
//!
//! Everything is checked on [`ConversationDataset::open`], before any training: unknown
//! fields, missing or mistyped media files, placeholder counts, roles and their order,
//! duplicate ids, an empty file. Each error is one line naming the file, the sample (id,
//! index, and line in JSONL) and the field. Media are not decoded here: the pipeline
//! decodes them with its own preprocessing.
//!
//! Unlike LLaVA, a sample with an image but no `<image>` in its text is an error unless
//! [`ConversationOptions::prepend_missing_placeholders`] is set (LLaVA's
//! `preprocess_multimodal` moves the image token to the front of the turn holding it).
//!
//! [`write_json`] writes such a file from [`NewSample`]s (the easy-VQA export and the
//! datasets of [`crate::make`] use it).

mod format;
mod options;
mod transform;
mod validate;
mod write;

use std::path::{Path, PathBuf};

use braid_core::{Error, Modality, Result};

pub use format::MAX_WEIGHT;
pub use options::{ConversationOptions, RepeatRule};
pub use write::{write_json, NewSample};

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The system prompt (`"from": "system"`), only as the first turn.
    System,
    /// The question (`"from": "human"` or `"user"`).
    User,
    /// The answer that is learnt (`"from": "gpt"` or `"assistant"`).
    Assistant,
}

impl Role {
    /// The role of a LLaVA `from` value, `None` for anything else.
    pub fn from_llava(from: &str) -> Option<Self> {
        match from {
            "system" => Some(Self::System),
            "human" | "user" => Some(Self::User),
            "gpt" | "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }

    /// `system`, `user` or `assistant`: the role names of chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who speaks.
    pub role: Role,
    /// What is said, placeholders (`<image>`, `<audio>`, `<imu>`) included.
    pub text: String,
}

/// One media file of a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `Image`, `Audio` or `Imu`.
    pub modality: Modality,
    /// The file, resolved against the dataset's root; it existed when the dataset opened.
    pub path: PathBuf,
}

/// One validated conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSample {
    /// The sample's `id` (a number is kept in its decimal form); pieces made by
    /// [`ConversationOptions::split_turns`] get `#<k>` appended.
    pub id: String,
    /// Its files in placeholder order: the k-th placeholder of the conversation (any kind)
    /// stands for `media[k]`, and per kind the files keep the order of their list.
    pub media: Vec<Media>,
    /// An optional system turn, then user/assistant turns alternating, ending with the
    /// assistant.
    pub turns: Vec<Turn>,
    /// For preference tuning (`stage = "preference"`): a rejected answer to the last user
    /// turn, the last assistant turn being the chosen one (TRL's chosen/rejected pairs).
    pub rejected: Option<String>,
}

impl ConversationSample {
    /// The files of one modality, in the order of their placeholders.
    pub fn media_of(&self, modality: Modality) -> impl Iterator<Item = &Path> + '_ {
        self.media.iter().filter(move |m| m.modality == modality).map(|m| m.path.as_path())
    }
}

/// A conversation dataset, validated and with its sampling options applied.
#[derive(Debug, Clone)]
pub struct ConversationDataset {
    /// The samples, after `skip`, `limit`, `split_turns`, weights and `repeat`.
    pub samples: Vec<ConversationSample>,
    /// The directory relative media paths were resolved against (the file's, absolute).
    pub root: PathBuf,
    /// The file that was read, as given.
    pub source: PathBuf,
}

impl ConversationDataset {
    /// Reads and validates `path` (`.json` or `.jsonl`), then applies `options`' sampling
    /// transforms in this order: `skip`, `limit` (on the file's samples), `split_turns`,
    /// then repetition by `weight` and `repeat`. Every sample of the file is validated,
    /// whatever `skip` and `limit` keep. An error names the file, the sample and the field.
    pub fn open(path: impl AsRef<Path>, options: &ConversationOptions) -> Result<Self> {
        let source = path.as_ref();
        options.validate()?;
        let fail = |msg: String| Error::format(source, msg);
        let layout = format::Layout::of(source)?;
        let text = format::read_capped(source, options.max_file_bytes)?;
        let records = format::records(&text, layout).map_err(fail)?;
        drop(text);
        if records.is_empty() {
            return Err(fail("no samples".into()));
        }
        let root = root_of(source)?;
        let mut first_at = std::collections::HashMap::with_capacity(records.len());
        let mut samples = Vec::with_capacity(records.len());
        for record in records {
            if let Some(first) = first_at.insert(record.id.clone(), record.locus.index) {
                return Err(fail(format!(
                    "{}: duplicate id, first used at index {first}",
                    record.locus
                )));
            }
            samples.push(validate::sample(record, &root, options).map_err(fail)?);
        }
        let n = samples.len();
        let samples = transform::apply(samples, options).map_err(fail)?;
        if samples.is_empty() {
            let limit = options.limit.map_or("none".to_string(), |l| l.to_string());
            return Err(fail(format!(
                "no samples left of {n} after skip {} and limit {limit}",
                options.skip
            )));
        }
        Ok(Self { samples, root, source: source.to_path_buf() })
    }

    /// Number of samples (after the sampling transforms).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no samples (never, for a dataset [`open`](Self::open) returned).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The sample at `index`, `None` past the end.
    pub fn get(&self, index: usize) -> Option<&ConversationSample> {
        self.samples.get(index)
    }

    /// Every sample, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConversationSample> {
        self.samples.iter()
    }
}

/// The absolute directory of `source`.
fn root_of(source: &Path) -> Result<PathBuf> {
    let dir = match source.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::path::absolute(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests;
