//! `LlamaConfig` from GGUF metadata (llama.cpp's `<arch>.*` keys), and the remap table
//! that renames llama.cpp tensors to the Hugging Face layout. Reference: llama.cpp
//! `convert_hf_to_gguf.py` and `gguf-py/gguf/constants.py`.

use braid_core::checkpoint::{Gguf, RemapTable};
use braid_core::{Error, Result};

use super::LlamaConfig;

/// GGUF architectures this decoder reads.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama"];

impl LlamaConfig {
    /// Reads the model shape from GGUF metadata; an architecture other than
    /// [`GGUF_ARCHITECTURES`] is an error naming it.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let arch = gguf.get_str("general.architecture")?;
        if !GGUF_ARCHITECTURES.contains(&arch) {
            return Err(Error::format(
                gguf.path(),
                format!("architecture `{arch}` is not supported; known: {}", GGUF_ARCHITECTURES.join(", ")),
            ));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let heads = gguf.get_usize(&key("attention.head_count"))?;
        let vocab_size = match gguf.get_usize(&key("vocab_size")) {
            Ok(v) => v,
            Err(_) => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let cfg = Self {
            vocab_size,
            hidden_size: gguf.get_usize(&key("embedding_length"))?,
            intermediate_size: gguf.get_usize(&key("feed_forward_length"))?,
            num_hidden_layers: gguf.get_usize(&key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: Some(gguf.get_usize(&key("attention.head_count_kv")).unwrap_or(heads)),
            head_dim: gguf.get_usize(&key("attention.key_length")).ok(),
            rms_norm_eps: f64::from(gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
            rope_theta: Some(gguf.get_f32(&key("rope.freq_base")).map_or(10_000.0, f64::from)),
            rope_parameters: None,
            model_type: Some(arch.to_string()),
            max_position_embeddings: gguf.get_usize(&key("context_length")).unwrap_or(2048),
            tie_word_embeddings: gguf.tensor_info("output.weight").is_none(),
            attention_bias: Some(gguf.tensor_info("blk.0.attn_q.bias").is_some()),
            hidden_act: braid_nn::Activation::Silu,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The llama.cpp -> Hugging Face name table for this model (q and k un-permuted).
    pub fn gguf_remap(&self) -> RemapTable {
        RemapTable::llama_gguf(self.num_attention_heads, self.kv_heads())
    }
}
