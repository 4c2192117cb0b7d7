//! Post-norm residual block: `h = norm1(x + attn(x)); out = norm2(h + mlp(h))`.

use std::sync::Arc;

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{BlockConfig, BlockNames};
use crate::{sub, Attention, KvCache, LoraSpec, Mlp, Norm, RotaryEmbedding};

/// A post-norm transformer block (original Transformer, BERT).
#[derive(Debug, Clone)]
pub struct PostNormBlock {
    attn: Attention,
    norm1: Norm,
    mlp: Mlp,
    norm2: Norm,
}

impl PostNormBlock {
    /// Builds the four parts under `vb` with the names in `names`.
    pub fn new(cfg: BlockConfig, names: BlockNames, vb: VarBuilder) -> Result<Self> {
        Self::new_with_lora(cfg, names, vb, None)
    }

    /// As [`Self::new`], wrapping the attention and MLP projections `lora` targets with
    /// LoRA (variables under `lora.vb`, which sits at the same position as `vb`).
    pub fn new_with_lora(
        cfg: BlockConfig,
        names: BlockNames,
        vb: VarBuilder,
        lora: Option<&LoraSpec>,
    ) -> Result<Self> {
        if names.post_norms.is_some() {
            return Err(braid_core::Error::config(
                "block.post_norms",
                "sandwich norms belong to pre-norm blocks",
            ));
        }
        let hidden = cfg.attention.hidden;
        let attn_lora = lora.map(|l| l.pp(names.attn));
        let mlp_lora = lora.map(|l| l.pp(names.mlp));
        Ok(Self {
            attn: Attention::new_with_lora(
                cfg.attention,
                names.attention,
                sub(&vb, names.attn),
                attn_lora.as_ref(),
            )?,
            norm1: Norm::new(hidden, cfg.norm, sub(&vb, names.norm1))?,
            mlp: Mlp::new_with_lora(
                cfg.mlp,
                names.mlp_names,
                sub(&vb, names.mlp),
                mlp_lora.as_ref(),
            )?,
            norm2: Norm::new(hidden, cfg.norm, sub(&vb, names.norm2))?,
        })
    }

    /// Rotates queries and keys with `rope` (one table shared by all layers).
    pub fn with_rope(mut self, rope: Arc<RotaryEmbedding>) -> Self {
        self.attn = self.attn.with_rope(rope);
        self
    }

    /// The attention layer.
    pub fn attention(&self) -> &Attention {
        &self.attn
    }

    /// The attention layer, mutably (prefer [`Self::with_rope`] to attach RoPE).
    pub fn attention_mut(&mut self) -> &mut Attention {
        &mut self.attn
    }

    /// x: [batch, seq, hidden]; mask: [batch, cached + seq] of 1/0 -> [batch, seq, hidden]
    pub fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let h = self.norm1.forward(&(x + self.attn.forward(x, mask, cache)?)?)?;
        self.norm2.forward(&(&h + self.mlp.forward(&h)?)?)
    }
}
