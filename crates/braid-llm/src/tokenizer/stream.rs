//! Streaming detokenisation: text appears as soon as the tokens so far decode to whole
//! characters (a byte-level token may hold half of a UTF-8 sequence). The window keeps
//! one earlier token as context, for decoders that treat the first token specially
//! (SentencePiece drops its leading space). Same approach as candle's `TokenOutputStream`
//! and `transformers.TextStreamer`.

use braid_core::Result;

use super::Tokenizer;

/// Turns generated token ids into text pieces, one call per token.
#[derive(Debug)]
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    ids: Vec<u32>,
    /// Start of the decoded window.
    prev: usize,
    /// End of the part of the window already emitted.
    current: usize,
    skip_special: bool,
}

impl<'a> TokenStream<'a> {
    /// An empty stream.
    pub fn new(tokenizer: &'a Tokenizer, skip_special: bool) -> Self {
        Self { tokenizer, ids: Vec::new(), prev: 0, current: 0, skip_special }
    }

    fn decode(&self, from: usize, to: usize) -> Result<String> {
        self.tokenizer.decode(&self.ids[from..to], self.skip_special)
    }

    /// Adds one token; returns the newly completed text, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        let prefix = self.decode(self.prev, self.current)?;
        self.ids.push(id);
        let text = self.decode(self.prev, self.ids.len())?;
        if text.len() > prefix.len()
            && !text.ends_with('\u{fffd}')
            && text.is_char_boundary(prefix.len())
        {
            let piece = text[prefix.len()..].to_string();
            self.prev = self.current;
            self.current = self.ids.len();
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }

    /// Whatever is still held back (an incomplete character at the end).
    pub fn finish(&mut self) -> Result<Option<String>> {
        let prefix = self.decode(self.prev, self.current)?;
        let text = self.decode(self.prev, self.ids.len())?;
        self.prev = self.ids.len();
        self.current = self.ids.len();
        Ok(text.get(prefix.len()..).filter(|r| !r.is_empty()).map(str::to_string))
    }

    /// Every id pushed so far.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
}
