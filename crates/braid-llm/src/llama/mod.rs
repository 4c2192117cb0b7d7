//! The LLaMA family of decoders (LLaMA 2/3, SmolLM2, Vicuna, and Qwen2 through
//! `attention_bias`): pre-norm blocks with RMSNorm, RoPE, grouped-query attention and a
//! SwiGLU MLP. Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models";
//! reference: `transformers.models.llama.modeling_llama`.

mod config;
mod gguf;
mod load;

use std::sync::Arc;

use braid_core::{Error, Result};
use braid_nn::{BlockNames, Embedding, Linear, PreNormBlock, RmsNorm, RotaryEmbedding};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

pub use config::{LlamaConfig, RopeParameters};
pub use gguf::GGUF_ARCHITECTURES;

use crate::{DecodeCache, LanguageModel, LmOutput};

/// A LLaMA-family decoder in the Hugging Face `LlamaForCausalLM` layout.
#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embedding,
    layers: Vec<PreNormBlock>,
    norm: RmsNorm,
    lm_head: Linear,
    cfg: LlamaConfig,
}

impl Llama {
    /// Builds the model from `vb` at the checkpoint root (`model.*`, `lm_head.*`).
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
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
            .map(|i| {
                let mut layer = PreNormBlock::new(block, BlockNames::LLAMA, m.pp(format!("layers.{i}")))?;
                let attn = layer.attention_mut().clone().with_rope(rope.clone());
                *layer.attention_mut() = attn;
                Ok(layer)
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::from_weights(embed_tokens.weight().clone(), None)?
        } else {
            Linear::new(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        Ok(Self { embed_tokens, layers, norm, lm_head, cfg: cfg.clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// A cache sized for this model.
    pub fn new_cache(&self) -> DecodeCache {
        DecodeCache::new(self.layers.len())
    }

    /// ids: [batch, seq] -> logits [batch, seq, vocab], no cache.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_embeds(&self.embed_tokens(ids)?, None, None)?.logits)
    }
}

impl LanguageModel for Llama {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        self.embed_tokens.forward(ids)
    }

    fn forward_embeds(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut DecodeCache>,
    ) -> Result<LmOutput> {
        let (_, _, hidden) = embeds.dims3()?;
        if hidden != self.cfg.hidden_size {
            return Err(Error::shape("llama input embeds", &[0, 0, self.cfg.hidden_size], embeds.dims()));
        }
        if let Some(c) = cache.as_deref_mut() {
            if c.layers.len() != self.layers.len() {
                *c = self.new_cache();
            }
        }
        let mut x = embeds.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().and_then(|c| c.layers.get_mut(i));
            x = layer.forward(&x, mask, layer_cache)?;
        }
        let hidden = self.norm.forward(&x)?;
        let logits = self.lm_head.forward(&hidden)?;
        Ok(LmOutput { hidden, logits })
    }
}

#[cfg(test)]
mod tests;
