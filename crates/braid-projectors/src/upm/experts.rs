//! The UPM's shared experts: K stacks of LLaMA-style blocks (OneLLM `resample_layers`:
//! `TransformerBlock` with RMSNorm, bias-free attention without RoPE or a causal mask, and
//! a SwiGLU feed-forward of 2/3 x 4 x width rounded up to `ffn_multiple_of`).

use braid_core::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

use braid_nn::{
    Activation, AttentionConfig, BlockConfig, BlockNames, MlpConfig, NormConfig, NormKind,
    PreNormBlock,
};

use super::UpmConfig;

/// `resample_layers.{e}.{l}` for e < K, l < layers.
#[derive(Debug, Clone)]
pub struct UpmExperts {
    experts: Vec<Vec<PreNormBlock>>,
    cfg: UpmConfig,
}

/// OneLLM `FeedForward`'s inner width for `dim` (its `hidden_dim` argument is 4 x dim).
pub(crate) fn ffn_width(dim: usize, multiple_of: usize) -> usize {
    let hidden = 2 * (4 * dim) / 3;
    multiple_of * hidden.div_ceil(multiple_of)
}

impl UpmExperts {
    /// Builds the K experts under `vb` (`resample_layers.*`).
    pub fn new(cfg: &UpmConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let w = cfg.width;
        let block = BlockConfig {
            attention: AttentionConfig {
                hidden: w,
                heads: cfg.heads,
                kv_heads: cfg.heads,
                head_dim: w / cfg.heads,
                bias: false,
                out_bias: false,
                causal: false,
                context: None,
            },
            mlp: MlpConfig {
                hidden: w,
                intermediate: ffn_width(w, cfg.ffn_multiple_of),
                activation: Activation::Silu,
                gated: true,
                bias: false,
            },
            norm: NormConfig { kind: NormKind::RmsNorm, eps: cfg.norm_eps },
        };
        let vb = vb.pp("resample_layers");
        let experts = (0..cfg.experts)
            .map(|e| {
                (0..cfg.layers)
                    .map(|l| PreNormBlock::new(block, BlockNames::META, vb.pp(e.to_string()).pp(l)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { experts, cfg: cfg.clone() })
    }

    /// The settings it was built with.
    pub fn config(&self) -> &UpmConfig {
        &self.cfg
    }

    /// Expert `e`'s blocks over the whole sequence.
    ///
    /// x: [b, t, width]; mask: [b, t] of 1/0 -> [b, t, width]
    pub fn forward(&self, e: usize, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut h = x.clone();
        for block in self.experts.get(e).into_iter().flatten() {
            h = block.forward(&h, mask, None)?;
        }
        Ok(h)
    }
}
