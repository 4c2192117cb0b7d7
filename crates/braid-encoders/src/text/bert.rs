//! BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers") in
//! the Hugging Face `BertModel` layout: word + position + token-type embeddings, post-norm
//! encoder layers, tanh pooler. Reference: `transformers.models.bert.modeling_bert`.

use std::path::Path;

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{
    Activation, AttentionConfig, BlockConfig, BlockNames, Embedding, LayerNorm, Linear, MlpConfig,
};
use braid_nn::{NormConfig, NormKind, PostNormBlock};
use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::shape::Shape;
use crate::Encoder;

/// The fields of a Hugging Face `BertConfig` that shape the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// MLP activation.
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
    /// Longest input, in tokens.
    pub max_position_embeddings: usize,
    /// Number of segment types.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> Activation {
    Activation::Gelu
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        if let Some(kind) = cfg.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
            return Err(Error::format(
                path,
                format!("`position_embedding_type`: `{kind}` is not supported; known: absolute"),
            ));
        }
        cfg.shape().check(path, "")?;
        Ok(cfg)
    }

    /// The fields that shape the model, by their `config.json` names.
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
                ("type_vocab_size", self.type_vocab_size),
            ],
        )
    }

    fn block_config(&self) -> BlockConfig {
        BlockConfig {
            attention: AttentionConfig::new(self.hidden_size, self.num_attention_heads),
            mlp: MlpConfig {
                hidden: self.hidden_size,
                intermediate: self.intermediate_size,
                activation: self.hidden_act,
                gated: false,
                bias: true,
            },
            norm: NormConfig { kind: NormKind::LayerNorm, eps: self.layer_norm_eps },
        }
    }
}

/// Word, position and token-type embeddings, summed and normalised.
#[derive(Debug, Clone)]
struct BertEmbeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            word: Embedding::new(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            position: Embedding::new(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: Embedding::new(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: LayerNorm::new(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// ids, token_types: [batch, seq] -> [batch, seq, hidden]
    fn forward(&self, ids: &Tensor, token_types: &Tensor) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?.unsqueeze(0)?;
        let x = self.word.forward(ids)?.broadcast_add(&self.position.forward(&positions)?)?;
        self.norm.forward(&(x + self.token_type.forward(token_types)?)?)
    }
}

/// A BERT encoder with its pooler.
#[derive(Debug, Clone)]
pub struct Bert {
    embeddings: BertEmbeddings,
    layers: Vec<PostNormBlock>,
    pooler: Linear,
    cfg: BertConfig,
}

impl Bert {
    /// Builds the model from `vb` at the `BertModel` root (`embeddings.*`, `encoder.*`,
    /// `pooler.*`).
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let block = cfg.block_config();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                PostNormBlock::new(block, BlockNames::BERT, vb.pp(format!("encoder.layer.{i}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: BertEmbeddings::new(cfg, vb.pp("embeddings"))?,
            layers,
            pooler: Linear::new(cfg.hidden_size, cfg.hidden_size, true, vb.pp("pooler.dense"))?,
            cfg: cfg.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// ids: [batch, seq] (u32); mask: [batch, seq] of 1/0; token_types: [batch, seq] or
    /// all zeros -> last hidden state [batch, seq, hidden]
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        token_types: Option<&Tensor>,
    ) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        if seq > self.cfg.max_position_embeddings {
            return Err(Error::Invalid(format!(
                "input of {seq} tokens exceeds the model's max_position_embeddings {}",
                self.cfg.max_position_embeddings
            )));
        }
        let zeros;
        let token_types = match token_types {
            Some(t) => t,
            None => {
                zeros = ids.zeros_like()?;
                &zeros
            }
        };
        let mut x = self.embeddings.forward(ids, token_types)?;
        for layer in &self.layers {
            x = layer.forward(&x, mask, None)?;
        }
        Ok(x)
    }

    /// hidden: [batch, seq, hidden] -> tanh(dense(first token)) [batch, hidden]
    pub fn pool(&self, hidden: &Tensor) -> Result<Tensor> {
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(self.pooler.forward(&first)?.tanh()?)
    }
}

impl Encoder for Bert {
    fn modality(&self) -> Modality {
        Modality::Text
    }

    fn output_dim(&self) -> usize {
        self.cfg.hidden_size
    }

    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let ids = input.to_dtype(DType::U32)?;
        let hidden = self.forward(&ids, mask, None)?;
        let mask = mask.map(|m| m.to_dtype(DType::F32)).transpose()?;
        Features::new(hidden, mask)
    }
}

#[cfg(test)]
mod tests;
