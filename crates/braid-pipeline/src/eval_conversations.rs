//! Scoring a model on held-out conversations (a LLaVA-format file): each sample's last
//! assistant turn is generated greedily from everything before it, media included, and
//! compared with the reference (exact match after trimming and lower-casing, as VQA
//! benchmarks with one-word answers score).
//!
//! Accuracy is also reported per question type, read from the sample id: the part after
//! its last `_` (`u22_r0_w17_activity` -> `activity`; an id without `_`, or ending in one,
//! counts as `all`). Dataset generators name their samples so.

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_data::conversation::{ConversationDataset, ConversationSample, Role};
use braid_llm::generate::{generate_embeds, GenerateConfig, SamplingConfig};
use braid_llm::{LanguageModel, Message};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{Input, Pipeline};

/// Longest answer generated, in tokens (a reference longer than this cannot match).
const MAX_ANSWER_TOKENS: usize = 64;

/// Scores of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ConversationReport {
    /// Share of exact matches.
    pub accuracy: f64,
    /// Samples scored.
    pub n: usize,
    /// Accuracy and count per question type (see [`question_type`]).
    pub by_type: BTreeMap<String, TypeScore>,
    /// Every sample's answer beside its reference.
    #[serde(skip)]
    pub answers: Vec<ScoredAnswer>,
}

/// The score of one question type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TypeScore {
    /// Share of exact matches.
    pub accuracy: f64,
    /// Samples of this type scored.
    pub n: usize,
}

/// The question type of a sample id: what follows its last `_` (`u22_r0_w17_activity` ->
/// `activity`), or `all` for an id without one.
pub fn question_type(id: &str) -> &str {
    match id.rsplit_once('_') {
        Some((_, t)) if !t.is_empty() => t,
        _ => "all",
    }
}

/// Accuracy per question type of `answers` (exact match, as scored).
fn by_type(answers: &[ScoredAnswer]) -> BTreeMap<String, TypeScore> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for a in answers {
        let c = counts.entry(question_type(&a.id).to_string()).or_default();
        c.0 += usize::from(a.is_right());
        c.1 += 1;
    }
    counts
        .into_iter()
        .map(|(t, (right, n))| (t, TypeScore { accuracy: right as f64 / n.max(1) as f64, n }))
        .collect()
}

/// One scored sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredAnswer {
    /// The sample id.
    pub id: String,
    /// What the model answered.
    pub answer: String,
    /// The reference.
    pub truth: String,
}

impl ScoredAnswer {
    /// Whether the answer matches the reference (trimmed, lower-cased).
    pub fn is_right(&self) -> bool {
        self.answer.trim().to_lowercase() == self.truth.trim().to_lowercase()
    }
}

/// A sample's turns as chat messages (placeholders kept) and its media as inputs, read
/// with the model's own preprocessing.
pub fn sample_inputs(
    pipeline: &Pipeline,
    sample: &ConversationSample,
) -> Result<(Vec<Message>, Vec<Input>)> {
    let messages =
        sample.turns.iter().map(|t| Message::new(t.role.as_str(), t.text.as_str())).collect();
    let inputs = sample
        .media
        .iter()
        .map(|m| pipeline.load_input(m.modality, &m.path))
        .collect::<Result<Vec<_>>>()?;
    Ok((messages, inputs))
}

/// Greedy answer of the last assistant turn of `sample`, and that turn's reference.
fn answer_last_turn(pipeline: &Pipeline, sample: &ConversationSample) -> Result<(String, String)> {
    let last = sample.turns.iter().rposition(|t| t.role == Role::Assistant).ok_or_else(|| {
        Error::Invalid(format!("sample {:?} has no assistant turn to score", sample.id))
    })?;
    let (messages, inputs) = sample_inputs(pipeline, sample)?;
    let prompter = pipeline.prompter()?;
    let ids = prompter.prompt_ids(&messages[..last])?;
    let embeds = pipeline.embed_prompt(&ids, &inputs)?;
    let llm = pipeline.llm()?;
    let room = llm.max_positions().saturating_sub(embeds.dim(1)?);
    if room == 0 {
        return Err(Error::Invalid(format!(
            "sample {:?}: its prompt fills the model's {} positions",
            sample.id,
            llm.max_positions()
        )));
    }
    let cfg = GenerateConfig {
        max_new_tokens: MAX_ANSWER_TOKENS.min(room),
        sampling: SamplingConfig { temperature: 0.0, ..Default::default() },
        ..Default::default()
    };
    let (gens, _) = generate_embeds(
        llm,
        prompter.tokenizer(),
        &embeds,
        None,
        std::slice::from_ref(&ids),
        &cfg,
        &mut |_, _| Ok(()),
    )?;
    let answer = gens.into_iter().next().map(|g| g.text.trim().to_string()).unwrap_or_default();
    Ok((answer, messages[last].content.trim().to_string()))
}

/// Scores the first `limit` samples of `data` (0: all); `progress` draws a bar.
pub fn evaluate_conversations(
    pipeline: &Pipeline,
    data: &ConversationDataset,
    limit: usize,
    progress: bool,
) -> Result<ConversationReport> {
    let n = if limit == 0 { data.len() } else { limit.min(data.len()) };
    let bar = if progress { ProgressBar::new(n as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {pos}/{len} samples [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut answers = Vec::with_capacity(n);
    let mut right = 0usize;
    for sample in data.iter().take(n) {
        let (answer, truth) = answer_last_turn(pipeline, sample)?;
        let scored = ScoredAnswer { id: sample.id.clone(), answer, truth };
        right += usize::from(scored.is_right());
        answers.push(scored);
        bar.inc(1);
        bar.set_message(format!("accuracy {:.2}%", 100.0 * right as f64 / answers.len() as f64));
    }
    bar.finish_and_clear();
    let by_type = by_type(&answers);
    Ok(ConversationReport { accuracy: right as f64 / n.max(1) as f64, n, by_type, answers })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(id: &str, answer: &str, truth: &str) -> ScoredAnswer {
        ScoredAnswer { id: id.into(), answer: answer.into(), truth: truth.into() }
    }

    #[test]
    fn the_question_type_is_the_id_after_its_last_underscore() {
        assert_eq!(question_type("u22_r0_w17_activity"), "activity");
        assert_eq!(question_type("s1_count"), "count");
        assert_eq!(question_type("pair"), "all");
        assert_eq!(question_type("trailing_"), "all");
    }

    #[test]
    fn accuracy_is_grouped_by_question_type() {
        let answers = [
            scored("u1_w0_activity", "Walking", "walking"),
            scored("u1_w1_activity", "sitting", "walking"),
            scored("u1_w0_posture", "upright", "upright"),
            scored("pair", "no", "yes"),
        ];
        let got = by_type(&answers);
        assert_eq!(got.len(), 3);
        assert_eq!(got["activity"], TypeScore { accuracy: 0.5, n: 2 });
        assert_eq!(got["posture"], TypeScore { accuracy: 1.0, n: 1 });
        assert_eq!(got["all"], TypeScore { accuracy: 0.0, n: 1 });
        let report = ConversationReport { accuracy: 0.5, n: 4, by_type: got, answers: Vec::new() };
        let line = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(line["by_type"]["activity"]["n"], 2, "{line}");
        assert_eq!(line["n"], 4, "{line}");
    }
}
