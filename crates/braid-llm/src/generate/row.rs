//! One sequence of a generation batch: its history, sampler, streamed text and state.

use braid_core::Result;

use super::{FinishReason, Generation, Sampler, StopStrings};
use crate::tokenizer::TokenStream;
use crate::Tokenizer;

/// The state of one batch row.
pub(super) struct Row<'a> {
    history: Vec<u32>,
    prompt_len: usize,
    generated: Vec<u32>,
    stream: TokenStream<'a>,
    text: String,
    emitted: usize,
    sampler: Sampler,
    done: Option<FinishReason>,
}

impl<'a> Row<'a> {
    /// A row continuing `prompt`.
    pub(super) fn new(tokenizer: &'a Tokenizer, prompt: Vec<u32>, sampler: Sampler) -> Self {
        Self {
            prompt_len: prompt.len(),
            history: prompt,
            generated: Vec::new(),
            stream: tokenizer.stream(true),
            text: String::new(),
            emitted: 0,
            sampler,
            done: None,
        }
    }

    /// Whether this row has finished.
    pub(super) fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Chooses this row's next token from `logits` `[vocab]` and returns the id to feed
    /// back (a finished row repeats its last one; its output is ignored).
    pub(super) fn step(
        &mut self,
        logits: &mut [f32],
        eos: &[u32],
        stops: &StopStrings,
        last: bool,
        emit: &mut dyn FnMut(&str) -> Result<()>,
    ) -> Result<u32> {
        if self.done.is_some() {
            return Ok(self.history.last().copied().unwrap_or(0));
        }
        let t = self.sampler.sample(logits, &self.history);
        if eos.contains(&t) {
            self.done = Some(FinishReason::Eos);
            return Ok(t);
        }
        self.history.push(t);
        self.generated.push(t);
        if let Some(piece) = self.stream.push(t)? {
            self.text.push_str(&piece);
        }
        if let Some((at, _)) = stops.find(&self.text) {
            self.text.truncate(at);
            self.done = Some(FinishReason::Stop);
            return self.flush(at, emit).map(|_| t);
        }
        if last {
            self.done = Some(FinishReason::Length);
        }
        self.flush(stops.safe_len(&self.text), emit)?;
        Ok(t)
    }

    fn flush(&mut self, upto: usize, emit: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
        if upto > self.emitted {
            emit(&self.text[self.emitted..upto])?;
            self.emitted = upto;
        }
        Ok(())
    }

    /// Emits what was held back and returns the row's output.
    pub(super) fn finish(mut self, emit: &mut dyn FnMut(&str) -> Result<()>) -> Result<Generation> {
        if self.done != Some(FinishReason::Stop) {
            if let Some(rest) = self.stream.finish()? {
                self.text.push_str(&rest);
            }
        }
        self.flush(self.text.len(), emit)?;
        Ok(Generation {
            tokens: self.generated,
            text: self.text,
            finish: self.done.unwrap_or(FinishReason::Length),
            prompt_tokens: self.prompt_len,
        })
    }
}
