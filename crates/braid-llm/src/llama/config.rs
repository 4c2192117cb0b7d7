//! `LlamaConfig`: read from a Hugging Face `config.json` or from GGUF metadata.

use std::path::Path;

use braid_core::{Error, Result};
use braid_nn::{
    Activation, AttentionConfig, BlockConfig, BlockNames, MlpConfig, NormConfig, NormKind,
    RopeLayout,
};
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
    /// Share of each head that RoPE rotates (transformers 4 writes it here, 5 inside
    /// `rope_parameters`); defaults to 0.5 for GLM, 1 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
}

/// The LLaMA-family variants that differ in structure rather than in a value, told
/// apart by `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// LLaMA, SmolLM2, Qwen2 (q/k/v biases), Mistral: rotate-half RoPE over whole heads.
    Llama,
    /// GLM-4 (`glm`, `GlmForCausalLM`; ChatGLM's layout in GGUF): RoPE over part of each
    /// head in adjacent pairs, q/k/v biases, the gate and up projections stacked.
    Glm,
    /// GLM-4-0414 (`glm4`, `Glm4ForCausalLM`): [`Family::Glm`] with sandwich norms.
    Glm4,
}

/// The `rope_parameters` of a transformers-5 config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RopeParameters {
    /// RoPE base.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Only `default` is supported so far.
    #[serde(default)]
    pub rope_type: Option<String>,
    /// Share of each head that RoPE rotates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary_factor: Option<f64>,
}

// Sanity bounds of `validate`, not budgets: far above every published model.
/// Largest vocabulary accepted (Gemma 3: 262,144).
const MAX_VOCAB: usize = 1 << 22;
/// Largest model width accepted (LLaMA 3.1 405B: 16,384).
const MAX_HIDDEN: usize = 1 << 16;
/// Largest MLP width accepted (LLaMA 3.1 405B: 53,248).
const MAX_INTERMEDIATE: usize = 1 << 20;
/// Most decoder layers accepted (LLaMA 3.1 405B: 126).
const MAX_LAYERS: usize = 1024;
/// Most attention heads accepted (LLaMA 3.1 405B: 128).
const MAX_HEADS: usize = 1024;
/// Widest attention head accepted (Gemma: 256).
const MAX_HEAD_DIM: usize = 1024;
/// Longest context accepted (Qwen2.5-1M: 1,010,000).
const MAX_POSITIONS: usize = 1 << 24;
/// Most values in the RoPE tables (`max_position_embeddings x head_dim`, cos and sin
/// halves together): 1 GiB of f32.
const MAX_ROPE_TABLE: usize = 1 << 28;

/// The other fields a message of `validate` may quote, renamed with the field itself.
const QUOTED: [&str; 3] = ["num_attention_heads", "hidden_size", "head_dim"];

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
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        if let Some((field, msg)) = cfg.problem(&|f| f.to_string()) {
            return Err(Error::format(path, format!("`{field}`: {msg}")));
        }
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

    /// Whether q, k and v carry biases (by default in Qwen2 and GLM).
    pub fn qkv_bias(&self) -> bool {
        let by_family =
            self.model_type.as_deref() == Some("qwen2") || self.family() != Family::Llama;
        self.attention_bias.unwrap_or(by_family)
    }

    /// The structural variant, from `model_type`.
    pub fn family(&self) -> Family {
        match self.model_type.as_deref() {
            Some("glm") => Family::Glm,
            Some("glm4") => Family::Glm4,
            _ => Family::Llama,
        }
    }

    /// The share of each head RoPE rotates: `rope_parameters.partial_rotary_factor`, else
    /// `partial_rotary_factor`, else 0.5 for GLM and 1 otherwise.
    pub fn partial_rotary_factor(&self) -> f64 {
        let default = if self.family() == Family::Llama { 1.0 } else { 0.5 };
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.partial_rotary_factor)
            .or(self.partial_rotary_factor)
            .unwrap_or(default)
    }

    /// Which field [`LlamaConfig::partial_rotary_factor`] is read from.
    fn rotary_factor_field(&self) -> &'static str {
        if self.rope_parameters.as_ref().is_some_and(|p| p.partial_rotary_factor.is_some()) {
            "rope_parameters.partial_rotary_factor"
        } else {
            "partial_rotary_factor"
        }
    }

    /// Which dimensions of a head RoPE rotates and how they pair: whole heads in halves
    /// (LLaMA), or `int(head_dim * partial_rotary_factor)` in adjacent pairs (GLM).
    pub fn rope_layout(&self) -> RopeLayout {
        let head_dim = self.head_dim();
        // A factor read back from GGUF (`dims / head_dim`) may fall a hair under the
        // integer it stands for; transformers truncates exact factors such as 0.5.
        let rotary_dim = (head_dim as f64 * self.partial_rotary_factor() + 1e-6).floor() as usize;
        RopeLayout { head_dim, rotary_dim, interleaved: self.family() != Family::Llama }
    }

    /// Checkpoint names of a decoder layer's parts.
    pub fn block_names(&self) -> BlockNames {
        match self.family() {
            Family::Llama => BlockNames::LLAMA,
            Family::Glm => BlockNames::GLM,
            Family::Glm4 => BlockNames::GLM4,
        }
    }

    /// Checks every field for range and the fields that must agree; the error names the
    /// `config.json` field.
    pub fn validate(&self) -> Result<()> {
        match self.problem(&|f| f.to_string()) {
            Some((field, msg)) => Err(Error::config(field, msg)),
            None => Ok(()),
        }
    }

    /// The first field that cannot describe a model, and why, every field named by
    /// `name(its config.json name)` (GGUF files name them otherwise). Upper bounds sit far
    /// above every published model, so that nothing is sized from an absurd value.
    pub(crate) fn problem(
        &self,
        name: &dyn Fn(&'static str) -> String,
    ) -> Option<(String, String)> {
        self.problem_json().map(|(field, msg)| {
            let msg = msg.split('`').enumerate().map(|(i, part)| {
                match QUOTED.iter().find(|k| **k == part) {
                    Some(k) if i % 2 == 1 => format!("`{}`", name(k)),
                    _ if i % 2 == 1 => format!("`{part}`"),
                    _ => part.to_string(),
                }
            });
            (name(field), msg.collect())
        })
    }

    /// [`LlamaConfig::problem`] in `config.json` names; other fields a message mentions are
    /// quoted in backticks.
    fn problem_json(&self) -> Option<(&'static str, String)> {
        let sizes = [
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("hidden_size", self.hidden_size, MAX_HIDDEN),
            ("intermediate_size", self.intermediate_size, MAX_INTERMEDIATE),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.kv_heads(), MAX_HEADS),
            ("max_position_embeddings", self.max_position_embeddings, MAX_POSITIONS),
        ];
        for (field, v, max) in sizes {
            if v == 0 || v > max {
                return Some((field, format!("must be in 1..={max}, got {v}")));
            }
        }
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        if kv > heads || heads % kv != 0 {
            return Some((
                "num_key_value_heads",
                format!("{kv} does not divide the {heads} query heads of `num_attention_heads`"),
            ));
        }
        match self.head_dim {
            Some(d) if d == 0 || d > MAX_HEAD_DIM => {
                return Some(("head_dim", format!("must be in 1..={MAX_HEAD_DIM}, got {d}")))
            }
            None if self.hidden_size % heads != 0 => {
                let msg = format!(
                    "{heads} does not divide `hidden_size` {} (or set `head_dim`)",
                    self.hidden_size
                );
                return Some(("num_attention_heads", msg));
            }
            None if self.head_dim() > MAX_HEAD_DIM => {
                return Some((
                    "num_attention_heads",
                    format!("gives heads {} wide, over {MAX_HEAD_DIM}", self.head_dim()),
                ));
            }
            _ => {}
        }
        if self.head_dim() % 2 != 0 && self.family() == Family::Llama {
            return Some((
                "head_dim",
                format!("RoPE needs an even head width, got {}", self.head_dim()),
            ));
        }
        let table = self.max_position_embeddings.saturating_mul(self.head_dim());
        if table > MAX_ROPE_TABLE {
            let msg = format!(
                "{} positions x head width {} make a RoPE table of {table} values, over {MAX_ROPE_TABLE}",
                self.max_position_embeddings,
                self.head_dim()
            );
            return Some(("max_position_embeddings", msg));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps <= 1.0) {
            return Some((
                "rms_norm_eps",
                format!("must be a number in (0, 1], got {}", self.rms_norm_eps),
            ));
        }
        let base = self.rope_base();
        if !(base.is_finite() && base > 0.0) {
            return Some((
                self.rope_base_field(),
                format!("the RoPE base must be a finite positive number, got {base}"),
            ));
        }
        if let Some(problem) = self.rotary_problem() {
            return Some(problem);
        }
        if let Some(kind) = self.rope_parameters.as_ref().and_then(|p| p.rope_type.as_deref()) {
            if kind != "default" {
                return Some((
                    "rope_parameters.rope_type",
                    format!("`{kind}` is not supported; known: default"),
                ));
            }
        }
        None
    }

    /// Why the rotated share of each head cannot be built, naming its field.
    fn rotary_problem(&self) -> Option<(&'static str, String)> {
        let (field, f) = (self.rotary_factor_field(), self.partial_rotary_factor());
        if !(f.is_finite() && f > 0.0 && f <= 1.0) {
            return Some((field, format!("must be a number in (0, 1], got {f}")));
        }
        let layout = self.rope_layout();
        if self.family() == Family::Llama && f != 1.0 {
            let kind = self.model_type.as_deref().unwrap_or("llama");
            let msg = format!(
                "a partial rotation ({f}) is not supported for model_type `{kind}`: Braid \
                 rotates part of a head only in GLM's interleaved layout (`glm`, `glm4`)"
            );
            return Some((field, msg));
        }
        if layout.rotary_dim < 2 || layout.rotated() > layout.head_dim {
            let msg = format!(
                "{f} of a head {} wide rotates {} dimensions: need 2..={}",
                layout.head_dim, layout.rotary_dim, layout.head_dim
            );
            return Some((field, msg));
        }
        None
    }

    /// Which field [`LlamaConfig::rope_base`] is read from.
    fn rope_base_field(&self) -> &'static str {
        if self.rope_parameters.as_ref().is_some_and(|p| p.rope_theta.is_some()) {
            "rope_parameters.rope_theta"
        } else {
            "rope_theta"
        }
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
            context: None,
        };
        let mlp = MlpConfig {
            hidden: self.hidden_size,
            intermediate: self.intermediate_size,
            activation: self.hidden_act,
            gated: true,
            bias: false,
        };
        BlockConfig {
            attention,
            mlp,
            norm: NormConfig { kind: NormKind::RmsNorm, eps: self.rms_norm_eps },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TINY: &str = r#"{"vocab_size": 40, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32"#;

    /// The error of reading `config.json` holding the tiny config with `extra` fields
    /// (`, "key": value, ...`) replacing or adding to its own.
    fn json_error(extra: &str) -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("braid-llm-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        let mut cfg: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{TINY}}}")).unwrap();
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{}}}", extra.trim_start_matches(','))).unwrap();
        cfg.extend(extra);
        std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
        let e = LlamaConfig::from_json_file(&p).err().map(|e| e.to_string()).unwrap_or_default();
        std::fs::remove_dir_all(&dir).ok();
        e
    }

    #[test]
    fn panic_llama_config_values_that_size_or_divide() {
        assert_eq!(json_error(""), "");
        let cases = [
            (r#", "num_key_value_heads": 0"#, "`num_key_value_heads`: must be in 1..=1024, got 0"),
            (r#", "num_key_value_heads": 3"#, "`num_key_value_heads`: 3 does not divide the 4 query heads of `num_attention_heads`"),
            (r#", "num_key_value_heads": 8"#, "`num_key_value_heads`: 8 does not divide"),
            (r#", "num_attention_heads": 0"#, "`num_attention_heads`: must be in 1..=1024, got 0"),
            (r#", "num_attention_heads": 3, "num_key_value_heads": 1"#, "`num_attention_heads`: 3 does not divide `hidden_size` 16"),
            (r#", "head_dim": 0"#, "`head_dim`: must be in 1..=1024, got 0"),
            (r#", "head_dim": 5"#, "`head_dim`: RoPE needs an even head width"),
            (r#", "rms_norm_eps": 0"#, "`rms_norm_eps`: must be a number in (0, 1]"),
            (r#", "rms_norm_eps": -1e-6"#, "`rms_norm_eps`"),
            (r#", "rope_theta": 0"#, "`rope_theta`: the RoPE base must be a finite positive number"),
            (r#", "rope_parameters": {"rope_theta": -1}"#, "`rope_parameters.rope_theta`"),
            (r#", "intermediate_size": 0"#, "`intermediate_size`: must be in 1..="),
        ];
        for (extra, want) in cases {
            let e = json_error(extra);
            assert!(
                e.contains("config.json") && e.contains(want) && !e.contains('\n'),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn alloc_llama_config_absurd_sizes() {
        let cases = [
            (
                r#", "num_hidden_layers": 1000000"#,
                "`num_hidden_layers`: must be in 1..=1024, got 1000000",
            ),
            (r#", "vocab_size": 10000000000"#, "`vocab_size`: must be in 1..=4194304"),
            (r#", "hidden_size": 1048576, "head_dim": 4"#, "`hidden_size`: must be in 1..=65536"),
            (r#", "intermediate_size": 4294967296"#, "`intermediate_size`"),
            (
                r#", "max_position_embeddings": 4294967296"#,
                "`max_position_embeddings`: must be in 1..=16777216",
            ),
            (
                r#", "max_position_embeddings": 16777216, "head_dim": 1024"#,
                "RoPE table of 17179869184 values",
            ),
        ];
        for (extra, want) in cases {
            let e = json_error(extra);
            assert!(e.contains("config.json") && e.contains(want), "{extra}: {e}");
        }
    }

    #[test]
    fn nan_llama_config_rope_base_and_eps() {
        let base: LlamaConfig = serde_json::from_str(&format!("{TINY}}}")).unwrap();
        for (cfg, want) in [
            (LlamaConfig { rope_theta: Some(f64::NAN), ..base.clone() }, "`rope_theta`"),
            (LlamaConfig { rope_theta: Some(f64::INFINITY), ..base.clone() }, "`rope_theta`"),
            (LlamaConfig { rms_norm_eps: f64::NAN, ..base.clone() }, "`rms_norm_eps`"),
        ] {
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains(want) && (e.contains("NaN") || e.contains("inf")), "{e}");
        }
    }
}
