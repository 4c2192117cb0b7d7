//! Writing a conversation dataset: the LLaVA JSON array that
//! [`ConversationDataset::open`](super::ConversationDataset::open) reads, one sample a line
//! so that files diff well, through a temporary file renamed into place (a reader never
//! sees half a file).

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;

use super::{Role, Turn};

/// One sample to write. Media names are written as given (relative names are resolved
/// against the file's directory when it is read); one file is written as a string, more
/// as a list, none not at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewSample {
    /// The sample's `id`.
    pub id: String,
    /// `image` files.
    pub image: Vec<String>,
    /// `audio` files.
    pub audio: Vec<String>,
    /// `imu` files.
    pub imu: Vec<String>,
    /// The conversation, placeholders included.
    pub turns: Vec<Turn>,
    /// `weight`, written when set.
    pub weight: Option<u32>,
}

impl NewSample {
    /// A one-question sample: `prompt` from the user, `answer` from the assistant.
    pub fn single(id: String, prompt: String, answer: String) -> Self {
        let turns = vec![
            Turn { role: Role::User, text: prompt },
            Turn { role: Role::Assistant, text: answer },
        ];
        Self { id, turns, ..Self::default() }
    }
}

#[derive(Serialize)]
struct OutTurn<'a> {
    from: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct OutSample<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    imu: Option<Value>,
    conversations: Vec<OutTurn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
}

fn files(names: &[String]) -> Option<Value> {
    match names {
        [] => None,
        [one] => Some(Value::String(one.clone())),
        many => Some(Value::Array(many.iter().cloned().map(Value::String).collect())),
    }
}

/// The LLaVA `from` of a role.
fn llava_from(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "human",
        Role::Assistant => "gpt",
    }
}

/// Writes `samples` to `path` (a `.json` file, its directory created) as a JSON array,
/// one sample a line. Returns the file.
pub fn write_json(path: &Path, samples: &[NewSample]) -> Result<PathBuf> {
    let mut text = String::from("[\n");
    for (i, s) in samples.iter().enumerate() {
        let out = OutSample {
            id: &s.id,
            image: files(&s.image),
            audio: files(&s.audio),
            imu: files(&s.imu),
            conversations: s
                .turns
                .iter()
                .map(|t| OutTurn { from: llava_from(t.role), value: &t.text })
                .collect(),
            weight: s.weight,
        };
        let line = serde_json::to_string(&out).map_err(|e| Error::format(path, e.to_string()))?;
        text.push_str(&line);
        text.push_str(if i + 1 < samples.len() { ",\n" } else { "\n" });
    }
    text.push_str("]\n");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    braid_core::fsx::write_file(path, text.as_bytes())?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ConversationDataset, ConversationOptions};
    use braid_core::Modality;

    #[test]
    fn written_samples_read_back() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.wav", "r.npy", "s.npy"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let mut one =
            NewSample::single("u1_activity".into(), "<imu>\nWhat?".into(), "sitting".into());
        one.imu = vec!["r.npy".into()];
        let mut two = NewSample::single(
            "7".into(),
            "<audio>\n<imu>\n<imu>\nAnd?".into(),
            "\"quoted\"".into(),
        );
        two.audio = vec!["a.wav".into()];
        two.imu = vec!["r.npy".into(), "s.npy".into()];
        two.weight = Some(2);
        let path = write_json(&dir.path().join("x.json"), &[one, two]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.contains(r#"{"id":"u1_activity","imu":"r.npy","conversations":[{"from":"human""#)
        );
        let read = ConversationDataset::open(&path, &ConversationOptions::default()).unwrap();
        assert_eq!(read.len(), 3);
        let s = &read.samples[1];
        assert_eq!(
            s.media.iter().map(|m| m.modality).collect::<Vec<_>>(),
            [Modality::Audio, Modality::Imu, Modality::Imu]
        );
        assert_eq!(s.turns[1].text, "\"quoted\"");
    }
}
