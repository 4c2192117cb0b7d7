//! Weight-name remap tables: foreign checkpoint layouts (llama.cpp GGUF, ...) to the
//! Hugging Face layout, as data. A rule's pattern may hold `{n}` (a layer index, digits);
//! the captured indices fill the `{n}` of the target in order. A rule may carry a
//! [`Transform`] so that loaded weights equal the Hugging Face ones.

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};

use crate::{Error, Result};

/// A change applied to a tensor as it is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Undo llama.cpp's rotary permutation of q/k projection rows
    /// (`convert_hf_to_gguf.py` `permute`) for `heads` heads (kv heads for k).
    UnpermuteRope {
        /// Number of heads the rows are split into.
        heads: usize,
    },
    /// llama.cpp's rotary permutation itself (Hugging Face -> GGUF layout).
    PermuteRope {
        /// Number of heads the rows are split into.
        heads: usize,
    },
}

impl Transform {
    /// Applies the transform; `name` is used in errors.
    /// w: [rows, ...] -> [rows, ...] (rows reordered within each head).
    pub fn apply(&self, w: &Tensor, name: &str) -> Result<Tensor> {
        let (heads, split) = match *self {
            // HF -> GGUF: rows are (head, 2, half) read as (head, half, 2).
            Self::PermuteRope { heads } => (heads, (2usize, 0usize)),
            Self::UnpermuteRope { heads } => (heads, (0, 2)),
        };
        let dims = w.dims().to_vec();
        let rows = dims.first().copied().unwrap_or(0);
        if heads == 0 || rows % (2 * heads) != 0 {
            return Err(Error::Invalid(format!(
                "{name}: cannot split {rows} rows into {heads} rotary heads of even size"
            )));
        }
        let half = rows / heads / 2;
        let (a, b) = if split.0 == 2 { (2, half) } else { (half, 2) };
        let mut shape = vec![heads, a, b];
        shape.extend_from_slice(&dims[1..]);
        Ok(w.reshape(shape)?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
    }

    /// Applies the transform to a quantized tensor without dequantizing it: the rotary
    /// permutation only reorders rows, and each row is a whole number of blocks.
    pub fn apply_quantized(&self, q: &QTensor, name: &str) -> Result<QTensor> {
        let dims = q.shape().dims().to_vec();
        let rows = dims.first().copied().unwrap_or(0);
        // Where each output row comes from: the transform applied to the row indices.
        let idx =
            Tensor::arange(0u32, rows as u32, &Device::Cpu)?.to_dtype(candle_core::DType::F32)?;
        let from: Vec<f32> = self.apply(&idx, name)?.to_vec1()?;
        let data = q.data()?;
        if rows == 0 || data.len() % rows != 0 {
            return Err(Error::Invalid(format!(
                "{name}: {} bytes do not split into {rows} rows",
                data.len()
            )));
        }
        let row = data.len() / rows;
        let mut out = Vec::with_capacity(data.len());
        for r in from {
            let r = r as usize;
            out.extend_from_slice(&data[r * row..(r + 1) * row]);
        }
        let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &q.device(), q.dtype())?;
        Ok(QTensor::new(storage, dims)?)
    }
}

/// One rule: a foreign-name pattern, its Hugging Face name, an optional transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Name in the checkpoint file, with `{n}` for layer indices.
    pub from: String,
    /// Name the module asks for, with the same number of `{n}`.
    pub to: String,
    /// Applied to the tensor when loaded.
    pub transform: Option<Transform>,
}

impl Rule {
    /// The target name for `name`, when the pattern matches.
    fn map(&self, name: &str) -> Option<String> {
        let caps = capture(&self.from, name)?;
        let mut out = String::new();
        let mut parts = self.to.split("{n}");
        out.push_str(parts.next().unwrap_or(""));
        for (i, part) in parts.enumerate() {
            out.push_str(caps.get(i).map(String::as_str).unwrap_or("{n}"));
            out.push_str(part);
        }
        Some(out)
    }
}

/// Matches `name` against `pattern`, each `{n}` taking a run of digits.
fn capture(pattern: &str, name: &str) -> Option<Vec<String>> {
    let mut parts = pattern.split("{n}");
    let mut rest = name.strip_prefix(parts.next().unwrap_or(""))?;
    let mut caps = Vec::new();
    for part in parts {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        caps.push(rest[..digits].to_string());
        rest = rest[digits..].strip_prefix(part)?;
    }
    rest.is_empty().then_some(caps)
}

/// An ordered list of rules; the first that matches a name wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemapTable {
    /// The rules, tried in order.
    pub rules: Vec<Rule>,
}

impl RemapTable {
    /// An empty table (every name keeps itself).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule without a transform.
    pub fn rule(mut self, from: &str, to: &str) -> Self {
        self.rules.push(Rule { from: from.into(), to: to.into(), transform: None });
        self
    }

    /// Adds a rule with a transform.
    pub fn rule_with(mut self, from: &str, to: &str, transform: Transform) -> Self {
        self.rules.push(Rule { from: from.into(), to: to.into(), transform: Some(transform) });
        self
    }

    /// The Hugging Face name and transform for a checkpoint name; `None` when no rule
    /// matches (the name is then kept as is).
    pub fn map(&self, name: &str) -> Option<(String, Option<Transform>)> {
        self.rules.iter().find_map(|r| r.map(name).map(|to| (to, r.transform)))
    }

    /// llama.cpp GGUF names -> Hugging Face LLaMA names, un-permuting q and k rows.
    pub fn llama_gguf(n_heads: usize, n_kv_heads: usize) -> Self {
        let (q, k) = (
            Transform::UnpermuteRope { heads: n_heads },
            Transform::UnpermuteRope { heads: n_kv_heads },
        );
        let blk = |s: &str| format!("blk.{{n}}.{s}.weight");
        let layer = |s: &str| format!("model.layers.{{n}}.{s}.weight");
        let mut t = Self::new()
            .rule("token_embd.weight", "model.embed_tokens.weight")
            .rule("output_norm.weight", "model.norm.weight")
            .rule("output.weight", "lm_head.weight")
            .rule_with(&blk("attn_q"), &layer("self_attn.q_proj"), q)
            .rule_with(&blk("attn_k"), &layer("self_attn.k_proj"), k);
        let plain = [
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ];
        for (from, to) in plain {
            t = t.rule(&blk(from), &layer(to));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn llama_names_map_to_hugging_face() {
        let t = RemapTable::llama_gguf(9, 3);
        let m = |n: &str| t.map(n).map(|(s, _)| s);
        assert_eq!(m("token_embd.weight").as_deref(), Some("model.embed_tokens.weight"));
        assert_eq!(
            m("blk.12.ffn_down.weight").as_deref(),
            Some("model.layers.12.mlp.down_proj.weight")
        );
        assert_eq!(
            m("blk.0.attn_output.weight").as_deref(),
            Some("model.layers.0.self_attn.o_proj.weight")
        );
        assert_eq!(
            m("blk.3.ffn_norm.weight").as_deref(),
            Some("model.layers.3.post_attention_layernorm.weight")
        );
        assert_eq!(m("output.weight").as_deref(), Some("lm_head.weight"));
        assert_eq!(
            t.map("blk.1.attn_k.weight").and_then(|(_, x)| x),
            Some(Transform::UnpermuteRope { heads: 3 })
        );
        assert_eq!(m("blk.x.attn_q.weight"), None);
        assert_eq!(m("rope_freqs.weight"), None);
    }

    #[test]
    fn several_indices_fill_in_order() {
        let t = RemapTable::new().rule("enc.{n}.blk.{n}.w", "encoder.stage.{n}.layer.{n}.weight");
        assert_eq!(
            t.map("enc.2.blk.10.w").map(|(s, _)| s).as_deref(),
            Some("encoder.stage.2.layer.10.weight")
        );
    }

    #[test]
    fn unpermute_reverses_permute() -> Result<()> {
        let (heads, head_dim, cols) = (3, 4, 5);
        let w = Tensor::arange(0f32, (heads * head_dim * cols) as f32, &Device::Cpu)?
            .reshape((heads * head_dim, cols))?;
        let p = Transform::PermuteRope { heads }.apply(&w, "q")?;
        // Within head 0, HF rows [0 1 | 2 3] (two halves) interleave to [0 2 1 3].
        let first: Vec<f32> = p.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?;
        assert_eq!(&first[..4], &[0., 10., 5., 15.]);
        let back = Transform::UnpermuteRope { heads }.apply(&p, "q")?;
        assert_eq!(back.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        let bias = Tensor::arange(0f32, 12., &Device::Cpu)?;
        let rt = Transform::UnpermuteRope { heads }
            .apply(&Transform::PermuteRope { heads }.apply(&bias, "b")?, "b")?;
        assert_eq!(rt.to_vec1::<f32>()?, bias.to_vec1::<f32>()?);
        assert!(Transform::UnpermuteRope { heads: 5 }.apply(&w, "q").is_err());
        let wide = Tensor::randn(0f32, 1., (12, 32), &Device::Cpu)?;
        let q = QTensor::quantize(&wide, candle_core::quantized::GgmlDType::Q8_0)?;
        let pq =
            Transform::PermuteRope { heads }.apply_quantized(&q, "q")?.dequantize(&Device::Cpu)?;
        let pd = Transform::PermuteRope { heads }.apply(&q.dequantize(&Device::Cpu)?, "q")?;
        assert_eq!(pq.to_vec2::<f32>()?, pd.to_vec2::<f32>()?);
        Ok(())
    }
}
