//! The differentiable LLaMA decoder: `braid_nn` pre-norm blocks (every op has a backward
//! pass), f32 or dequantized weights from a `VarBuilder`, for training and fine-tuning,
//! optionally with LoRA on the attention and MLP projections (Hu et al. 2021; PEFT).

use std::collections::HashMap;
use std::sync::Arc;

use braid_core::{Error, Result};
use braid_nn::{
    Embedding, Linear, LoraConfig, LoraSpec, Norm, PreNormBlock, RmsNorm, RotaryEmbedding,
};
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
    /// The LoRA rank/scale and targets the model was built with.
    lora: Option<(LoraConfig, Vec<String>)>,
}

impl Trainable {
    /// Builds the model from `vb` at the checkpoint root (`model.*`, `lm_head.*`); with
    /// `lora` (its VarBuilder also at the root), the projections it targets get LoRA.
    pub(crate) fn new(cfg: &LlamaConfig, vb: VarBuilder, lora: Option<&LoraSpec>) -> Result<Self> {
        let (block, names) = (cfg.block_config(), cfg.block_names());
        let rope = Arc::new(RotaryEmbedding::with_layout(
            cfg.rope_layout(),
            cfg.max_position_embeddings,
            cfg.rope_base(),
            vb.dtype(),
            vb.device(),
        )?);
        let m = vb.pp("model");
        let embed_tokens = Embedding::new(cfg.vocab_size, cfg.hidden_size, m.pp("embed_tokens"))?;
        let layer = |i: usize| -> Result<PreNormBlock> {
            let name = format!("model.layers.{i}");
            let spec = lora.map(|l| l.pp(&name));
            Ok(PreNormBlock::new_with_lora(block, names, vb.pp(&name), spec.as_ref())?
                .with_rope(rope.clone()))
        };
        let layers = (0..cfg.num_hidden_layers).map(layer).collect::<Result<Vec<_>>>()?;
        if let Some(l) = lora {
            let adapted =
                layers.iter().flat_map(|b| b.projections()).any(|(_, p)| p.lora().is_some());
            if !adapted {
                let names: Vec<String> = layers
                    .first()
                    .map(|b| b.projections())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                return Err(Error::config(
                    "lora.targets",
                    format!(
                        "{:?} names none of this model's projections ({})",
                        l.targets,
                        names.join(", ")
                    ),
                ));
            }
        }
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::from_weights(embed_tokens.weight().clone(), None)?
        } else {
            Linear::new(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        let lora = lora.map(|l| (l.config, l.targets.clone()));
        Ok(Self { embed_tokens, layers, norm, lm_head, lora })
    }

    /// The LoRA rank/scale and targets, if built with LoRA.
    pub(crate) fn lora(&self) -> Option<&(LoraConfig, Vec<String>)> {
        self.lora.as_ref()
    }

    /// Every weight in Hugging Face names with LoRA folded in, detached (`lm_head.weight`
    /// left out when `tied`).
    pub(crate) fn merged_tensors(&self, tied: bool) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        let mut put = |name: String, t: &Tensor| -> Result<()> {
            out.insert(name, t.detach().contiguous()?);
            Ok(())
        };
        put("model.embed_tokens.weight".into(), self.embed_tokens.weight())?;
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, norm) in layer.norms() {
                let Norm::RmsNorm(n) = norm else {
                    return Err(Error::Invalid(format!(
                        "llama layer {i}: `{name}` is not an RMSNorm"
                    )));
                };
                put(format!("model.layers.{i}.{name}.weight"), n.weight())?;
            }
            for (name, proj) in layer.projections() {
                let merged = proj.merged()?;
                put(format!("model.layers.{i}.{name}.weight"), merged.weight())?;
                if let Some(b) = merged.bias() {
                    put(format!("model.layers.{i}.{name}.bias"), b)?;
                }
            }
        }
        put("model.norm.weight".into(), self.norm.weight())?;
        if !tied {
            put("lm_head.weight".into(), self.lm_head.weight())?;
        }
        Ok(out)
    }

    /// The LoRA matrices by variable name (`model.layers.0.self_attn.q_proj.lora_A.weight`),
    /// detached.
    pub(crate) fn lora_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for (name, lora) in
                layer.projections().into_iter().filter_map(|(n, p)| Some((n, p.lora()?)))
            {
                out.insert(
                    format!("model.layers.{i}.{name}.lora_A.weight"),
                    lora.a().detach().contiguous()?,
                );
                out.insert(
                    format!("model.layers.{i}.{name}.lora_B.weight"),
                    lora.b().detach().contiguous()?,
                );
            }
        }
        Ok(out)
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
        cache: Option<&mut DecodeCache>,
        last_only: bool,
    ) -> Result<LmOutput> {
        let hidden = self.hidden(embeds, mask, cache)?;
        let seq = hidden.dim(1)?;
        let last = if last_only { hidden.narrow(1, seq - 1, 1)? } else { hidden.clone() };
        let logits = self.head(&last)?;
        Ok(LmOutput { hidden, logits })
    }

    /// The final hidden states (after the last norm), without the output projection.
    ///
    /// embeds: [batch, seq, hidden] -> [batch, seq, hidden]
    pub(crate) fn hidden(
        &self,
        embeds: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut DecodeCache>,
    ) -> Result<Tensor> {
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
        if hidden.dim(1)? == 0 {
            return Err(Error::Invalid("llama: empty input sequence".into()));
        }
        Ok(hidden)
    }

    /// hidden: [..., hidden] -> logits [..., vocab]
    pub(crate) fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }
}
