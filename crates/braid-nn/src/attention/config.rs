//! Attention configuration and the checkpoint names of its projections.

use serde::{Deserialize, Serialize};

/// Shapes and switches of a multi-head attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AttentionConfig {
    /// Model width (input and output).
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; fewer than `heads` is grouped-query attention, each KV head shared
    /// by `heads / kv_heads` query heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Bias on the q, k and v projections.
    pub bias: bool,
    /// Bias on the output projection.
    pub out_bias: bool,
    /// Each position attends only to itself and earlier positions.
    pub causal: bool,
    /// Width of the context that cross-attention projects keys and values from (the
    /// diffusion UNet's text condition); `None`: the model width.
    pub context: Option<usize>,
}

impl AttentionConfig {
    /// `heads` heads of `hidden / heads`, no grouping, biases everywhere, not causal (the
    /// BERT / CLIP shape); adjust fields from there.
    pub fn new(hidden: usize, heads: usize) -> Self {
        Self { hidden, heads, kv_heads: heads, head_dim: hidden / heads.max(1), ..Self::default() }
    }
}

impl Default for AttentionConfig {
    fn default() -> Self {
        Self {
            hidden: 768,
            heads: 12,
            kv_heads: 12,
            head_dim: 64,
            bias: true,
            out_bias: true,
            causal: false,
            context: None,
        }
    }
}

/// Checkpoint names of the four projections, relative to the attention module's prefix.
/// Dotted names (`self.query`) reach into nested modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionNames {
    /// Query projection.
    pub q: &'static str,
    /// Key projection.
    pub k: &'static str,
    /// Value projection.
    pub v: &'static str,
    /// Output projection.
    pub o: &'static str,
}

impl AttentionNames {
    /// LLaMA, Mistral, Qwen2: `q_proj`, `k_proj`, `v_proj`, `o_proj`.
    pub const LLAMA: Self = Self { q: "q_proj", k: "k_proj", v: "v_proj", o: "o_proj" };
    /// CLIP, SigLIP, Whisper: `q_proj`, `k_proj`, `v_proj`, `out_proj`.
    pub const CLIP: Self = Self { q: "q_proj", k: "k_proj", v: "v_proj", o: "out_proj" };
    /// Meta's LLaMA layout (`consolidated.pth`, OneLLM): `wq`, `wk`, `wv`, `wo`.
    pub const META: Self = Self { q: "wq", k: "wk", v: "wv", o: "wo" };
    /// diffusers' `Attention`: `to_q`, `to_k`, `to_v`, `to_out.0`.
    pub const DIFFUSERS: Self = Self { q: "to_q", k: "to_k", v: "to_v", o: "to_out.0" };
    /// BERT under `attention`: `self.query`, `self.key`, `self.value`, `output.dense`.
    pub const BERT: Self =
        Self { q: "self.query", k: "self.key", v: "self.value", o: "output.dense" };
}
