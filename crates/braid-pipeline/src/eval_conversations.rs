//! Scoring a model on held-out conversations (a LLaVA-format file): each sample's last
//! assistant turn is generated greedily from everything before it, media included, and
//! compared with the reference (exact match after trimming and lower-casing, as VQA
//! benchmarks with one-word answers score).

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
    /// Every sample's answer beside its reference.
    #[serde(skip)]
    pub answers: Vec<ScoredAnswer>,
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
        right += usize::from(answer.to_lowercase() == truth.to_lowercase());
        answers.push(ScoredAnswer { id: sample.id.clone(), answer, truth });
        bar.inc(1);
        bar.set_message(format!("accuracy {:.2}%", 100.0 * right as f64 / answers.len() as f64));
    }
    bar.finish_and_clear();
    Ok(ConversationReport { accuracy: right as f64 / n.max(1) as f64, n, answers })
}
