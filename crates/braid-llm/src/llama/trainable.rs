//! The differentiable LLaMA decoder: `braid_nn` pre-norm blocks (every op has a backward
//! pass), f32 or dequantized weights from a `VarBuilder`, for training and fine-tuning.

use std::sync::Arc;

use braid_core::{Error, Result};
use braid_nn::{BlockNames, Embedding, Linear, PreNormBlock, RmsNorm, RotaryEmbedding};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::LlamaConfig;
use crate::{DecodeCache, LmOutput};

/// Embeddings, blocks, final norm and output projection, all trainable.
#[derive(Debug, Clone)]
pub(crate) struct Trainable {
    embed_tokens: Embedding,
    layers: Vec<PreNormBlock>,
    norm: RmsNorm,
    lm_head: Linear,
}

impl Trainable {
    /// Builds the model from `vb` at the checkpoint root (`model.*`, `lm_head.*`).
    pub(crate) fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        let block = cfg.block_config();
        let rope = Arc::new(RotaryEmbedding::new(
            cfg.head_dim(),
            cfg.max_position_embeddings,
            cfg.rope_base(),
            vb.dtype(),
            vb.device(),
        )?);
        let m = vb.pp("model");
        let embed_tokens = Embedding::new(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Ok(PreNormBlock::new(block, BlockNames::LLAMA, m.pp(format!("layers.{i}")))?.with_rope(rope.clone())))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::from_weights(embed_tokens.weight().clone(), None)?
        } else {
            Linear::new(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self { embed_tokens, layers, norm, lm_head })
    }

    /// Decoder layers.
    pub(crate) fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// ids: [batch, seq] -> [batch, seq, hidden]
    pub(crate) fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    /// embeds: [batch, seq, hidden]; mask: [batch, cached + seq] 1/0 -> hidden, logits
    /// `[batch, seq or 1, ...]` (`last_only`: logits of the last position only)
    pub(crate) fn forward(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut DecodeCache>,
        last_only: bool,
    ) -> Result<LmOutput> {
        if let Some(c) = cache.as_deref_mut() {
            if c.layers.len() != self.layers.len() {
                *c = DecodeCache::new(self.layers.len());
            }
        }
        let mut x = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().and_then(|c| c.layers.get_mut(i));
            x = layer.forward(&x, mask, layer_cache)?;
        }
        let hidden = self.norm.forward(&x)?;
        let seq = hidden.dim(1)?;
        if seq == 0 {
            return Err(Error::Invalid("llama: empty input sequence".into()));
        }
        let last = if last_only { hidden.narrow(1, seq - 1, 1)? } else { hidden.clone() };
        let logits = self.lm_head.forward(&last)?;
        Ok(LmOutput { hidden, logits })
    }
}
