//! Weight-name remap tables: foreign checkpoint layouts (llama.cpp GGUF, ...) to the
//! Hugging Face layout, as data. A rule's pattern may hold `{n}` (a layer index, digits);
//! the captured indices fill the `{n}` of the target in order. A rule may carry a
//! [`Transform`] so that loaded weights equal the Hugging Face ones; a fused tensor is
//! split into several names by consecutive rules with the same pattern, each taking its
//! rows ([`RemapTable::split`]).

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
    /// Rows `start..start + len` of a fused tensor of `total` rows (one part of a fused
    /// projection such as llama.cpp's `attn_qkv`).
    Rows {
        /// First row taken.
        start: usize,
        /// Rows taken.
        len: usize,
        /// Rows the fused tensor must have.
        total: usize,
    },
}

impl Transform {
    /// Applies the transform; `name` is used in errors.
    /// w: [rows, ...] -> [rows, ...] (rows reordered within each head).
    pub fn apply(&self, w: &Tensor, name: &str) -> Result<Tensor> {
        let (heads, split) = match *self {
            Self::Rows { start, len, .. } => {
                self.check_rows(w.dims().first().copied().unwrap_or(0), name)?;
                return Ok(w.narrow(0, start, len)?.contiguous()?);
            }
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
        let mut dims = q.shape().dims().to_vec();
        let rows = dims.first().copied().unwrap_or(0);
        if let Self::Rows { start, len, .. } = *self {
            self.check_rows(rows, name)?;
            let data = q.data()?;
            let row = data.len() / rows.max(1);
            let bytes = data[start * row..(start + len) * row].to_vec();
            dims[0] = len;
            let storage =
                QStorage::from_data(std::borrow::Cow::Owned(bytes), &q.device(), q.dtype())?;
            return Ok(QTensor::new(storage, dims)?);
        }
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

impl Transform {
    /// The shape of a stored tensor of shape `stored` once transformed; a fused tensor
    /// without the rows its split expects keeps its own shape (so that the load report
    /// shows the mismatch).
    pub fn shape(&self, mut stored: Vec<usize>) -> Vec<usize> {
        if let (Self::Rows { len, total, .. }, Some(rows)) = (self, stored.first_mut()) {
            if *rows == *total {
                *rows = *len;
            }
        }
        stored
    }

    /// For [`Transform::Rows`]: an error naming the tensor unless it has the rows the split
    /// expects.
    fn check_rows(&self, rows: usize, name: &str) -> Result<()> {
        match *self {
            Self::Rows { start, len, total } if rows != total || start + len > total => {
                Err(Error::Invalid(format!(
                    "{name}: rows {start}..{} of a fused tensor of {total} rows, but it has {rows}",
                    start + len
                )))
            }
            _ => Ok(()),
        }
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

    /// Adds rules that split the fused tensor `from` by rows into `parts` (name, rows),
    /// in order.
    pub fn split(mut self, from: &str, parts: &[(&str, usize)]) -> Self {
        let total = parts.iter().map(|p| p.1).sum();
        let mut start = 0;
        for &(to, len) in parts {
            self = self.rule_with(from, to, Transform::Rows { start, len, total });
            start += len;
        }
        self
    }

    /// The Hugging Face name and transform for a checkpoint name; `None` when no rule
    /// matches (the name is then kept as is).
    pub fn map(&self, name: &str) -> Option<(String, Option<Transform>)> {
        self.rules.iter().find_map(|r| r.map(name).map(|to| (to, r.transform)))
    }

    /// Every name a checkpoint name gives: the first matching rule's and, for a split,
    /// those of the other rules with the same pattern; empty when no rule matches.
    pub fn map_all(&self, name: &str) -> Vec<(String, Option<Transform>)> {
        let Some(first) = self.rules.iter().find(|r| r.map(name).is_some()) else {
            return Vec::new();
        };
        self.rules
            .iter()
            .filter(|r| r.from == first.from)
            .filter_map(|r| r.map(name).map(|to| (to, r.transform)))
            .collect()
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

impl RemapTable {
    /// llama.cpp GGUF names of the `chatglm` and `glm4` architectures -> Hugging Face GLM
    /// names (`GlmForCausalLM`, `Glm4ForCausalLM`): no rotary permutation (GLM already
    /// rotates adjacent pairs, as ggml does), a fused `attn_qkv` (ChatGLM checkpoints)
    /// split into `q_rows`, `kv_rows` and `kv_rows` rows, `ffn_up` holding the stacked
    /// gate and up rows, and with `sandwich` the post-sub-layer norms of GLM-4-0414.
    /// Reference: llama.cpp `gguf-py/gguf/tensor_mapping.py`, `src/llama-model.cpp`.
    pub fn glm_gguf(q_rows: usize, kv_rows: usize, sandwich: bool) -> Self {
        let blk = |s: &str| format!("blk.{{n}}.{s}");
        let layer = |s: &str| format!("model.layers.{{n}}.{s}");
        let mut t = Self::new()
            .rule("token_embd.weight", "model.embed_tokens.weight")
            .rule("output_norm.weight", "model.norm.weight")
            .rule("output.weight", "lm_head.weight");
        let mut plain = vec![
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_up", "mlp.gate_up_proj"),
            ("ffn_down", "mlp.down_proj"),
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
        ];
        if sandwich {
            plain.extend([
                ("post_attention_norm", "post_self_attn_layernorm"),
                ("post_ffw_norm", "post_mlp_layernorm"),
            ]);
        }
        for (from, to) in plain {
            for kind in ["weight", "bias"] {
                t = t.rule(&blk(&format!("{from}.{kind}")), &layer(&format!("{to}.{kind}")));
            }
        }
        for kind in ["weight", "bias"] {
            let part = |p: &str| layer(&format!("self_attn.{p}.{kind}"));
            let (q, k, v) = (part("q_proj"), part("k_proj"), part("v_proj"));
            let parts = [(q.as_str(), q_rows), (k.as_str(), kv_rows), (v.as_str(), kv_rows)];
            t = t.split(&blk(&format!("attn_qkv.{kind}")), &parts);
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

    #[test]
    fn a_split_gives_each_part_its_rows() -> Result<()> {
        let t = RemapTable::new().rule("blk.{n}.x", "x.{n}").split(
            "blk.{n}.attn_qkv.weight",
            &[("l.{n}.q.weight", 4), ("l.{n}.k.weight", 2), ("l.{n}.v.weight", 2)],
        );
        let all = t.map_all("blk.3.attn_qkv.weight");
        let names: Vec<_> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["l.3.q.weight", "l.3.k.weight", "l.3.v.weight"]);
        assert_eq!(t.map_all("blk.3.x").len(), 1);
        assert!(t.map_all("other").is_empty());
        let w = Tensor::arange(0f32, 8. * 32., &Device::Cpu)?.reshape((8, 32))?;
        let k = all[1].1.unwrap();
        assert_eq!(k.shape(vec![8, 32]), [2, 32]);
        assert_eq!(k.shape(vec![9, 32]), [9, 32]);
        let rows = k.apply(&w, "k")?;
        assert_eq!(rows.to_vec2::<f32>()?, w.narrow(0, 4, 2)?.to_vec2::<f32>()?);
        let q = QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q8_0)?;
        let kq = k.apply_quantized(&q, "k")?.dequantize(&Device::Cpu)?;
        let want = q.dequantize(&Device::Cpu)?.narrow(0, 4, 2)?;
        assert_eq!(kq.to_vec2::<f32>()?, want.to_vec2::<f32>()?);
        let short = Tensor::zeros((7, 32), candle_core::DType::F32, &Device::Cpu)?;
        let e = k.apply(&short, "blk.0.attn_qkv.weight").unwrap_err().to_string();
        assert!(e.contains("blk.0.attn_qkv.weight") && e.contains("has 7"), "{e}");
        Ok(())
    }

    #[test]
    fn glm_names_map_to_hugging_face() {
        let t = RemapTable::glm_gguf(8, 4, true);
        let m = |n: &str| t.map_all(n);
        assert_eq!(
            m("blk.2.ffn_up.weight"),
            [("model.layers.2.mlp.gate_up_proj.weight".into(), None)]
        );
        assert_eq!(m("blk.0.attn_q.bias"), [("model.layers.0.self_attn.q_proj.bias".into(), None)]);
        assert_eq!(
            m("blk.1.post_ffw_norm.weight"),
            [("model.layers.1.post_mlp_layernorm.weight".into(), None)]
        );
        let qkv = m("blk.1.attn_qkv.bias");
        assert_eq!(qkv.len(), 3);
        assert_eq!(qkv[2].0, "model.layers.1.self_attn.v_proj.bias");
        assert_eq!(qkv[2].1, Some(Transform::Rows { start: 12, len: 4, total: 16 }));
        assert!(RemapTable::glm_gguf(8, 4, false).map_all("blk.1.post_ffw_norm.weight").is_empty());
    }
}
