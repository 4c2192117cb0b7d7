//! Transformer blocks: [`PreNormBlock`] (GPT-2, CLIP, LLaMA) and [`PostNormBlock`] (the
//! original Transformer, BERT), with checkpoint names chosen by [`BlockNames`].

mod post_norm;
mod pre_norm;

use serde::{Deserialize, Serialize};

use crate::{AttentionConfig, AttentionNames, MlpConfig, MlpNames, NormConfig};

pub use post_norm::PostNormBlock;
pub use pre_norm::PreNormBlock;

/// Configuration of one block.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct BlockConfig {
    /// The attention layer.
    pub attention: AttentionConfig,
    /// The feed-forward layer.
    pub mlp: MlpConfig,
    /// Both norms (same kind and eps).
    pub norm: NormConfig,
}

/// Checkpoint names of a block's parts, relative to the block's prefix. An empty name puts
/// that part at the block's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockNames {
    /// The norm around attention (before it in pre-norm, after it in post-norm).
    pub norm1: &'static str,
    /// The attention module.
    pub attn: &'static str,
    /// The norm around the MLP.
    pub norm2: &'static str,
    /// The MLP module.
    pub mlp: &'static str,
    /// Projection names inside `attn`.
    pub attention: AttentionNames,
    /// Projection names inside `mlp`.
    pub mlp_names: MlpNames,
    /// Norms on the attention's and the MLP's outputs before each residual sum ("sandwich"
    /// norms, pre-norm blocks only: GLM-4-0414's `post_self_attn_layernorm` and
    /// `post_mlp_layernorm`); `None` in most models.
    pub post_norms: Option<(&'static str, &'static str)>,
}

impl BlockNames {
    /// LLaMA `model.layers.N`: `input_layernorm`, `self_attn`, `post_attention_layernorm`, `mlp`.
    pub const LLAMA: Self = Self {
        norm1: "input_layernorm",
        attn: "self_attn",
        norm2: "post_attention_layernorm",
        mlp: "mlp",
        attention: AttentionNames::LLAMA,
        mlp_names: MlpNames::LLAMA,
        post_norms: None,
    };
    /// GLM (`GlmForCausalLM`): LLaMA's names with the gate and up projections stacked in
    /// `mlp.gate_up_proj`.
    pub const GLM: Self = Self { mlp_names: MlpNames::GLM, ..Self::LLAMA };
    /// GLM-4-0414 (`Glm4ForCausalLM`): [`Self::GLM`] with sandwich norms.
    pub const GLM4: Self =
        Self { post_norms: Some(("post_self_attn_layernorm", "post_mlp_layernorm")), ..Self::GLM };
    /// Meta's LLaMA layout `layers.N` (OneLLM's `resample_layers.E.N`): `attention_norm`,
    /// `attention` (`wq` ...), `ffn_norm`, `feed_forward` (`w1`, `w2`, `w3`).
    pub const META: Self = Self {
        norm1: "attention_norm",
        attn: "attention",
        norm2: "ffn_norm",
        mlp: "feed_forward",
        attention: AttentionNames::META,
        mlp_names: MlpNames::META,
        post_norms: None,
    };
    /// CLIP `encoder.layers.N`: `layer_norm1`, `self_attn`, `layer_norm2`, `mlp` (`fc1`, `fc2`).
    pub const CLIP: Self = Self {
        norm1: "layer_norm1",
        attn: "self_attn",
        norm2: "layer_norm2",
        mlp: "mlp",
        attention: AttentionNames::CLIP,
        mlp_names: MlpNames::CLIP,
        post_norms: None,
    };
    /// BERT `encoder.layer.N`: `attention.self.{query,key,value}`, `attention.output.dense`,
    /// `attention.output.LayerNorm`, `intermediate.dense`, `output.dense`, `output.LayerNorm`.
    pub const BERT: Self = Self {
        norm1: "attention.output.LayerNorm",
        attn: "attention",
        norm2: "output.LayerNorm",
        mlp: "",
        attention: AttentionNames::BERT,
        mlp_names: MlpNames::BERT,
        post_norms: None,
    };
}

#[cfg(test)]
mod tests;
