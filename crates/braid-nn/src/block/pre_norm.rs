//! Pre-norm residual block: `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`.

use std::sync::Arc;

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{BlockConfig, BlockNames};
use crate::{sub, Attention, KvCache, Mlp, Norm, RotaryEmbedding};

/// A pre-norm transformer block (GPT-2, CLIP, LLaMA).
#[derive(Debug, Clone)]
pub struct PreNormBlock {
    norm1: Norm,
    attn: Attention,
    norm2: Norm,
    mlp: Mlp,
}

impl PreNormBlock {
    /// Builds the four parts under `vb` with the names in `names`.
    pub fn new(cfg: BlockConfig, names: BlockNames, vb: VarBuilder) -> Result<Self> {
        let hidden = cfg.attention.hidden;
        Ok(Self {
            norm1: Norm::new(hidden, cfg.norm, sub(&vb, names.norm1))?,
            attn: Attention::new(cfg.attention, names.attention, sub(&vb, names.attn))?,
            norm2: Norm::new(hidden, cfg.norm, sub(&vb, names.norm2))?,
            mlp: Mlp::new(cfg.mlp, names.mlp_names, sub(&vb, names.mlp))?,
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
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = (x + self.attn.forward(&self.norm1.forward(x)?, mask, cache)?)?;
        Ok((&h + self.mlp.forward(&self.norm2.forward(&h)?)?)?)
    }
}
