//! The LLaMA decoder for frozen inference: quantized weights stay quantized (`QMatMul`,
//! as llama.cpp multiplies them), kernels are candle's fused ones, and keys and values
//! are written in place into a growing buffer. Same outputs as the trainable
//! [`crate::Llama`] built by `Llama::new` (up to the activation rounding of quantized
//! matmuls), but no gradients. LoRA updates may sit on the projections
//! ([`lora`], built by `Llama::load_frozen_with_lora`). Reference: llama.cpp
//! `llm_build_llama`.

mod attend;
mod fused;
mod layer;
mod load;
mod lora;
mod mask;
mod rope;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::Result;
use braid_nn::linear::QLinear;
use braid_nn::KvCache;
use candle_core::quantized::QMatMul;
use candle_core::{Device, Tensor};
use candle_nn::ops::rms_norm;

use crate::{LlamaConfig, LmOutput};
use layer::FrozenLayer;
use load::Loader;
pub(crate) use lora::LoraReader;
use rope::Rope;

/// Embeddings, layers, final norm and output projection of a frozen decoder.
#[derive(Debug, Clone)]
pub(crate) struct FrozenLlama {
    embed: QMatMul,
    layers: Vec<FrozenLayer>,
    norm: Tensor,
    eps: f32,
    lm_head: QLinear,
    rope: Rope,
    group: usize,
}

impl FrozenLlama {
    /// Loads every tensor of `ckpt` (Hugging Face names) for `cfg`, quantized weights
    /// kept quantized unless `dequantize`, with LoRA updates from `lora` (every one of its
    /// tensors used) on the projections it targets.
    pub(crate) fn load(
        ckpt: &Checkpoint,
        cfg: &LlamaConfig,
        device: &Device,
        dequantize: bool,
        lora: Option<LoraReader>,
    ) -> Result<(Self, LoadReport)> {
        let mut ld = Loader::new(ckpt, device, dequantize).with_lora(lora);
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        let embed = QMatMul::from_qtensor(ld.qtensor("model.embed_tokens.weight", (v, h))?)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| FrozenLayer::load(&mut ld, &format!("model.layers.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        let norm = ld.vector("model.norm.weight", h)?;
        let lm_head = if cfg.tie_word_embeddings {
            QLinear::from_qmatmul(embed.clone(), None)?
        } else {
            ld.linear("lm_head", (v, h))?
        };
        let report = ld.finish()?;
        let rope =
            Rope::new(cfg.rope_layout(), cfg.max_position_embeddings, cfg.rope_base(), device)?;
        let group = cfg.num_attention_heads / cfg.kv_heads();
        Ok((
            Self { embed, layers, norm, eps: cfg.rms_norm_eps as f32, lm_head, rope, group },
            report,
        ))
    }

    /// Longest sequence the position table covers.
    pub(crate) fn max_positions(&self) -> usize {
        self.rope.max_pos()
    }

    /// ids: [batch, seq] -> [batch, seq, hidden]
    pub(crate) fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.embed.embedding(ids)?)
    }

    /// embeds: [batch, seq, hidden]; mask: [batch, cached + seq] 1/0 -> hidden and logits
    /// `[batch, seq or 1, ...]` (`last_only` computes logits for the last position only).
    pub(crate) fn forward(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        kv: &mut Vec<KvCache>,
        last_only: bool,
    ) -> Result<LmOutput> {
        if kv.len() != self.layers.len() {
            *kv = vec![KvCache::new(); self.layers.len()];
        }
        let (_, seq, _) = embeds.dims3()?;
        let cached = kv.first().map_or(0, KvCache::len);
        let bias = mask::attention_bias(seq, cached, self.group, mask, embeds.device())?;
        let mut x = embeds.contiguous()?;
        for (layer, buf) in self.layers.iter().zip(kv.iter_mut()) {
            x = layer.forward(&x, bias.as_ref(), &self.rope, buf)?;
        }
        let hidden = rms_norm(&x, &self.norm, self.eps)?;
        let last = if last_only { hidden.narrow(1, seq - 1, 1)? } else { hidden.clone() };
        let logits = self.lm_head.forward(&last)?;
        Ok(LmOutput { hidden, logits })
    }
}
