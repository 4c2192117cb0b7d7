//! Pre-norm residual block: `h = x + attn(norm1(x)); out = h + mlp(norm2(h))`, optionally
//! with sandwich norms on the sub-layers' outputs (`h = x + norm3(attn(norm1(x)))`,
//! `out = h + norm4(mlp(norm2(h)))`: GLM-4-0414, reference
//! `transformers.models.glm4.modeling_glm4.Glm4DecoderLayer`) and with LoRA on its
//! projections (PEFT `lora.Linear`).

use std::sync::Arc;

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{BlockConfig, BlockNames};
use crate::{sub, Attention, KvCache, LoraSpec, Mlp, Norm, Proj, RotaryEmbedding};

/// A pre-norm transformer block (GPT-2, CLIP, LLaMA).
#[derive(Debug, Clone)]
pub struct PreNormBlock {
    norm1: Norm,
    attn: Attention,
    norm2: Norm,
    mlp: Mlp,
    /// Norms of the attention's and the MLP's outputs (sandwich norms), if any.
    post: Option<(Norm, Norm)>,
    names: BlockNames,
}

impl PreNormBlock {
    /// Every attention and MLP projection with its path below the block
    /// (`self_attn.q_proj`, `mlp.fc1`, ...), for re-parameterising them in place.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Proj)> {
        let (attn, mlp) = (self.names.attn, self.names.mlp);
        let mut out: Vec<(String, &mut Proj)> = self
            .attn
            .projections_mut()
            .into_iter()
            .map(|(n, p)| (format!("{attn}.{n}"), p))
            .collect();
        out.extend(self.mlp.projections_mut().into_iter().map(|(n, p)| (format!("{mlp}.{n}"), p)));
        out
    }

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
        let hidden = cfg.attention.hidden;
        let attn_lora = lora.map(|l| l.pp(names.attn));
        let mlp_lora = lora.map(|l| l.pp(names.mlp));
        let post = match names.post_norms {
            Some((a, m)) => Some((
                Norm::new(hidden, cfg.norm, sub(&vb, a))?,
                Norm::new(hidden, cfg.norm, sub(&vb, m))?,
            )),
            None => None,
        };
        Ok(Self {
            norm1: Norm::new(hidden, cfg.norm, sub(&vb, names.norm1))?,
            attn: Attention::new_with_lora(
                cfg.attention,
                names.attention,
                sub(&vb, names.attn),
                attn_lora.as_ref(),
            )?,
            norm2: Norm::new(hidden, cfg.norm, sub(&vb, names.norm2))?,
            mlp: Mlp::new_with_lora(
                cfg.mlp,
                names.mlp_names,
                sub(&vb, names.mlp),
                mlp_lora.as_ref(),
            )?,
            post,
            names,
        })
    }

    /// Every attention and MLP projection by checkpoint name relative to the block
    /// (`self_attn.q_proj`, `mlp.down_proj`), for merging and export.
    pub fn projections(&self) -> Vec<(String, &Proj)> {
        let join = |parent: &str, name: &str| {
            if parent.is_empty() {
                name.to_string()
            } else {
                format!("{parent}.{name}")
            }
        };
        let attn = self.attn.projections().into_iter().map(|(n, p)| (join(self.names.attn, n), p));
        let mlp = self.mlp.projections().into_iter().map(|(n, p)| (join(self.names.mlp, n), p));
        attn.chain(mlp).collect()
    }

    /// Every norm by checkpoint name relative to the block (`input_layernorm`, ...).
    pub fn norms(&self) -> Vec<(&'static str, &Norm)> {
        let mut out = vec![(self.names.norm1, &self.norm1), (self.names.norm2, &self.norm2)];
        if let (Some((a, m)), Some((na, nm))) = (&self.post, self.names.post_norms) {
            out.extend([(na, a), (nm, m)]);
        }
        out
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
        let mut a = self.attn.forward(&self.norm1.forward(x)?, mask, cache)?;
        if let Some((post, _)) = &self.post {
            a = post.forward(&a)?;
        }
        let h = (x + a)?;
        let mut m = self.mlp.forward(&self.norm2.forward(&h)?)?;
        if let Some((_, post)) = &self.post {
            m = post.forward(&m)?;
        }
        Ok((&h + m)?)
    }
}
