//! BLIP-2's Querying Transformer (Li et al. 2023, "BLIP-2: Bootstrapping Language-Image
//! Pre-training with Frozen Image Encoders and Large Language Models") as an input
//! projector: learned query tokens, a BERT-style encoder over them with cross-attention to
//! the image features every other layer, and a linear projection to the LLM width. Weights
//! follow `Blip2ForConditionalGeneration` in Hugging Face transformers
//! (`models/blip_2/modeling_blip_2.py`): `query_tokens`, `qformer.*` (`Blip2QFormerModel`),
//! `language_projection`.

mod layer;

use braid_core::{Error, Features, Result};
use braid_nn::{Activation, LayerNorm, Linear};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::InputProjector;
use layer::Layer;

/// Shape of the Q-Former; encoder and LLM widths come from outside.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QFormerConfig {
    /// Learned query tokens, the number of output tokens (HF `num_query_tokens`).
    pub num_query_tokens: usize,
    /// Q-Former width (`hidden_size`).
    pub hidden: usize,
    /// Layers (`num_hidden_layers`).
    pub layers: usize,
    /// Attention heads (`num_attention_heads`).
    pub heads: usize,
    /// Feed-forward inner width (`intermediate_size`).
    pub intermediate: usize,
    /// Layers `0, f, 2f, …` cross-attend to the encoder (`cross_attention_frequency`).
    pub cross_attention_frequency: usize,
    /// Feed-forward nonlinearity (`hidden_act`).
    pub activation: Activation,
    /// LayerNorm epsilon (`layer_norm_eps`).
    pub eps: f64,
}

impl Default for QFormerConfig {
    /// BLIP-2's Q-Former (BERT-base shape, 32 queries).
    fn default() -> Self {
        Self {
            num_query_tokens: 32,
            hidden: 768,
            layers: 12,
            heads: 12,
            intermediate: 3072,
            cross_attention_frequency: 2,
            activation: Activation::Gelu,
            eps: 1e-12,
        }
    }
}

/// The keys of a HF `Blip2Config` that the Q-Former needs.
#[derive(Deserialize)]
struct HfBlip2 {
    num_query_tokens: usize,
    qformer_config: HfQFormer,
}

#[derive(Deserialize)]
struct HfQFormer {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    hidden_act: Activation,
    layer_norm_eps: f64,
    cross_attention_frequency: usize,
    #[serde(default)]
    use_qformer_text_input: bool,
}

impl QFormerConfig {
    /// Reads a Hugging Face BLIP-2 `config.json` (`num_query_tokens`, `qformer_config`).
    pub fn from_hf_json(text: &str) -> Result<Self> {
        let hf: HfBlip2 = serde_json::from_str(text)
            .map_err(|e| Error::config("blip2 config.json", e.to_string()))?;
        let q = hf.qformer_config;
        if q.use_qformer_text_input {
            return Err(Error::config(
                "qformer_config.use_qformer_text_input",
                "the text branch is not supported",
            ));
        }
        Ok(Self {
            num_query_tokens: hf.num_query_tokens,
            hidden: q.hidden_size,
            layers: q.num_hidden_layers,
            heads: q.num_attention_heads,
            intermediate: q.intermediate_size,
            cross_attention_frequency: q.cross_attention_frequency,
            activation: q.hidden_act,
            eps: q.layer_norm_eps,
        })
    }

    fn validate(&self) -> Result<()> {
        if self.heads == 0 || self.hidden % self.heads != 0 {
            let msg = format!("{} heads do not divide width {}", self.heads, self.hidden);
            return Err(Error::config("projector.heads", msg));
        }
        if self.cross_attention_frequency == 0 {
            return Err(Error::config("projector.cross_attention_frequency", "must be at least 1"));
        }
        Ok(())
    }
}

/// `Blip2QFormerModel` without the text branch: `layernorm`, `encoder.layer.<i>`.
#[derive(Debug, Clone)]
pub struct QFormer {
    layernorm: LayerNorm,
    layers: Vec<Layer>,
}

impl QFormer {
    /// Builds under `vb` (`qformer` in a BLIP-2 checkpoint); `encoder_dim` is the width of
    /// the features it cross-attends to (HF `encoder_hidden_size`).
    pub fn new(cfg: &QFormerConfig, encoder_dim: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let layers = (0..cfg.layers)
            .map(|i| Layer::new(cfg, encoder_dim, i, vb.pp("encoder.layer").pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layernorm: LayerNorm::new(cfg.hidden, cfg.eps, vb.pp("layernorm"))?, layers })
    }

    /// The last hidden state; padded encoder tokens (mask 0) are never attended to.
    ///
    /// queries: [b, q, hidden]; encoder: [b, n, encoder_dim]; mask: [b, n] of 1/0 -> [b, q, hidden]
    pub fn forward(
        &self,
        queries: &Tensor,
        encoder: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut h = self.layernorm.forward(queries)?;
        for layer in &self.layers {
            h = layer.forward(&h, encoder, mask)?;
        }
        Ok(h)
    }
}

/// `query_tokens [1, q, hidden]`, `qformer`, `language_projection` (hidden -> LLM width).
#[derive(Debug, Clone)]
pub struct QFormerProjector {
    query_tokens: Tensor,
    qformer: QFormer,
    language_projection: Linear,
    in_dim: usize,
}

impl QFormerProjector {
    /// Builds under `vb` (the root of a `Blip2ForConditionalGeneration` checkpoint); query
    /// tokens start from N(0, 0.02).
    pub fn new(cfg: &QFormerConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let init = Init::Randn { mean: 0.0, stdev: 0.02 };
        Ok(Self {
            query_tokens: vb.get_with_hints(
                (1, cfg.num_query_tokens, cfg.hidden),
                "query_tokens",
                init,
            )?,
            qformer: QFormer::new(cfg, in_dim, vb.pp("qformer"))?,
            language_projection: Linear::new(
                cfg.hidden,
                out_dim,
                true,
                vb.pp("language_projection"),
            )?,
            in_dim,
        })
    }

    /// The Q-Former output before the language projection.
    ///
    /// x: [b, n, in_dim]; mask: [b, n] of 1/0 -> [b, num_query_tokens, hidden]
    pub fn query_output(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let b = x.dim(0)?;
        let (_, q, h) = self.query_tokens.dims3()?;
        let queries = self.query_tokens.broadcast_as((b, q, h))?.contiguous()?;
        self.qformer.forward(&queries, x, mask)
    }

    /// x: [b, n, in_dim]; mask: [b, n] of 1/0 -> [b, num_query_tokens, out_dim]
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.language_projection.forward(&self.query_output(x, mask)?)?)
    }
}

impl InputProjector for QFormerProjector {
    fn in_dim(&self) -> usize {
        self.in_dim
    }

    fn out_dim(&self) -> usize {
        self.language_projection.out_dim()
    }

    /// tokens [b, n, in_dim] (mask [b, n]) -> [b, num_query_tokens, out_dim], no mask.
    fn project(&self, features: &Features) -> Result<Features> {
        Features::new(self.forward(&features.tokens, features.mask.as_ref())?, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{features, loss};
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn tiny() -> QFormerConfig {
        QFormerConfig {
            num_query_tokens: 3,
            hidden: 8,
            layers: 2,
            heads: 2,
            intermediate: 12,
            ..QFormerConfig::default()
        }
    }

    #[test]
    fn shapes_and_gradients() -> Result<()> {
        let vm = VarMap::new();
        let p = QFormerProjector::new(
            &tiny(),
            6,
            10,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let out = p.project(&features(2, 5, 6, true)?)?;
        assert_eq!(out.tokens.dims(), &[2, 3, 10]);
        assert!(out.mask.is_none());
        check_all_vars_get_grad(&vm, &loss(&out)?)
    }

    #[test]
    fn cross_attention_every_other_layer() -> Result<()> {
        let vm = VarMap::new();
        let cfg = QFormerConfig { layers: 3, ..tiny() };
        QFormerProjector::new(&cfg, 6, 10, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let data = vm.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
        let cross = |i: usize| {
            data.keys().any(|k| k.starts_with(&format!("qformer.encoder.layer.{i}.crossattention")))
        };
        assert_eq!((cross(0), cross(1), cross(2)), (true, false, true));
        Ok(())
    }

    #[test]
    fn text_branch_is_refused() {
        let json = r#"{"num_query_tokens": 2, "qformer_config": {"hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 8, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
            "cross_attention_frequency": 2, "use_qformer_text_input": true}}"#;
        let err = QFormerConfig::from_hf_json(json).unwrap_err().to_string();
        assert!(err.contains("use_qformer_text_input"), "{err}");
    }
}
