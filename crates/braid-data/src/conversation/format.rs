//! The file as written: LLaVA JSON (a top-level array) or JSONL (one object a line), read
//! into [`Record`]s whose errors name the sample and the field. Nothing here looks at
//! roles, placeholders or files; [`super::validate`] does.

use std::io::Read;
use std::path::Path;

use braid_core::{Error, Modality, Result};
use serde::Deserialize;
use serde_json::Value;

/// The largest `weight` a sample may carry: more is almost surely a mistake, and each copy
/// is held in memory.
pub const MAX_WEIGHT: u32 = 1000;

/// A media field of a sample: its name, modality and the extensions its files may have.
pub(crate) struct Kind {
    pub field: &'static str,
    pub modality: Modality,
    pub extensions: &'static [&'static str],
}

/// The media kinds, in the order placeholders are prepended.
pub(crate) const KINDS: [Kind; 3] = [
    Kind {
        field: "image",
        modality: Modality::Image,
        extensions: &["png", "jpg", "jpeg", "gif", "webp", "bmp"],
    },
    Kind { field: "audio", modality: Modality::Audio, extensions: &["wav", "flac"] },
    Kind { field: "imu", modality: Modality::Imu, extensions: &["csv", "npy", "ts"] },
];

const FIELDS: [&str; 7] = ["id", "image", "audio", "imu", "conversations", "weight", "rejected"];

/// `.json` (a top-level array) or `.jsonl` (one sample a line), from the extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Json,
    Jsonl,
}

impl Layout {
    pub(crate) fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("json") => Ok(Self::Json),
            Some("jsonl") => Ok(Self::Jsonl),
            _ => Err(Error::format(path, "a conversation dataset is `.json` (LLaVA: a top-level array) or `.jsonl` (one sample a line)")),
        }
    }
}

/// Where a sample sits in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Locus {
    /// Position among the file's samples, from 0.
    pub index: usize,
    /// Line in a JSONL file, from 1.
    pub line: Option<usize>,
    /// Once read.
    pub id: Option<String>,
}

impl std::fmt::Display for Locus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.index;
        match (&self.id, self.line) {
            (Some(id), None) => write!(f, "sample {id:?} (index {i})"),
            (Some(id), Some(l)) => write!(f, "sample {id:?} (index {i}, line {l})"),
            (None, None) => write!(f, "sample at index {i}"),
            (None, Some(l)) => write!(f, "sample at index {i} (line {l})"),
        }
    }
}

/// One turn as written: `{"from": "human", "value": "<image>\n..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTurn {
    pub from: String,
    pub value: String,
}

/// One sample as written, fields typed but not yet checked against each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub locus: Locus,
    pub id: String,
    /// File names per [`KINDS`] entry, as written.
    pub media: [Vec<String>; 3],
    pub turns: Vec<RawTurn>,
    pub weight: u32,
    /// A preference pair's rejected answer to the last user turn (the last assistant turn
    /// is the chosen one).
    pub rejected: Option<String>,
}

/// The text of `path`, refused (before reading) when it is over `max` bytes.
pub(crate) fn read_capped(path: &Path, max: u64) -> Result<String> {
    let too_big = |len: u64| {
        let msg = format!("is {len} bytes, over the limit of {max} (`max_file_bytes`); split it into JSONL shards or raise the limit");
        Error::format(path, msg)
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(too_big(len));
    }
    let mut text = String::new();
    // The file may grow between the check and the read.
    file.take(max.saturating_add(1)).read_to_string(&mut text).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::format(path, "is not UTF-8 text"),
        _ => Error::io(path, e),
    })?;
    if text.len() as u64 > max {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

/// Every sample of `text`; the error is the message to put after the file name.
pub(crate) fn records(text: &str, layout: Layout) -> std::result::Result<Vec<Record>, String> {
    match layout {
        Layout::Json => {
            let values = match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(values)) => values,
                Ok(other) => {
                    return Err(format!(
                        "expected a top-level array of samples (LLaVA JSON), got {}",
                        kind_of(&other)
                    ))
                }
                Err(e) => return Err(format!("invalid JSON: {e}")),
            };
            values
                .into_iter()
                .enumerate()
                .map(|(index, v)| record(v, Locus { index, line: None, id: None }))
                .collect()
        }
        Layout::Jsonl => {
            let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
            lines
                .enumerate()
                .map(|(index, (n, line))| {
                    let locus = Locus { index, line: Some(n + 1), id: None };
                    let value = serde_json::from_str::<Value>(line)
                        .map_err(|e| format!("{locus}: invalid JSON: {e}"))?;
                    record(value, locus)
                })
                .collect()
        }
    }
}

/// One sample from its JSON value.
fn record(value: Value, mut locus: Locus) -> std::result::Result<Record, String> {
    let Value::Object(mut map) = value else {
        return Err(format!("{locus}: expected an object, got {}", kind_of(&value)));
    };
    let id = match map.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(format!(
                "{locus}: id: expected a string or a number, got {}",
                kind_of(&other)
            ))
        }
        None => return Err(format!("{locus}: missing field `id`")),
    };
    locus.id = Some(id.clone());
    if let Some(k) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("{locus}: unknown field `{k}` (known: {})", FIELDS.join(", ")));
    }
    let mut media: [Vec<String>; 3] = Default::default();
    for (kind, files) in KINDS.iter().zip(media.iter_mut()) {
        *files = file_names(map.remove(kind.field))
            .map_err(|e| format!("{locus}: {}: {e}", kind.field))?;
    }
    let turns = match map.remove("conversations") {
        Some(Value::Array(turns)) => turns,
        Some(other) => {
            return Err(format!(
                "{locus}: conversations: expected a list of turns, got {}",
                kind_of(&other)
            ))
        }
        None => return Err(format!("{locus}: missing field `conversations`")),
    };
    let turns = turns
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            serde_json::from_value::<RawTurn>(t)
                .map_err(|e| format!("{locus}: conversations[{k}]: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let weight = match map.remove("weight") {
        None => 1,
        Some(w) => match w
            .as_u64()
            .and_then(|w| u32::try_from(w).ok())
            .filter(|w| (1..=MAX_WEIGHT).contains(w))
        {
            Some(w) => w,
            None => {
                return Err(format!(
                    "{locus}: weight: expected an integer from 1 to {MAX_WEIGHT}, got {}",
                    short(&w)
                ))
            }
        },
    };
    let rejected = match map.remove("rejected") {
        None => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
        Some(other) => {
            return Err(format!(
                "{locus}: rejected: expected a non-empty answer, got {}",
                short(&other)
            ))
        }
    };
    Ok(Record { locus, id, media, turns, weight, rejected })
}

/// `"a.png"` or `["a.png", "b.png"]` (absent: none).
fn file_names(value: Option<Value>) -> std::result::Result<Vec<String>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("[{i}]: expected a file name, got {}", kind_of(&other))),
            })
            .collect(),
        Some(other) => {
            Err(format!("expected a file name or a list of them, got {}", kind_of(&other)))
        }
    }
}

/// `a string`, `an object`, ...: what a value is, without its (maybe long) contents.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A number as written, anything else by its kind.
fn short(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => kind_of(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> std::result::Result<Record, String> {
        let mut r = records(&format!("[{json}]"), Layout::Json)?;
        Ok(r.remove(0))
    }

    #[test]
    fn ids_media_and_weights_are_typed() {
        let r = one(r#"{"id": 17, "image": "a.png", "imu": ["r.csv", "s.npy"], "conversations": [], "weight": 3}"#).unwrap();
        assert_eq!((r.id.as_str(), r.weight), ("17", 3));
        assert_eq!(
            r.media,
            [vec!["a.png".to_string()], vec![], vec!["r.csv".into(), "s.npy".into()]]
        );
        let jsonl =
            "{\"id\": \"a\", \"conversations\": []}\n\n{\"id\": \"b\", \"conversations\": []}\n";
        let r = records(jsonl, Layout::Jsonl).unwrap();
        assert_eq!(r[1].locus, Locus { index: 1, line: Some(3), id: Some("b".into()) });
    }

    #[test]
    fn errors_name_the_sample_and_the_field() {
        let cases = [
            (
                r#"{"id": "x", "conversations": [], "images": "a.png"}"#,
                r#"sample "x" (index 0): unknown field `images`"#,
            ),
            (
                r#"{"id": "x", "conversations": [{"from": "human", "value": "q", "lang": "en"}]}"#,
                "conversations[0]: unknown field `lang`",
            ),
            (
                r#"{"id": "x", "conversations": [{"from": "human", "value": 3}]}"#,
                "conversations[0]: invalid type",
            ),
            (
                r#"{"id": "x", "image": ["a.png", 2], "conversations": []}"#,
                "image: [1]: expected a file name, got a number",
            ),
            (
                r#"{"id": "x", "conversations": [], "weight": 0}"#,
                "weight: expected an integer from 1 to 1000, got 0",
            ),
            (
                r#"{"id": "x", "conversations": [], "rejected": 3}"#,
                "rejected: expected a non-empty answer, got 3",
            ),
            (
                r#"{"id": "x", "conversations": [], "rejected": " "}"#,
                "rejected: expected a non-empty answer",
            ),
            (r#"{"id": "x", "conversations": [], "weight": 2.5}"#, "weight: expected an integer"),
            (
                r#"{"id": [1], "conversations": []}"#,
                "sample at index 0: id: expected a string or a number",
            ),
            (r#"{"conversations": []}"#, "missing field `id`"),
            (r#"{"id": "x"}"#, "missing field `conversations`"),
            ("7", "expected an object, got a number"),
        ];
        for (json, want) in cases {
            let err = one(json).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert!(records("{}", Layout::Json).unwrap_err().contains("top-level array"));
        assert!(records("[1,", Layout::Json).unwrap_err().contains("invalid JSON"));
        let err =
            records("{\"id\": 1, \"conversations\": []}\n{oops\n", Layout::Jsonl).unwrap_err();
        assert!(err.starts_with("sample at index 1 (line 2): invalid JSON"), "{err}");
    }

    #[test]
    fn layouts_come_from_the_extension_and_big_files_are_refused() {
        assert_eq!(Layout::of(Path::new("a/b.JSONL")).unwrap(), Layout::Jsonl);
        assert!(Layout::of(Path::new("b.txt")).unwrap_err().to_string().contains("b.txt"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        std::fs::write(&path, "[]").unwrap();
        assert_eq!(read_capped(&path, 2).unwrap(), "[]");
        assert!(read_capped(&path, 1)
            .unwrap_err()
            .to_string()
            .contains("over the limit of 1 (`max_file_bytes`)"));
        std::fs::write(&path, [0xffu8, 0xfe]).unwrap();
        assert!(read_capped(&path, 10).unwrap_err().to_string().contains("not UTF-8"));
    }
}
