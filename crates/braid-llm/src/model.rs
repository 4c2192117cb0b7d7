//! The language-model contract.

use braid_core::Result;
use braid_nn::KvCache;
use candle_core::Tensor;

use crate::kv::KvBuffer;

/// Hidden states and logits of a forward pass.
#[derive(Debug, Clone)]
pub struct LmOutput {
    /// Final hidden states after the last norm, `[batch, seq, hidden]`.
    pub hidden: Tensor,
    /// Next-token logits, `[batch, seq, vocab]`.
    pub logits: Tensor,
}

/// Keys and values of every layer for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct DecodeCache {
    /// One cache per decoder layer (trainable models).
    pub layers: Vec<KvCache>,
    /// One in-place buffer per decoder layer (frozen models).
    pub(crate) buffers: Vec<KvBuffer>,
}

impl DecodeCache {
    /// An empty cache for `layers` decoder layers.
    pub fn new(layers: usize) -> Self {
        Self { layers: vec![KvCache::new(); layers], buffers: Vec::new() }
    }

    /// Positions already cached.
    pub fn len(&self) -> usize {
        let trainable = self.layers.first().map_or(0, KvCache::len);
        trainable.max(self.buffers.first().map_or(0, KvBuffer::len))
    }

    /// Forgets every cached position (a new conversation).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(KvCache::reset);
        self.buffers.iter_mut().for_each(KvBuffer::reset);
    }

    /// Keeps only the first `len` positions of every layer, e.g. a prompt prefix shared by
    /// several continuations.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        for c in &mut self.layers {
            c.truncate(len)?;
        }
        self.buffers.iter_mut().for_each(|b| b.truncate(len));
        Ok(())
    }

    /// A copy of a one-sequence cache repeated `batch` times: a prompt prefix computed once,
    /// continued by a batch of different (equally long) suffixes. The copy has its own
    /// storage, so the original can serve further batches.
    pub fn repeat_batch(&self, batch: usize) -> Result<Self> {
        Ok(Self {
            layers: self.layers.iter().map(|c| c.repeat_batch(batch)).collect::<Result<_>>()?,
            buffers: self.buffers.iter().map(|b| b.repeat_batch(batch)).collect::<Result<_>>()?,
        })
    }

    /// A frozen model's cache holding only the batch rows `rows`, in that order, less its
    /// first `drop` positions (padding no remaining row needs).
    pub fn select_rows(&self, rows: &[u32], drop: usize) -> Result<Self> {
        self.frozen_only()?;
        let buffers = self
            .buffers
            .iter()
            .map(|b| b.select_rows(rows)?.drop_front(drop))
            .collect::<Result<_>>()?;
        Ok(Self { layers: Vec::new(), buffers })
    }

    /// A one-row frozen cache of `n` zero positions shaped like this one's, for a sequence
    /// to be prefilled at this batch's positions (the zeros masked out).
    pub fn zeros_like(&self, n: usize) -> Result<Self> {
        self.frozen_only()?;
        let buffers = self.buffers.iter().map(|b| b.zeros_like(n)).collect::<Result<_>>()?;
        Ok(Self { layers: Vec::new(), buffers })
    }

    /// Frozen models' caches stacked into one batch, each moved right to end at the
    /// longest one's length (the positions before are zeros: mask them out).
    pub fn stack(parts: &[&Self]) -> Result<Self> {
        let mut layers = 0;
        for p in parts {
            p.frozen_only()?;
            layers = layers.max(p.buffers.len());
        }
        let buffers = (0..layers)
            .map(|l| {
                let bufs: Vec<&KvBuffer> = parts.iter().filter_map(|p| p.buffers.get(l)).collect();
                KvBuffer::stack(&bufs)
            })
            .collect::<Result<_>>()?;
        Ok(Self { layers: Vec::new(), buffers })
    }

    fn frozen_only(&self) -> Result<()> {
        if self.layers.iter().any(|c| !c.is_empty()) {
            return Err(braid_core::Error::Invalid(
                "only a frozen model's cache can be rebatched (load it with Weights::Frozen)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
