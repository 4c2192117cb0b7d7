//! Text generation with a KV cache: one prefill of the (left-padded) prompts, then one
//! token per step for every row, sampled, stopped by EOS, stop strings or length, and
//! streamed as text. Reference: `transformers.GenerationMixin.generate` (left padding,
//! attention mask growing by one column per step).

mod batcher;
mod row;
mod sampling;
mod stop;

use std::time::Instant;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{LanguageModel, Tokenizer};
pub use batcher::Batcher;
use row::Row;
pub use sampling::{argmax, Sampler, SamplingConfig};
pub use stop::StopStrings;

/// What to generate and when to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateConfig {
    /// Most tokens generated per prompt.
    pub max_new_tokens: usize,
    /// How each token is chosen.
    pub sampling: SamplingConfig,
    /// Strings that end a generation (not included in the text).
    pub stop: Vec<String>,
    /// Keep going past the end-of-sequence token (benchmarks).
    pub ignore_eos: bool,
    /// Drop the start of a prompt that does not fit the context instead of failing.
    pub truncate: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            sampling: SamplingConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
            truncate: false,
        }
    }
}

impl GenerateConfig {
    /// Fails on a setting no generation can use, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.sampling.validate()
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_new_tokens` were generated.
    Length,
}

/// One prompt's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Generated token ids (the EOS token excluded).
    pub tokens: Vec<u32>,
    /// Their text, cut before a stop string.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Prompt tokens used (after any truncation).
    pub prompt_tokens: usize,
}

/// Wall-clock figures of one `generate` call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Prompt tokens processed in the prefill (all rows, padding excluded).
    pub prompt_tokens: usize,
    /// Seconds of the prefill (including the first token's logits).
    pub prompt_seconds: f64,
    /// Decoding steps after the prefill, times rows.
    pub decode_tokens: usize,
    /// Seconds of those steps.
    pub decode_seconds: f64,
}

/// Checks every prompt fits `max_pos` with room for `max_new` tokens; with `truncate`,
/// keeps the end of a prompt that does not.
fn fit(
    prompts: &[Vec<u32>],
    max_new: usize,
    max_pos: usize,
    truncate: bool,
) -> Result<Vec<Vec<u32>>> {
    let room = max_pos.saturating_sub(max_new);
    prompts
        .iter()
        .map(|p| {
            if p.is_empty() {
                return Err(Error::Invalid("empty prompt: nothing to continue".into()));
            }
            if p.len() <= room {
                return Ok(p.clone());
            }
            if truncate && room > 0 {
                return Ok(p[p.len() - room..].to_vec());
            }
            Err(Error::Invalid(format!(
                "prompt of {} tokens plus {max_new} new tokens exceeds the model's context of {max_pos} tokens \
                 (shorten it, lower the token budget, or allow truncation)",
                p.len()
            )))
        })
        .collect()
}

/// Left-pads `prompts` into ids `[batch, longest]` and a 1/0 mask (None without padding).
fn left_pad(prompts: &[Vec<u32>], pad: u32, device: &Device) -> Result<(Tensor, Option<Tensor>)> {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for p in prompts {
        let n = longest - p.len();
        ids.extend(std::iter::repeat_n(pad, n).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(0f32, n).chain(std::iter::repeat_n(1f32, p.len())));
    }
    let ids = Tensor::from_vec(ids, (prompts.len(), longest), device)?;
    let padded = prompts.iter().any(|p| p.len() != longest);
    let mask =
        if padded { Some(Tensor::from_vec(mask, (prompts.len(), longest), device)?) } else { None };
    Ok((ids, mask))
}

/// Generates a continuation of each prompt (token ids), calling `on_text(row, piece)` as
/// text becomes final.
pub fn generate<M: LanguageModel + ?Sized>(
    model: &M,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerateConfig,
    device: &Device,
    on_text: &mut dyn FnMut(usize, &str) -> Result<()>,
) -> Result<(Vec<Generation>, Timing)> {
    cfg.validate()?;
    let prompts = fit(prompts, cfg.max_new_tokens, model.max_positions(), cfg.truncate)?;
    let pad = tokenizer.eos_ids().first().copied().unwrap_or(0);
    let (ids, mask) = left_pad(&prompts, pad, device)?;
    let embeds = model.embed_tokens(&ids)?;
    generate_embeds(model, tokenizer, &embeds, mask, &prompts, cfg, on_text)
}

/// Like [`generate`] from prompt embeddings (`[batch, seq, hidden]`, left-padded with
/// `mask` `[batch, seq]`), e.g. with modality tokens spliced in; `histories` are the
/// prompt ids seen by the repetition penalty (and counted as prompt tokens).
pub fn generate_embeds<M: LanguageModel + ?Sized>(
    model: &M,
    tokenizer: &Tokenizer,
    embeds: &Tensor,
    mask: Option<Tensor>,
    histories: &[Vec<u32>],
    cfg: &GenerateConfig,
    on_text: &mut dyn FnMut(usize, &str) -> Result<()>,
) -> Result<(Vec<Generation>, Timing)> {
    generate_cached(
        model,
        tokenizer,
        embeds,
        mask,
        &mut crate::DecodeCache::default(),
        histories,
        cfg,
        on_text,
    )
}

/// Like [`generate_embeds`], continuing from what `cache` already holds (e.g. a shared
/// image prefix computed once for many questions: rewind it with
/// [`crate::DecodeCache::truncate`] between them); `embeds` holds only the new positions
/// and `mask`, if any, covers cached and new positions.
#[allow(clippy::too_many_arguments)]
pub fn generate_cached<M: LanguageModel + ?Sized>(
    model: &M,
    tokenizer: &Tokenizer,
    embeds: &Tensor,
    mut mask: Option<Tensor>,
    cache: &mut crate::DecodeCache,
    histories: &[Vec<u32>],
    cfg: &GenerateConfig,
    on_text: &mut dyn FnMut(usize, &str) -> Result<()>,
) -> Result<(Vec<Generation>, Timing)> {
    cfg.validate()?;
    let device = embeds.device().clone();
    let stops = StopStrings::new(&cfg.stop);
    let eos: &[u32] = if cfg.ignore_eos { &[] } else { tokenizer.eos_ids() };
    let mut rows: Vec<Row> = histories
        .iter()
        .enumerate()
        .map(|(i, h)| Row::new(tokenizer, h.clone(), Sampler::new(&cfg.sampling, i as u64)))
        .collect();
    let mut timing =
        Timing { prompt_tokens: histories.iter().map(Vec::len).sum(), ..Timing::default() };
    let start = Instant::now();
    let mut logits = model.forward_last(embeds, mask.as_ref(), Some(&mut *cache))?;
    timing.prompt_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for step in 0..cfg.max_new_tokens {
        let rows_logits = logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let mut next = Vec::with_capacity(rows.len());
        for (i, (row, mut l)) in rows.iter_mut().zip(rows_logits).enumerate() {
            next.push(row.step(&mut l, eos, &stops, step + 1 == cfg.max_new_tokens, &mut |s| {
                on_text(i, s)
            })?);
        }
        if rows.iter().all(Row::is_done) {
            break;
        }
        let ids = Tensor::from_vec(next, (rows.len(), 1), &device)?;
        if let Some(m) = &mask {
            mask = Some(Tensor::cat(&[m, &Tensor::ones((rows.len(), 1), m.dtype(), &device)?], 1)?);
        }
        logits =
            model.forward_last(&model.embed_tokens(&ids)?, mask.as_ref(), Some(&mut *cache))?;
        timing.decode_tokens += rows.len();
    }
    timing.decode_seconds = start.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        out.push(row.finish(&mut |s| on_text(i, s))?);
    }
    Ok((out, timing))
}
