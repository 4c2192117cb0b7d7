//! Range checks of a transformer encoder's shape as its `config.json` names the fields,
//! run when the file is read, before any value sizes a tensor or divides: the error names
//! the file and the user's own field (`vision_config.num_attention_heads`), not an internal
//! name (`attention.kv_heads`) or the checkpoint tensors a wrong value would mismatch.
//! The bounds sit far above every published model (as `braid_llm::LlamaConfig`'s).

use std::path::Path;

use braid_core::{Error, Result};

/// Widest model accepted.
const MAX_WIDTH: usize = 1 << 16;
/// Widest MLP accepted.
const MAX_INNER: usize = 1 << 20;
/// Most layers accepted.
const MAX_LAYERS: usize = 1024;
/// Most attention heads accepted.
const MAX_HEADS: usize = 1024;
/// Largest vocabulary, position table or other count accepted.
pub(crate) const MAX_COUNT: usize = 1 << 24;

/// A field's `config.json` name and value.
pub(crate) type Field<'a, T> = (&'a str, T);

/// The fields that shape a transformer encoder.
pub(crate) struct Shape<'a> {
    /// Model width.
    pub(crate) hidden: Field<'a, usize>,
    /// Attention heads (must divide the width).
    pub(crate) heads: Field<'a, usize>,
    /// Layers.
    pub(crate) layers: Field<'a, usize>,
    /// MLP inner width.
    pub(crate) inner: Field<'a, usize>,
    /// LayerNorm epsilon, where the file sets one.
    pub(crate) eps: Option<Field<'a, f64>>,
    /// Other counts (vocabulary, positions, mel bins...), each in `1..=MAX_COUNT`.
    pub(crate) counts: Vec<Field<'a, usize>>,
}

impl Shape<'static> {
    /// The shape under Hugging Face's usual names (`hidden_size`, `num_attention_heads`,
    /// `num_hidden_layers`, `intermediate_size`, `layer_norm_eps`: BERT, CLIP, ViT), with
    /// `counts` besides.
    pub(crate) fn hf(
        [hidden, heads, layers, inner]: [usize; 4],
        eps: f64,
        counts: Vec<Field<'static, usize>>,
    ) -> Self {
        Shape {
            hidden: ("hidden_size", hidden),
            heads: ("num_attention_heads", heads),
            layers: ("num_hidden_layers", layers),
            inner: ("intermediate_size", inner),
            eps: Some(("layer_norm_eps", eps)),
            counts,
        }
    }
}

impl Shape<'_> {
    /// The first field that cannot shape a model, and why.
    pub(crate) fn problem(&self) -> Option<(String, String)> {
        let bounds = [
            (self.hidden, MAX_WIDTH),
            (self.heads, MAX_HEADS),
            (self.layers, MAX_LAYERS),
            (self.inner, MAX_INNER),
        ];
        let counts = self.counts.iter().map(|&c| (c, MAX_COUNT));
        for ((field, v), max) in bounds.into_iter().chain(counts) {
            if v == 0 || v > max {
                return Some((field.into(), format!("must be in 1..={max}, got {v}")));
            }
        }
        let ((hf, hidden), (nf, heads)) = (self.hidden, self.heads);
        if hidden % heads != 0 {
            return Some((nf.into(), format!("{heads} does not divide `{hf}` {hidden}")));
        }
        if let Some((field, eps)) = self.eps {
            if !(eps.is_finite() && eps > 0.0 && eps <= 1.0) {
                return Some((field.into(), format!("must be a number in (0, 1], got {eps}")));
            }
        }
        None
    }

    /// [`Shape::problem`] as an error naming `path` and the field under `prefix`
    /// (`vision_config.`, or empty).
    pub(crate) fn check(&self, path: &Path, prefix: &str) -> Result<()> {
        match self.problem() {
            Some((field, msg)) => Err(Error::format(path, format!("`{prefix}{field}`: {msg}"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(hidden: usize, heads: usize, eps: f64) -> Shape<'static> {
        Shape {
            hidden: ("hidden_size", hidden),
            heads: ("num_attention_heads", heads),
            layers: ("num_hidden_layers", 2),
            inner: ("intermediate_size", 8),
            eps: Some(("layer_norm_eps", eps)),
            counts: vec![("vocab_size", 10)],
        }
    }

    #[test]
    fn wrong_name_problems_use_the_files_own_fields() {
        assert_eq!(shape(36, 6, 1e-5).problem(), None);
        let cases = [
            (shape(36, 0, 1e-5), "num_attention_heads", "must be in 1..=1024, got 0"),
            (shape(36, 5, 1e-5), "num_attention_heads", "5 does not divide `hidden_size` 36"),
            (shape(0, 1, 1e-5), "hidden_size", "got 0"),
            (shape(36, 6, -1.0), "layer_norm_eps", "(0, 1], got -1"),
            (shape(36, 6, f64::NAN), "layer_norm_eps", "got NaN"),
        ];
        for (s, field, msg) in cases {
            let (f, m) = s.problem().unwrap_or_default();
            assert!(f == field && m.contains(msg), "{f}: {m}");
        }
        let e = shape(36, 5, 1e-5).check(Path::new("m/config.json"), "vision_config.");
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("m/config.json") && e.contains("`vision_config.num_attention_heads`"),
            "{e}"
        );
    }
}
