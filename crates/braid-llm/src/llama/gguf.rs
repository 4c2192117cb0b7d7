//! `LlamaConfig` from GGUF metadata (llama.cpp's `<arch>.*` keys), and the remap table
//! that renames llama.cpp tensors to the Hugging Face layout, for the `llama`, `chatglm`
//! (GLM-4, ChatGLM) and `glm4` (GLM-4-0414) architectures. Reference: llama.cpp
//! `convert_hf_to_gguf.py` and `gguf-py/gguf/constants.py`.

use braid_core::checkpoint::{Gguf, RemapTable};
use braid_core::{Error, Result};

use super::{Family, LlamaConfig};

/// The `<arch>.*` GGUF key of each `config.json` field read from it, so that an error
/// names the key the file holds.
const GGUF_KEYS: [(&str, &str); 10] = [
    ("hidden_size", "embedding_length"),
    ("intermediate_size", "feed_forward_length"),
    ("num_hidden_layers", "block_count"),
    ("num_attention_heads", "attention.head_count"),
    ("num_key_value_heads", "attention.head_count_kv"),
    ("head_dim", "attention.key_length"),
    ("rms_norm_eps", "attention.layer_norm_rms_epsilon"),
    ("rope_theta", "rope.freq_base"),
    ("max_position_embeddings", "context_length"),
    ("partial_rotary_factor", "rope.dimension_count"),
];

/// GGUF architectures this decoder reads.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "chatglm", "glm4"];

/// The Hugging Face `model_type` of each GGUF architecture.
fn model_type(arch: &str) -> &'static str {
    match arch {
        "chatglm" => "glm",
        "glm4" => "glm4",
        _ => "llama",
    }
}

impl LlamaConfig {
    /// Reads the model shape from GGUF metadata; an architecture other than
    /// [`GGUF_ARCHITECTURES`] is an error naming it.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self> {
        let arch = gguf.get_str("general.architecture")?;
        if !GGUF_ARCHITECTURES.contains(&arch) {
            return Err(Error::format(
                gguf.path(),
                format!(
                    "metadata key `general.architecture`: architecture `{arch}` is not \
                     supported; known: {}",
                    GGUF_ARCHITECTURES.join(", ")
                ),
            ));
        }
        let key = |k: &str| format!("{arch}.{k}");
        let heads = gguf.get_usize(&key("attention.head_count"))?;
        let (vocab_size, vocab_key) = match gguf.get_usize(&key("vocab_size")) {
            Ok(v) => (v, key("vocab_size")),
            Err(_) => (
                gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
                "tokenizer.ggml.tokens (its length)".to_string(),
            ),
        };
        let head_dim = gguf.get_usize(&key("attention.key_length")).ok();
        // `rope.dimension_count` rotated dimensions, as a share of the head.
        let partial_rotary_factor = gguf.get_usize(&key("rope.dimension_count")).ok().map(|n| {
            let width = gguf.get_usize(&key("embedding_length")).unwrap_or(0) / heads.max(1);
            n as f64 / head_dim.unwrap_or(width).max(1) as f64
        });
        let bias = ["blk.0.attn_q.bias", "blk.0.attn_qkv.bias"];
        let cfg = Self {
            vocab_size,
            hidden_size: gguf.get_usize(&key("embedding_length"))?,
            intermediate_size: gguf.get_usize(&key("feed_forward_length"))?,
            num_hidden_layers: gguf.get_usize(&key("block_count"))?,
            num_attention_heads: heads,
            num_key_value_heads: Some(
                gguf.get_usize(&key("attention.head_count_kv")).unwrap_or(heads),
            ),
            head_dim,
            rms_norm_eps: f64::from(gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?),
            rope_theta: Some(gguf.get_f32(&key("rope.freq_base")).map_or(10_000.0, f64::from)),
            rope_parameters: None,
            model_type: Some(model_type(arch).to_string()),
            max_position_embeddings: gguf.get_usize(&key("context_length")).unwrap_or(2048),
            tie_word_embeddings: gguf.tensor_info("output.weight").is_none(),
            attention_bias: Some(bias.iter().any(|b| gguf.tensor_info(b).is_some())),
            hidden_act: braid_nn::Activation::Silu,
            partial_rotary_factor,
        };
        let name = |field: &'static str| match field {
            "vocab_size" => vocab_key.clone(),
            f => GGUF_KEYS
                .iter()
                .find(|(json, _)| *json == f)
                .map_or_else(|| f.to_string(), |(_, k)| key(k)),
        };
        if let Some((field, msg)) = cfg.problem(&name) {
            return Err(Error::format(gguf.path(), format!("metadata key `{field}`: {msg}")));
        }
        Ok(cfg)
    }

    /// The llama.cpp -> Hugging Face name table for this model (LLaMA: q and k
    /// un-permuted; GLM: a fused `attn_qkv` split).
    pub fn gguf_remap(&self) -> RemapTable {
        let (heads, kv) = (self.num_attention_heads, self.kv_heads());
        match self.family() {
            Family::Llama => RemapTable::llama_gguf(heads, kv),
            family => RemapTable::glm_gguf(
                heads * self.head_dim(),
                kv * self.head_dim(),
                family == Family::Glm4,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{DType, Device, Tensor};

    /// The config error of a llama GGUF (header only) whose metadata is a valid tiny
    /// model's with `over` replacing or adding keys.
    fn gguf_error(name: &str, over: &[(&str, Value)]) -> String {
        let dir =
            std::env::temp_dir().join(format!("braid-llm-gguf-cfg-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.gguf"));
        let mut meta: Vec<(String, Value)> = vec![
            ("general.architecture".into(), Value::String("llama".into())),
            ("llama.vocab_size".into(), Value::U32(40)),
            ("llama.embedding_length".into(), Value::U32(16)),
            ("llama.feed_forward_length".into(), Value::U32(24)),
            ("llama.block_count".into(), Value::U32(2)),
            ("llama.attention.head_count".into(), Value::U32(4)),
            ("llama.attention.head_count_kv".into(), Value::U32(2)),
            ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-6)),
            ("llama.rope.freq_base".into(), Value::F32(10_000.0)),
        ];
        for (k, v) in over {
            meta.retain(|(m, _)| m != k);
            meta.push((k.to_string(), v.clone()));
        }
        let w = QTensor::quantize(
            &Tensor::zeros((40, 16), DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap();
        let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &refs, &[("token_embd.weight", &w)]).unwrap();
        drop(f);
        let e = LlamaConfig::from_gguf(&Gguf::open(&path).unwrap())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        std::fs::remove_dir_all(&dir).ok();
        e
    }

    /// A file name, the metadata it overrides, and the error wanted.
    type Case = (&'static str, Vec<(&'static str, Value)>, &'static str);

    #[test]
    fn panic_gguf_head_count_kv_zero() {
        assert_eq!(gguf_error("ok", &[]), "");
        let cases: [Case; 5] = [
            ("kv0", vec![("llama.attention.head_count_kv", Value::U32(0))], "metadata key `llama.attention.head_count_kv`: must be in 1..="),
            ("kv3", vec![("llama.attention.head_count_kv", Value::U32(3))], "of `llama.attention.head_count`"),
            ("heads3", vec![("llama.attention.head_count", Value::U32(3)), ("llama.attention.head_count_kv", Value::U32(1))], "`llama.attention.head_count`: 3 does not divide `llama.embedding_length` 16 (or set `llama.attention.key_length`)"),
            ("layers", vec![("llama.block_count", Value::U64(1 << 40))], "`llama.block_count`: must be in 1..=1024"),
            ("embd0", vec![("llama.embedding_length", Value::U32(0))], "`llama.embedding_length`"),
        ];
        for (name, over, want) in cases {
            let e = gguf_error(name, &over);
            assert!(
                e.contains(&format!("{name}.gguf")) && e.contains(want) && !e.contains('\n'),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn nan_gguf_rope_freq_base() {
        for (name, v) in [("nan", f32::NAN), ("inf", f32::INFINITY), ("neg", -1.0)] {
            let e = gguf_error(name, &[("llama.rope.freq_base", Value::F32(v))]);
            assert!(e.contains("metadata key `llama.rope.freq_base`: the RoPE base must be a finite positive number"), "{e}");
        }
        let e =
            gguf_error("eps", &[("llama.attention.layer_norm_rms_epsilon", Value::F32(f32::NAN))]);
        assert!(e.contains("`llama.attention.layer_norm_rms_epsilon`"), "{e}");
    }
}
