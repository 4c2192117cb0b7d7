//! How a conversation file is read and sampled: the options of
//! [`super::ConversationDataset::open`], deserialisable from a recipe's `[data]` table.

use braid_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::format::MAX_WEIGHT;
use super::{ConversationSample, Role};

/// Reading and sampling options. Every field has a default (see [`Default`]), so a recipe
/// names only what it changes:
///
/// ```toml
/// skip = 1000
/// limit = 500
/// split_turns = 1
/// repeat = [{ answers = ["yes"], times = 2 }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConversationOptions {
    /// A sample with files of a kind but no placeholder of that kind in its text gets one
    /// placeholder per file (`<image>\n`, then `<audio>\n`, then `<imu>\n`) at the start
    /// of its first human turn, instead of being an error. Default false.
    pub prepend_missing_placeholders: bool,
    /// Drops the file's first `skip` samples. Default 0.
    pub skip: usize,
    /// Keeps at most `limit` of the file's samples after `skip`; `None` (the default)
    /// keeps them all.
    pub limit: Option<usize>,
    /// 0 (the default) keeps conversations whole; `n` cuts each into pieces of at most
    /// `n` question/answer pairs, each piece keeping the system turn. Every piece sees
    /// all of the sample's media: placeholders that fall in another piece are prepended
    /// to the piece's first human turn (in media order). Pieces of a cut sample get ids
    /// `<id>#0`, `<id>#1`, ...
    pub split_turns: usize,
    /// Repeats each sample (each piece of it) `weight` times, the sample's own field
    /// (default 1). Default true.
    pub use_weights: bool,
    /// Further repetition by content; a piece matched by several rules takes the largest
    /// `times`, which multiplies its weight.
    pub repeat: Vec<RepeatRule>,
    /// Files larger than this are refused before reading. Default 2 GiB: LLaVA-1.5's
    /// 665k-sample mix is about 1 GB.
    pub max_file_bytes: u64,
}

impl Default for ConversationOptions {
    fn default() -> Self {
        Self {
            prepend_missing_placeholders: false,
            skip: 0,
            limit: None,
            split_turns: 0,
            use_weights: true,
            repeat: Vec::new(),
            max_file_bytes: 2 << 30,
        }
    }
}

impl ConversationOptions {
    /// Checks the rules; errors name the field (`repeat[1].times`).
    pub fn validate(&self) -> Result<()> {
        for (i, rule) in self.repeat.iter().enumerate() {
            if !(1..=MAX_WEIGHT).contains(&rule.times) {
                return Err(Error::config(
                    format!("repeat[{i}].times"),
                    format!("{} is not from 1 to {MAX_WEIGHT}", rule.times),
                ));
            }
            if rule.answers.is_empty() {
                return Err(Error::config(
                    format!("repeat[{i}].answers"),
                    "empty: the rule would match nothing",
                ));
            }
        }
        Ok(())
    }

    /// How many copies of `piece` (a sample or a piece of one) of file weight `weight`.
    pub(crate) fn copies(&self, piece: &ConversationSample, weight: u32) -> u64 {
        let weight = if self.use_weights { u64::from(weight) } else { 1 };
        let times =
            self.repeat.iter().filter(|r| r.matches(piece)).map(|r| r.times).max().unwrap_or(1);
        weight * u64::from(times)
    }
}

/// Repeats the samples whose every answer is one of `answers` (trimmed, compared without
/// case): `{ answers = ["yes", "no"], times = 3 }` triples single-turn yes/no samples.
/// Balancing that depends on the sample's media (easy-VQA's present/absent questions) is
/// better written into the file as `weight` by whoever knows the media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepeatRule {
    /// The answers that select a sample.
    pub answers: Vec<String>,
    /// How many copies of a selected sample (1 to [`MAX_WEIGHT`]).
    pub times: u32,
}

impl RepeatRule {
    /// Whether every assistant turn of `sample` is one of the rule's answers.
    pub fn matches(&self, sample: &ConversationSample) -> bool {
        let is_listed =
            |text: &str| self.answers.iter().any(|a| a.trim().eq_ignore_ascii_case(text.trim()));
        let mut answers = sample.turns.iter().filter(|t| t.role == Role::Assistant).peekable();
        answers.peek().is_some() && answers.all(|t| is_listed(&t.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Turn;

    fn qa(answers: &[&str]) -> ConversationSample {
        let turns = answers
            .iter()
            .flat_map(|a| {
                [
                    Turn { role: Role::User, text: "q".into() },
                    Turn { role: Role::Assistant, text: (*a).into() },
                ]
            })
            .collect();
        ConversationSample { id: "0".into(), media: Vec::new(), turns, rejected: None }
    }

    #[test]
    fn rules_match_when_every_answer_is_listed() {
        let rule = RepeatRule { answers: vec!["yes".into(), " No".into()], times: 3 };
        assert!(rule.matches(&qa(&["Yes "])) && rule.matches(&qa(&["yes", "no"])));
        assert!(!rule.matches(&qa(&["yes", "red"])) && !rule.matches(&qa(&[])));
        let o = ConversationOptions {
            repeat: vec![rule, RepeatRule { answers: vec!["yes".into()], times: 2 }],
            ..Default::default()
        };
        assert_eq!(o.copies(&qa(&["yes"]), 4), 12);
        assert_eq!(ConversationOptions { use_weights: false, ..o }.copies(&qa(&["red"]), 4), 1);
    }

    #[test]
    fn options_read_from_toml_like_tables_and_bad_rules_name_the_field() {
        let o: ConversationOptions =
            serde_json::from_str(r#"{"limit": 5, "repeat": [{"answers": ["yes"], "times": 4}]}"#)
                .unwrap();
        assert_eq!((o.limit, o.skip, o.use_weights, o.repeat[0].times), (Some(5), 0, true, 4));
        assert!(serde_json::from_str::<ConversationOptions>(r#"{"limits": 5}"#).is_err());
        let bad = ConversationOptions {
            repeat: vec![RepeatRule { answers: vec!["yes".into()], times: 0 }],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("repeat[0].times"));
        let bad = ConversationOptions {
            repeat: vec![RepeatRule { answers: vec![], times: 2 }],
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("repeat[0].answers"));
    }
}
