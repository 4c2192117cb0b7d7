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
use braid_llm::generate::{generate_embeds, Batcher, GenerateConfig, SamplingConfig};
use braid_llm::{LanguageModel, Message};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{Input, Pipeline};

/// Longest answer generated, in tokens (a reference longer than this cannot match).
const MAX_ANSWER_TOKENS: usize = 64;

/// Positions a batch of [`evaluate_conversations`] spans before it drains and starts again:
/// the rows of a continuously fed batch attend over its whole age (masked where not
/// theirs), so a short span keeps that waste small; a prompt longer than this runs alone.
const BATCH_SPAN: usize = 384;

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

/// A sample's prompt (everything before its last assistant turn), ready to decode.
struct Prompt {
    /// The prompt's token ids (placeholders unexpanded), the decoding history.
    ids: Vec<u32>,
    /// Its embeddings, media spliced in: [1, positions, hidden].
    embeds: Tensor,
    /// The last assistant turn, trimmed: the reference.
    truth: String,
}

/// The prompt of `sample`'s last assistant turn, and that turn as the reference.
fn prompt_of(pipeline: &Pipeline, sample: &ConversationSample) -> Result<Prompt> {
    let last = sample.turns.iter().rposition(|t| t.role == Role::Assistant).ok_or_else(|| {
        Error::Invalid(format!("sample {:?} has no assistant turn to score", sample.id))
    })?;
    let (messages, inputs) = sample_inputs(pipeline, sample)?;
    let ids = pipeline.prompter()?.prompt_ids(&messages[..last])?;
    let embeds = pipeline.embed_prompt(&ids, &inputs)?;
    let max = pipeline.llm()?.max_positions();
    if embeds.dim(1)? + 1 >= max {
        return Err(Error::Invalid(format!(
            "sample {:?}: its prompt fills the model's {max} positions",
            sample.id
        )));
    }
    Ok(Prompt { ids, embeds, truth: messages[last].content.trim().to_string() })
}

/// Greedy decoding of at most [`MAX_ANSWER_TOKENS`] (and what the context leaves).
fn greedy(llm: &dyn LanguageModel, positions: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: MAX_ANSWER_TOKENS.min(llm.max_positions().saturating_sub(positions)),
        sampling: SamplingConfig { temperature: 0.0, ..Default::default() },
        ..Default::default()
    }
}

/// Greedy answer of the last assistant turn of `sample`, and that turn's reference.
fn answer_last_turn(pipeline: &Pipeline, sample: &ConversationSample) -> Result<(String, String)> {
    let prompt = prompt_of(pipeline, sample)?;
    let llm = pipeline.llm()?;
    let (gens, _) = generate_embeds(
        llm,
        pipeline.prompter()?.tokenizer(),
        &prompt.embeds,
        None,
        std::slice::from_ref(&prompt.ids),
        &greedy(llm, prompt.embeds.dim(1)?),
        &mut |_, _| Ok(()),
    )?;
    let answer = gens.into_iter().next().map(|g| g.text.trim().to_string()).unwrap_or_default();
    Ok((answer, prompt.truth))
}

/// Scores the first `limit` samples of `data` (0: all); `progress` draws a bar. With
/// `batch` above 1 and a frozen language model (else one at a time), up to `batch` samples decode together,
/// continuously batched ([`Batcher`]): each sample's prefill is its own and it attends only
/// to its own positions, so its answer is the one it gets alone up to float rounding (the
/// batched matrix products sum in another order: a near tie between two tokens can go the
/// other way); the longest prompts go first, so that shorter ones can join a running batch.
pub fn evaluate_conversations(
    pipeline: &Pipeline,
    data: &ConversationDataset,
    limit: usize,
    batch: usize,
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
    let samples: Vec<&ConversationSample> = data.iter().take(n).collect();
    let mut answers: Vec<Option<ScoredAnswer>> = vec![None; n];
    let mut right = 0usize;
    let mut done = |i: usize, answer: String, truth: String| {
        let scored = ScoredAnswer { id: samples[i].id.clone(), answer, truth };
        right += usize::from(scored.is_right());
        answers[i] = Some(scored);
        bar.inc(1);
        let scored_so_far = bar.position().max(1) as f64;
        bar.set_message(format!("accuracy {:.2}%", 100.0 * right as f64 / scored_so_far));
    };
    // A trainable body's cache cannot be rebatched: one sample at a time.
    if batch <= 1 || pipeline.llm()?.is_trainable() {
        for (i, sample) in samples.iter().enumerate() {
            let (answer, truth) = answer_last_turn(pipeline, sample)?;
            done(i, answer, truth);
        }
    } else {
        decode_batched(pipeline, &samples, batch, &mut done)?;
    }
    bar.finish_and_clear();
    let answers: Vec<ScoredAnswer> = answers.into_iter().flatten().collect();
    let right = answers.iter().filter(|a| a.is_right()).count();
    let by_type = by_type(&answers);
    Ok(ConversationReport { accuracy: right as f64 / n.max(1) as f64, n, by_type, answers })
}

/// Answers `samples` greedily, up to `batch` at once; `done(index, answer, truth)` as each
/// finishes.
fn decode_batched(
    pipeline: &Pipeline,
    samples: &[&ConversationSample],
    batch: usize,
    done: &mut dyn FnMut(usize, String, String),
) -> Result<()> {
    let llm = pipeline.llm()?;
    let prompter = pipeline.prompter()?;
    // Longest prompt first: a prompt joins a running batch only when it is no longer than
    // the batch. Token counts before media are spliced in order them well enough.
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let text: usize = s.turns.iter().map(|t| t.text.len()).sum();
        order.push((i, text + 1000 * s.media.len()));
    }
    order.sort_by_key(|&(i, len)| (std::cmp::Reverse(len), i));
    let mut queue = order.into_iter().map(|(i, _)| i).peekable();
    let mut batcher = Batcher::new(llm, prompter.tokenizer(), pipeline.device(), BATCH_SPAN);
    let mut truths: BTreeMap<u64, String> = BTreeMap::new();
    let mut waiting: Option<(usize, Prompt)> = None;
    loop {
        while batcher.len() < batch {
            let (i, prompt) = match waiting.take() {
                Some(w) => w,
                None => match queue.next() {
                    Some(i) => (i, prompt_of(pipeline, samples[i])?),
                    None => break,
                },
            };
            let cfg = greedy(llm, prompt.embeds.dim(1)?);
            if !batcher.fits(prompt.embeds.dim(1)?, cfg.max_new_tokens) {
                let (answer, truth) = answer_last_turn(pipeline, samples[i])?;
                done(i, answer, truth);
                continue;
            }
            if !batcher.can_join(prompt.embeds.dim(1)?, cfg.max_new_tokens) {
                waiting = Some((i, prompt));
                break;
            }
            batcher.join(i as u64, &prompt.embeds, prompt.ids, &cfg)?;
            truths.insert(i as u64, prompt.truth);
        }
        if batcher.is_empty() {
            if waiting.is_none() && queue.peek().is_none() {
                return Ok(());
            }
            continue;
        }
        for (id, generation) in batcher.step(&mut |_, _| Ok(()))? {
            let truth = truths.remove(&id).unwrap_or_default();
            done(id as usize, generation.text.trim().to_string(), truth);
        }
    }
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
