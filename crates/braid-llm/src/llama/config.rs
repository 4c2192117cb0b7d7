//! `LlamaConfig`: read from a Hugging Face `config.json` or from GGUF metadata.

use std::path::Path;

use braid_core::{Error, Result};
use braid_nn::{Activation, AttentionConfig, BlockConfig, MlpConfig, NormConfig, NormKind};
use serde::{Deserialize, Serialize};

/// The fields of a Hugging Face `LlamaConfig` / `Qwen2Config` that shape the model. Other
/// fields of `config.json` (dtype, token ids, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base (transformers 4 writes it here, 5 inside `rope_parameters`).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE settings (transformers 5).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// `llama`, `qwen2`, ...: decides defaults that differ by family.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Longest sequence the RoPE table covers.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// The output projection reuses the token embeddings.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q, k, v; defaults to true for Qwen2, false otherwise.
    #[serde(default)]
    pub attention_bias: Option<bool>,
    /// MLP activation (`silu`).
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
}

/// The `rope_parameters` of a transformers-5 config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeParameters {
    /// RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Only `default` is supported so far.
    #[serde(default)]
    pub rope_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> Activation {
    Activation::Silu
}

impl LlamaConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self = serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The RoPE base: `rope_parameters.rope_theta`, else `rope_theta`, else 10000.
    pub fn rope_base(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(10_000.0)
    }

    /// Whether q, k and v carry biases.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.model_type.as_deref() == Some("qwen2"))
    }

    /// Checks the fields that must agree.
    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0 || self.hidden_size == 0 || self.vocab_size == 0 {
            return Err(Error::config("num_attention_heads", "sizes must be positive"));
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return Err(Error::config(
                "num_key_value_heads",
                format!("{} does not divide {} query heads", self.kv_heads(), self.num_attention_heads),
            ));
        }
        if let Some(kind) = self.rope_parameters.as_ref().and_then(|p| p.rope_type.as_deref()) {
            if kind != "default" {
                return Err(Error::config("rope_parameters.rope_type", format!("`{kind}` is not supported; known: default")));
            }
        }
        if self.head_dim() % 2 != 0 {
            return Err(Error::config("head_dim", format!("RoPE needs an even head width, got {}", self.head_dim())));
        }
        Ok(())
    }

    /// The shared block configuration of every decoder layer.
    pub fn block_config(&self) -> BlockConfig {
        let attention = AttentionConfig {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            kv_heads: self.kv_heads(),
            head_dim: self.head_dim(),
            bias: self.qkv_bias(),
            out_bias: false,
            causal: true,
        };
        let mlp = MlpConfig {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            activation: self.hidden_act,
            gated: true,
            bias: false,
        };
        BlockConfig { attention, mlp, norm: NormConfig { kind: NormKind::RmsNorm, eps: self.rms_norm_eps } }
    }
}
