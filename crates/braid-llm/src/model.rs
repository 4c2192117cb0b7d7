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

/// Keys and values of every layer for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct DecodeCache {
    /// One cache per decoder layer.
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
}
