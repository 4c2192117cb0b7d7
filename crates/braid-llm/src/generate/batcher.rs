//! Continuous batching (Yu et al. 2022, "Orca"; llama.cpp's server slots): sequences join a
//! running batch between decoding steps, each after a prefill of its own, and leave it as
//! soon as they finish, so a request never waits for another's answer to end. Each row
//! keeps its own settings (sampling, stop strings, token budget). All rows share one KV
//! cache of the batch's length: a sequence joins by being prefilled behind masked
//! placeholder positions so that its prompt ends where the batch's rows end (RoPE scores
//! depend only on the distance between positions, so its outputs are those of the
//! sequence decoded alone). A prompt longer than the batch waits until the batch has
//! grown to it ([`Batcher::can_join`]); the batch's length is bounded by `span`, and an
//! empty batch starts again from 0.

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};

use super::row::Row;
use super::{GenerateConfig, Generation, Sampler, StopStrings};
use crate::{DecodeCache, LanguageModel, Tokenizer};

/// One sequence of the batch.
struct Seq<'t> {
    id: u64,
    row: Row<'t>,
    stops: StopStrings,
    max_new: usize,
    steps: usize,
    ignore_eos: bool,
    /// 1/0 per cached position.
    mask: Vec<f32>,
    /// Logits of its next token.
    logits: Vec<f32>,
}

/// A batch that sequences join and leave between steps.
pub struct Batcher<'m, M: LanguageModel + ?Sized> {
    model: &'m M,
    tokenizer: &'m Tokenizer,
    cache: DecodeCache,
    seqs: Vec<Seq<'m>>,
    device: Device,
    /// Longest the batch's cache may grow (positions).
    span: usize,
}

impl<'m, M: LanguageModel + ?Sized> Batcher<'m, M> {
    /// An empty batch over `model` whose cache grows to at most `span` positions (and the
    /// model's context): the memory of its keys and values is bounded by `span` x rows.
    pub fn new(model: &'m M, tokenizer: &'m Tokenizer, device: &Device, span: usize) -> Self {
        Self {
            model,
            tokenizer,
            cache: DecodeCache::default(),
            seqs: Vec::new(),
            device: device.clone(),
            span: span.min(model.max_positions()),
        }
    }

    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether no sequence is in the batch.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Whether a prompt of `prompt` positions with `max_new` tokens to come can join now:
    /// the batch is empty, or has reached the prompt's length and has room for its answer.
    pub fn can_join(&self, prompt: usize, max_new: usize) -> bool {
        let t = self.cache.len();
        self.seqs.is_empty() || (t >= prompt && t + max_new <= self.span)
    }

    /// Whether a prompt of `prompt` positions with `max_new` tokens to come fits at all.
    pub fn fits(&self, prompt: usize, max_new: usize) -> bool {
        prompt > 0 && prompt + max_new <= self.span
    }

    /// Prefills `embeds` ([1, prompt, hidden]: the embeddings of `history`, media spliced
    /// in) behind placeholders that end it at the batch's last position, and adds the
    /// sequence `id` to the batch; see [`Batcher::can_join`].
    pub fn join(
        &mut self,
        id: u64,
        embeds: &Tensor,
        history: Vec<u32>,
        cfg: &GenerateConfig,
    ) -> Result<()> {
        cfg.validate()?;
        let p = embeds.dim(1)?;
        if !self.fits(p, cfg.max_new_tokens) {
            return Err(Error::Invalid(format!(
                "prompt of {p} tokens plus {} new tokens exceeds the {} positions a sequence may take",
                cfg.max_new_tokens, self.span
            )));
        }
        if !self.can_join(p, cfg.max_new_tokens) {
            return Err(Error::Invalid(format!(
                "a prompt of {p} tokens cannot join a batch at position {} yet",
                self.cache.len()
            )));
        }
        let front = if self.seqs.is_empty() { 0 } else { self.cache.len() - p };
        let mut own =
            if front > 0 { self.cache.zeros_like(front)? } else { DecodeCache::default() };
        let mut mask = vec![0f32; front];
        mask.extend(std::iter::repeat_n(1.0, p));
        let m = if front > 0 {
            Some(Tensor::from_vec(mask.clone(), (1, front + p), &self.device)?)
        } else {
            None
        };
        let logits = self.model.forward_last(embeds, m.as_ref(), Some(&mut own))?;
        let logits = logits.to_dtype(candle_core::DType::F32)?.squeeze(0)?.to_vec1::<f32>()?;
        self.cache =
            if self.seqs.is_empty() { own } else { DecodeCache::stack(&[&self.cache, &own])? };
        self.seqs.push(Seq {
            id,
            row: Row::new(self.tokenizer, history, Sampler::new(&cfg.sampling, 0)),
            stops: StopStrings::new(&cfg.stop),
            max_new: cfg.max_new_tokens,
            steps: 0,
            ignore_eos: cfg.ignore_eos,
            mask,
            logits,
        });
        Ok(())
    }

    /// Takes the sequences `ids` out of the batch unfinished (their clients left).
    pub fn cancel(&mut self, ids: &[u64]) -> Result<()> {
        let keep: Vec<bool> = self.seqs.iter().map(|s| !ids.contains(&s.id)).collect();
        self.keep(&keep)?;
        Ok(())
    }

    /// One token for every sequence: sampled from its logits, streamed through
    /// `on_text(id, piece)`; the sequences that finish leave with their output, the others
    /// take one decoding step together.
    pub fn step(
        &mut self,
        on_text: &mut dyn FnMut(u64, &str) -> Result<()>,
    ) -> Result<Vec<(u64, Generation)>> {
        let eos = self.tokenizer.eos_ids().to_vec();
        let mut next = Vec::with_capacity(self.seqs.len());
        for s in &mut self.seqs {
            s.steps += 1;
            let last = s.steps >= s.max_new;
            let stop = if s.ignore_eos { &[][..] } else { &eos[..] };
            let id = s.id;
            next.push(s.row.step(&mut s.logits, stop, &s.stops, last, &mut |t| on_text(id, t))?);
        }
        let keep: Vec<bool> = self.seqs.iter().map(|s| !s.row.is_done()).collect();
        let next: Vec<u32> =
            next.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(t, _)| t).collect();
        let mut finished = Vec::new();
        for s in self.keep(&keep)? {
            let id = s.id;
            finished.push((id, s.row.finish(&mut |t| on_text(id, t))?));
        }
        if self.seqs.is_empty() {
            return Ok(finished);
        }
        let b = self.seqs.len();
        for s in &mut self.seqs {
            s.mask.push(1.0);
        }
        let t = self.seqs[0].mask.len();
        let padded = self.seqs.iter().any(|s| s.mask.contains(&0.0));
        let mask = if padded {
            let flat: Vec<f32> = self.seqs.iter().flat_map(|s| s.mask.iter().copied()).collect();
            Some(Tensor::from_vec(flat, (b, t), &self.device)?)
        } else {
            None
        };
        let ids = Tensor::from_vec(next, (b, 1), &self.device)?;
        let logits = self.model.forward_last(
            &self.model.embed_tokens(&ids)?,
            mask.as_ref(),
            Some(&mut self.cache),
        )?;
        let rows = logits.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        for (s, l) in self.seqs.iter_mut().zip(rows) {
            s.logits = l;
        }
        Ok(finished)
    }

    /// Keeps the sequences whose `keep` is true (the cache's rows with them, less the
    /// padding none of them needs) and returns the others.
    fn keep(&mut self, keep: &[bool]) -> Result<Vec<Seq<'m>>> {
        if keep.iter().all(|k| *k) {
            return Ok(Vec::new());
        }
        let rows: Vec<u32> = (0..keep.len() as u32).filter(|&i| keep[i as usize]).collect();
        let (mut kept, mut gone) = (Vec::new(), Vec::new());
        for (s, k) in std::mem::take(&mut self.seqs).into_iter().zip(keep) {
            if *k {
                kept.push(s);
            } else {
                gone.push(s);
            }
        }
        // Padding stays: each row's positions are the cache's, and dropping positions in
        // front would move its next tokens closer to its cached ones than they are.
        self.cache = if kept.is_empty() {
            DecodeCache::default()
        } else {
            self.cache.select_rows(&rows, 0)?
        };
        self.seqs = kept;
        Ok(gone)
    }
}
