//! The LLaMA family of decoders (LLaMA 2/3, SmolLM2, Vicuna, and Qwen2 through
//! `attention_bias`): pre-norm blocks with RMSNorm, RoPE, grouped-query attention and a
//! SwiGLU MLP. Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models";
//! reference: `transformers.models.llama.modeling_llama`, llama.cpp `llm_build_llama`.
//!
//! GLM (GLM-4 `glm`, GLM-4-0414 `glm4`; GLM Team 2024, "ChatGLM: A Family of Large
//! Language Models from GLM-130B to GLM-4 All Tools") is the same body configured by
//! [`Family`]: RoPE over part of each head in adjacent pairs (`braid_nn::RopeLayout`), q/k/v
//! biases, the gate and up projections stacked (`braid_nn::MlpNames::GLM`) and, in
//! GLM-4-0414, sandwich norms (`braid_nn::BlockNames::GLM4`); its GGUF files (`chatglm`,
//! `glm4`) are renamed by a remap table that also splits ChatGLM's fused `attn_qkv`.
//! Reference: `transformers.models.glm.modeling_glm`, `transformers.models.glm4`,
//! llama.cpp `llm_build_chatglm` / `llm_build_glm4`.
//!
//! One type, two bodies: trainable ([`Llama::new`], `braid_nn` blocks, gradients reach
//! every weight) and frozen ([`Llama::load_frozen`], quantized weights kept quantized,
//! fused kernels, in-place KV buffers; the fast path for generation). The trainable body
//! takes LoRA on its projections ([`Llama::with_lora`], PEFT adapters in and out, merged
//! export; see [`lora`]); so does the frozen one ([`Llama::load_frozen_with_lora`],
//! quantized base, fused projections kept).

mod config;
mod frozen;
mod gguf;
mod load;
pub mod lora;
mod trainable;

use braid_core::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

pub use config::{Family, LlamaConfig, RopeParameters};
pub use gguf::GGUF_ARCHITECTURES;
pub use load::Weights;
pub use lora::{load_adapter, varmap_tensors, AdapterConfig};

use crate::{DecodeCache, LanguageModel, LmOutput};
use frozen::FrozenLlama;
use trainable::Trainable;

#[derive(Debug, Clone)]
enum Body {
    Trainable(Trainable),
    Frozen(FrozenLlama),
}

/// A LLaMA-family decoder in the Hugging Face `LlamaForCausalLM` layout.
#[derive(Debug, Clone)]
pub struct Llama {
    body: Body,
    cfg: LlamaConfig,
}

impl Llama {
    /// Builds the trainable model from `vb` at the checkpoint root (`model.*`, `lm_head.*`).
    pub fn new(cfg: &LlamaConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { body: Body::Trainable(Trainable::new(cfg, vb, None)?), cfg: cfg.clone() })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// Whether gradients can flow (false for a frozen, possibly quantized, model).
    pub fn is_trainable(&self) -> bool {
        matches!(self.body, Body::Trainable(_))
    }

    /// A cache sized for this model.
    pub fn new_cache(&self) -> DecodeCache {
        match &self.body {
            Body::Trainable(t) => DecodeCache::new(t.num_layers()),
            Body::Frozen(_) => DecodeCache::default(),
        }
    }

    /// Logits at the chosen positions only, no cache: a training loss needs them where the
    /// labels are, and the output projection of every other position (a fifth of a 135M
    /// model's compute with its 49k vocabulary) is skipped, forward and backward. A batch
    /// of sequences padded on the right needs no attention mask: under the causal mask no
    /// real position sees the padding after it.
    ///
    /// embeds: [batch, seq, hidden], positions: indices into the flattened batch x seq ->
    /// logits [positions, vocab]
    pub fn logits_at(&self, embeds: &Tensor, positions: &[u32]) -> Result<Tensor> {
        let (b, seq, h) = embeds.dims3()?;
        if let Some(&p) = positions.iter().find(|&&p| p as usize >= b * seq) {
            return Err(Error::Invalid(format!(
                "llama logits_at: position {p} is past the batch's {b} x {seq}"
            )));
        }
        let rows = Tensor::new(positions, embeds.device())?;
        match &self.body {
            Body::Trainable(t) => {
                let hidden = t.hidden(embeds, None, None)?.reshape((b * seq, h))?;
                t.head(&hidden.index_select(&rows, 0)?)
            }
            Body::Frozen(_) => {
                let logits = self.run(embeds, None, None, false)?.logits;
                let v = logits.dim(2)?;
                Ok(logits.reshape((b * seq, v))?.index_select(&rows, 0)?)
            }
        }
    }

    /// ids: [batch, seq] -> logits [batch, seq, vocab], no cache.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.forward_embeds(&self.embed_tokens(ids)?, None, None)?.logits)
    }

    fn run(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut DecodeCache>,
        last: bool,
    ) -> Result<LmOutput> {
        let (_, seq, hidden) = embeds.dims3()?;
        if hidden != self.cfg.hidden_size {
            return Err(Error::shape(
                "llama input embeds",
                &[0, 0, self.cfg.hidden_size],
                embeds.dims(),
            ));
        }
        if seq == 0 {
            return Err(Error::Invalid("llama: empty input sequence".into()));
        }
        match &self.body {
            Body::Trainable(t) => t.forward(embeds, mask, cache, last),
            Body::Frozen(f) => match cache {
                Some(c) => f.forward(embeds, mask, &mut c.layers, last),
                None => f.forward(embeds, mask, &mut Vec::new(), last),
            },
        }
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
        match &self.body {
            Body::Trainable(t) => t.embed(ids),
            Body::Frozen(f) => f.embed(ids),
        }
    }

    fn forward_embeds(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut DecodeCache>,
    ) -> Result<LmOutput> {
        self.run(embeds, mask, cache, false)
    }

    fn forward_last(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut DecodeCache>,
    ) -> Result<Tensor> {
        Ok(self.run(embeds, mask, cache, true)?.logits.squeeze(1)?)
    }

    fn max_positions(&self) -> usize {
        match &self.body {
            Body::Frozen(f) => f.max_positions(),
            Body::Trainable(_) => self.cfg.max_position_embeddings,
        }
    }
}

#[cfg(test)]
mod tests;
