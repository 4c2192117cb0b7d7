//! One Q-Former layer in the Hugging Face `Blip2QFormerLayer` layout (transformers
//! `models/blip_2/modeling_blip_2.py`): post-norm BERT self-attention over the queries,
//! cross-attention to the encoder features every `cross_attention_frequency` layers, and
//! the query feed-forward (`intermediate_query`, `output_query`). The text branch
//! (`use_qformer_text_input`) is not built.

use braid_core::Result;
use braid_nn::attention::mask;
use braid_nn::{
    softmax_last_dim, Activation, Attention, AttentionConfig, AttentionNames, LayerNorm, Linear,
};
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

/// Cross-attention whose keys and values read another width than the queries (the
/// encoder's); `braid_nn::Attention` projects queries and context from one width.
#[derive(Debug, Clone)]
struct CrossAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    heads: usize,
    head_dim: usize,
}

impl CrossAttention {
    fn new(cfg: &QFormerConfig, encoder_dim: usize, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden;
        Ok(Self {
            query: Linear::new(h, h, true, vb.pp(NAMES.q))?,
            key: Linear::new(encoder_dim, h, true, vb.pp(NAMES.k))?,
            value: Linear::new(encoder_dim, h, true, vb.pp(NAMES.v))?,
            dense: Linear::new(h, h, true, vb.pp(NAMES.o))?,
            heads: cfg.heads,
            head_dim: h / cfg.heads,
        })
    }

    /// x: [b, n, d] -> [b, heads, n, head_dim]
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, _) = x.dims3()?;
        Ok(x.reshape((b, n, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
    }

    /// x: [b, q, hidden]; context: [b, n, encoder_dim]; mask: [b, n] of 1/0 -> [b, q, hidden]
    fn forward(&self, x: &Tensor, context: &Tensor, padding: Option<&Tensor>) -> Result<Tensor> {
        let q = self.split(&self.query.forward(x)?)?;
        let k = self.split(&self.key.forward(context)?)?;
        let v = self.split(&self.value.forward(context)?)?;
        let (b, _, tq, _) = q.dims4()?;
        let tk = k.dim(2)?;
        let mut scores = (q.matmul(&k.t()?)? * (1.0 / (self.head_dim as f64).sqrt()))?;
        if let Some(keep) = mask::keep_mask(false, padding, tq, tk, x.device())? {
            scores = mask::apply(&scores, &keep)?;
        }
        let out = softmax_last_dim(&scores)?.matmul(&v)?;
        let out = out.transpose(1, 2)?.reshape((b, tq, self.heads * self.head_dim))?;
        Ok(self.dense.forward(&out)?)
    }
}

/// `LayerNorm(sublayer + residual)`, BERT's post-norm.
fn add_norm(norm: &LayerNorm, sublayer: &Tensor, residual: &Tensor) -> Result<Tensor> {
    norm.forward(&(sublayer + residual)?)
}

/// One layer: `attention`, optional `crossattention`, `intermediate_query` / `output_query`.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    attention: Attention,
    attention_norm: LayerNorm,
    cross: Option<(CrossAttention, LayerNorm)>,
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
            Some((
                CrossAttention::new(cfg, encoder_dim, vb.clone())?,
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
            a = add_norm(norm, &cross.forward(&a, encoder, mask)?, &a)?;
        }
        let inner = self.activation.forward(&self.intermediate.forward(&a)?)?;
        add_norm(&self.output_norm, &self.output.forward(&inner)?, &a)
    }
}
