//! The language-model contract.

use braid_core::Result;
use braid_nn::KvCache;
use candle_core::Tensor;

/// Hidden states and logits of a forward pass.
#[derive(Debug, Clone)]
pub struct LmOutput {
    /// Final hidden states after the last norm, `[batch, seq, hidden]`.
    pub hidden: Tensor,
    /// Next-token logits, `[batch, seq, vocab]`.
    pub logits: Tensor,
}

/// Keys and values of every layer for incremental decoding, one [`KvCache`] per decoder
/// layer (the same cache for trainable and frozen models).
#[derive(Debug, Clone, Default)]
pub struct DecodeCache {
    /// One cache per decoder layer; a model fills it on its first forward pass.
    pub layers: Vec<KvCache>,
}

impl DecodeCache {
    /// An empty cache for `layers` decoder layers.
    pub fn new(layers: usize) -> Self {
        Self { layers: vec![KvCache::new(); layers] }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every cached position (a new conversation).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(KvCache::reset);
    }

    /// Keeps only the first `len` positions of every layer, e.g. a prompt prefix shared by
    /// several continuations.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.layers.iter_mut().for_each(|c| c.truncate(len));
        Ok(())
    }

    /// A copy of a one-sequence cache repeated `batch` times: a prompt prefix computed once,
    /// continued by a batch of different (equally long) suffixes. The copy has its own
    /// storage, so the original can serve further batches.
    pub fn repeat_batch(&self, batch: usize) -> Result<Self> {
        let layers = self.layers.iter().map(|c| c.repeat_batch(batch)).collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// The cache holding only the batch rows `rows`, in that order, less its first `drop`
    /// positions (padding no remaining row needs).
    pub fn select_rows(&self, rows: &[u32], drop: usize) -> Result<Self> {
        let layers = self
            .layers
            .iter()
            .map(|c| c.select_rows(rows)?.drop_front(drop))
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// A one-row cache of `n` zero positions shaped like this one's, for a sequence to be
    /// prefilled at this batch's positions (the zeros masked out).
    pub fn zeros_like(&self, n: usize) -> Result<Self> {
        let layers = self.layers.iter().map(|c| c.zeros_like(n)).collect::<Result<_>>()?;
        Ok(Self { layers })
    }

    /// Caches stacked into one batch, each moved right to end at the longest one's length
    /// (the positions before are zeros: mask them out).
    pub fn stack(parts: &[&Self]) -> Result<Self> {
        let depth = parts.iter().map(|p| p.layers.len()).max().unwrap_or(0);
        let layers = (0..depth)
            .map(|l| {
                let caches: Vec<&KvCache> = parts.iter().filter_map(|p| p.layers.get(l)).collect();
                KvCache::stack(&caches)
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers })
    }
}

/// A decoder-only language model.
pub trait LanguageModel {
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;

    /// Embedding width.
    fn hidden_size(&self) -> usize;

    /// ids: [batch, seq] (u32) -> embeddings [batch, seq, hidden]
    fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor>;

    /// embeds: [batch, seq, hidden]; mask: [batch, cached + seq] of 1/0 padding, or `None`
    /// -> [`LmOutput`]. With a cache, `embeds` holds only the new positions.
    fn forward_embeds(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut DecodeCache>,
    ) -> Result<LmOutput>;

    /// Like [`Self::forward_embeds`] but with logits for the last position only (what
    /// generation needs; a model may skip the output projection of the other positions).
    ///
    /// embeds: [batch, seq, hidden] -> logits [batch, vocab]
    fn forward_last(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut DecodeCache>,
    ) -> Result<Tensor> {
        let logits = self.forward_embeds(embeds, mask, cache)?.logits;
        let seq = logits.dim(1)?;
        Ok(logits.narrow(1, seq - 1, 1)?.squeeze(1)?)
    }

    /// Longest sequence (cached plus new positions) the model accepts.
    fn max_positions(&self) -> usize {
        usize::MAX
    }
}
