//! The CLIP text tower (Radford et al. 2021, "Learning Transferable Visual Models From
//! Natural Language Supervision"): token + learned position embeddings, causal pre-norm
//! encoder layers, `final_layer_norm`, pooled at the end-of-text token.
//! Reference: `transformers.models.clip.modeling_clip.CLIPTextTransformer`.

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{Activation, BlockNames, Embedding, LayerNorm, PreNormBlock};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::image::vit::clip_block;
use crate::shape::Shape;
use crate::Encoder;

/// The fields of a Hugging Face `CLIPTextConfig`, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Longest input, in tokens (77 for OpenAI CLIP).
    pub max_position_embeddings: usize,
    /// MLP activation.
    pub hidden_act: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// End-of-text id. The legacy value 2 means "pool at the largest id" (OpenAI's EOT is
    /// the last vocabulary entry), any other value "pool at its first occurrence".
    pub eos_token_id: u32,
}

impl ClipTextConfig {
    /// The fields that shape the tower, by their `config.json` names.
    pub(crate) fn shape(&self) -> Shape<'static> {
        let sizes = [
            self.hidden_size,
            self.num_attention_heads,
            self.num_hidden_layers,
            self.intermediate_size,
        ];
        Shape::hf(
            sizes,
            self.layer_norm_eps,
            vec![
                ("vocab_size", self.vocab_size),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
        )
    }
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 2,
        }
    }
}

/// The CLIP text transformer (`CLIPTextModel.text_model`).
#[derive(Debug, Clone)]
pub struct ClipText {
    token: Embedding,
    position: Embedding,
    layers: Vec<PreNormBlock>,
    final_norm: LayerNorm,
    cfg: ClipTextConfig,
}

impl ClipText {
    /// Builds from `vb` at the `text_model` root (`embeddings.token_embedding`,
    /// `embeddings.position_embedding`, `encoder.layers.N.*`, `final_layer_norm`).
    pub fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        let mut block = clip_block(
            d,
            cfg.num_attention_heads,
            cfg.intermediate_size,
            cfg.hidden_act,
            cfg.layer_norm_eps,
        );
        block.attention.causal = true;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                PreNormBlock::new(block, BlockNames::CLIP, vb.pp(format!("encoder.layers.{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token: Embedding::new(cfg.vocab_size, d, vb.pp("embeddings.token_embedding"))?,
            position: Embedding::new(
                cfg.max_position_embeddings,
                d,
                vb.pp("embeddings.position_embedding"),
            )?,
            layers,
            final_norm: LayerNorm::new(d, cfg.layer_norm_eps, vb.pp("final_layer_norm"))?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClipTextConfig {
        &self.cfg
    }

    /// ids: [batch, seq] (u32); mask: [batch, seq] of 1/0 -> [batch, seq, hidden]
    /// (after `final_layer_norm`, as transformers' `last_hidden_state`)
    pub fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        if seq > self.cfg.max_position_embeddings {
            return Err(Error::Invalid(format!(
                "input of {seq} tokens exceeds the text model's max_position_embeddings {}",
                self.cfg.max_position_embeddings
            )));
        }
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?.unsqueeze(0)?;
        let mut x = self.token.forward(ids)?.broadcast_add(&self.position.forward(&positions)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, mask, None)?;
        }
        self.final_norm.forward(&x)
    }

    /// The hidden state at each row's end-of-text token (see
    /// [`ClipTextConfig::eos_token_id`]); a row without one is an error.
    ///
    /// hidden: [batch, seq, D]; ids: [batch, seq] -> [batch, D]
    pub fn pool(&self, hidden: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (b, seq, d) = hidden.dims3()?;
        let rows = ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let mut index = Vec::with_capacity(b);
        for (r, row) in rows.iter().enumerate() {
            let pos = if self.cfg.eos_token_id == 2 {
                // argmax, first maximum as torch
                row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
            } else {
                row.iter().position(|&t| t == self.cfg.eos_token_id).ok_or_else(|| {
                    Error::Invalid(format!(
                        "text {r} has no end-of-text token {}",
                        self.cfg.eos_token_id
                    ))
                })?
            };
            index.push((r * seq + pos) as u32);
        }
        let index = Tensor::new(index, hidden.device())?;
        Ok(hidden.reshape((b * seq, d))?.index_select(&index, 0)?)
    }
}

impl Encoder for ClipText {
    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn output_dim(&self) -> usize {
        self.cfg.hidden_size
    }

    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let hidden = self.forward(&input.to_dtype(DType::U32)?, mask)?;
        Features::new(hidden, mask.map(|m| m.to_dtype(DType::F32)).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::Device;
    use candle_nn::VarMap;

    fn tiny() -> ClipTextConfig {
        ClipTextConfig {
            vocab_size: 20,
            hidden_size: 16,
            intermediate_size: 24,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            max_position_embeddings: 8,
            eos_token_id: 19,
            ..Default::default()
        }
    }

    #[test]
    fn every_weight_gets_gradient() {
        let vm = VarMap::new();
        let text =
            ClipText::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let ids = Tensor::new(&[[0u32, 5, 7, 19, 3], [0, 4, 19, 0, 0]], &Device::Cpu).unwrap();
        let mask =
            Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
        let hidden = text.forward(&ids, Some(&mask)).unwrap();
        let loss = (hidden.sqr().unwrap().mean_all().unwrap()
            + text.pool(&hidden, &ids).unwrap().sum_all().unwrap())
        .unwrap();
        check_all_vars_get_grad(&vm, &loss).unwrap();
    }

    #[test]
    fn missing_eos_and_too_long_are_clear_errors() {
        let vm = VarMap::new();
        let text =
            ClipText::new(&tiny(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let ids = Tensor::new(&[[0u32, 5, 7]], &Device::Cpu).unwrap();
        let hidden = text.forward(&ids, None).unwrap();
        assert!(text
            .pool(&hidden, &ids)
            .unwrap_err()
            .to_string()
            .contains("no end-of-text token 19"));
        let long = Tensor::zeros((1, 9), DType::U32, &Device::Cpu).unwrap();
        assert!(text.forward(&long, None).unwrap_err().to_string().contains("9 tokens"));
    }
}
