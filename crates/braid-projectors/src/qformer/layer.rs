//! One Q-Former layer in the Hugging Face `Blip2QFormerLayer` layout (transformers
//! `models/blip_2/modeling_blip_2.py`): post-norm BERT self-attention over the queries,
//! cross-attention to the encoder features every `cross_attention_frequency` layers, and
//! the query feed-forward (`intermediate_query`, `output_query`). The text branch
//! (`use_qformer_text_input`) is not built.

use braid_core::Result;
use braid_nn::{Activation, Attention, AttentionConfig, AttentionNames, LayerNorm, Linear};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use super::QFormerConfig;

/// BERT self-attention names relative to `attention` / `crossattention`.
const NAMES: AttentionNames = AttentionNames {
    q: "attention.query",
    k: "attention.key",
    v: "attention.value",
    o: "output.dense",
};

/// `LayerNorm(sublayer + residual)`, BERT's post-norm.
fn add_norm(norm: &LayerNorm, sublayer: &Tensor, residual: &Tensor) -> Result<Tensor> {
    norm.forward(&(sublayer + residual)?)
}

/// One layer: `attention`, optional `crossattention`, `intermediate_query` / `output_query`.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    attention: Attention,
    attention_norm: LayerNorm,
    /// Queries of the model width; keys and values from the encoder's width.
    cross: Option<(Attention, LayerNorm)>,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    activation: Activation,
}

impl Layer {
    /// Layer `index` under `vb` (`encoder.layer.<index>`).
    pub(super) fn new(
        cfg: &QFormerConfig,
        encoder_dim: usize,
        index: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (h, eps) = (cfg.hidden, cfg.eps);
        let cross = if index % cfg.cross_attention_frequency.max(1) == 0 {
            let vb = vb.pp("crossattention");
            let shape = AttentionConfig {
                context: Some(encoder_dim),
                ..AttentionConfig::new(h, cfg.heads)
            };
            Some((
                Attention::new(shape, NAMES, vb.clone())?,
                LayerNorm::new(h, eps, vb.pp("output.LayerNorm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            attention: Attention::new(
                AttentionConfig::new(h, cfg.heads),
                NAMES,
                vb.pp("attention"),
            )?,
            attention_norm: LayerNorm::new(h, eps, vb.pp("attention.output.LayerNorm"))?,
            cross,
            intermediate: Linear::new(
                h,
                cfg.intermediate,
                true,
                vb.pp("intermediate_query.dense"),
            )?,
            output: Linear::new(cfg.intermediate, h, true, vb.pp("output_query.dense"))?,
            output_norm: LayerNorm::new(h, eps, vb.pp("output_query.LayerNorm"))?,
            activation: cfg.activation,
        })
    }

    /// h: [b, q, hidden]; encoder: [b, n, encoder_dim]; mask: [b, n] -> [b, q, hidden]
    pub(super) fn forward(
        &self,
        h: &Tensor,
        encoder: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut a = add_norm(&self.attention_norm, &self.attention.forward(h, None, None)?, h)?;
        if let Some((cross, norm)) = &self.cross {
            a = add_norm(norm, &cross.forward_cross(&a, encoder, mask)?, &a)?;
        }
        let inner = self.activation.forward(&self.intermediate.forward(&a)?)?;
        add_norm(&self.output_norm, &self.output.forward(&inner)?, &a)
    }
}
