//! The Whisper audio encoder (Radford et al. 2022, "Robust Speech Recognition via
//! Large-Scale Weak Supervision") in Hugging Face's layout: `conv1` (k3) + GELU, `conv2`
//! (k3, stride 2) + GELU, sinusoidal `embed_positions`, pre-norm `layers.N`
//! (`self_attn_layer_norm`, `self_attn` with a bias-free `k_proj`, `final_layer_norm`,
//! `fc1`, `fc2`) and a final `layer_norm`; any hidden state can be read out.
//! Reference: `transformers.models.whisper.modeling_whisper.WhisperEncoder`.

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{
    Activation, AttentionConfig, AttentionNames, BlockConfig, BlockNames, LayerNorm, MlpConfig,
    MlpNames,
};
use braid_nn::{NormConfig, PreNormBlock};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, VarBuilder};
use serde::{Deserialize, Serialize};

use super::zero_key_bias::without_key_bias;
use crate::Encoder;

/// The encoder fields of a Hugging Face `WhisperConfig` (defaults: whisper-tiny).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WhisperConfig {
    /// Model width.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Encoder attention heads.
    pub encoder_attention_heads: usize,
    /// Encoder MLP inner width.
    pub encoder_ffn_dim: usize,
    /// Mel bins of the input (80; 128 for large-v3).
    pub num_mel_bins: usize,
    /// Output positions; the input has twice as many frames.
    pub max_source_positions: usize,
    /// MLP activation.
    pub activation_function: Activation,
}

impl Default for WhisperConfig {
    fn default() -> Self {
        Self {
            d_model: 384,
            encoder_layers: 4,
            encoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            num_mel_bins: 80,
            max_source_positions: 1500,
            activation_function: Activation::Gelu,
        }
    }
}

/// Whisper's encoder layer names.
const WHISPER_BLOCK: BlockNames = BlockNames {
    norm1: "self_attn_layer_norm",
    attn: "self_attn",
    norm2: "final_layer_norm",
    mlp: "",
    attention: AttentionNames::CLIP,
    mlp_names: MlpNames::CLIP,
    post_norms: None,
};

/// Whisper's LayerNorm epsilon (PyTorch's default).
const EPS: f64 = 1e-5;

/// The encoder; `layer` picks the hidden state it returns as [`Encoder`] output.
#[derive(Debug, Clone)]
pub struct WhisperEncoder {
    conv1: Conv1d,
    conv2: Conv1d,
    embed_positions: Tensor,
    layers: Vec<PreNormBlock>,
    layer_norm: LayerNorm,
    cfg: WhisperConfig,
    layer: isize,
}

impl WhisperEncoder {
    /// Builds under `vb` (`encoder.` or `model.encoder.` in full checkpoints). Without a
    /// stored `embed_positions.weight` the positions are Whisper's fixed sinusoids.
    pub fn new(cfg: &WhisperConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let conv1 = candle_nn::conv1d(
            cfg.num_mel_bins,
            d,
            3,
            Conv1dConfig { padding: 1, ..Default::default() },
            vb.pp("conv1"),
        )?;
        let stride2 = Conv1dConfig { padding: 1, stride: 2, ..Default::default() };
        let conv2 = candle_nn::conv1d(d, d, 3, stride2, vb.pp("conv2"))?;
        let embed_positions = match vb.contains_tensor("embed_positions.weight") {
            true => vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            false => sinusoids(cfg.max_source_positions, d, vb.device())?.to_dtype(vb.dtype())?,
        };
        let block = BlockConfig {
            attention: AttentionConfig::new(d, cfg.encoder_attention_heads),
            mlp: MlpConfig {
                hidden: d,
                intermediate: cfg.encoder_ffn_dim,
                activation: cfg.activation_function,
                gated: false,
                bias: true,
            },
            norm: NormConfig { eps: EPS, ..NormConfig::default() },
        };
        let layers = (0..cfg.encoder_layers)
            .map(|i| {
                PreNormBlock::new(
                    block,
                    WHISPER_BLOCK,
                    without_key_bias(vb.pp(format!("layers.{i}"))),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let layer_norm = LayerNorm::new(d, EPS, vb.pp("layer_norm"))?;
        Ok(Self { conv1, conv2, embed_positions, layers, layer_norm, cfg: cfg.clone(), layer: -1 })
    }

    /// Returns hidden state `layer` from [`Encoder::encode`], numbered as Hugging Face's
    /// `hidden_states`: 0 is the embeddings, `k` the input of layer `k`, the last
    /// (`encoder_layers`, or -1) the normed output; negative counts from the end.
    pub fn with_layer(mut self, layer: isize) -> Result<Self> {
        self.resolve(layer)?;
        self.layer = layer;
        Ok(self)
    }

    /// The configuration.
    pub fn config(&self) -> &WhisperConfig {
        &self.cfg
    }

    fn resolve(&self, layer: isize) -> Result<usize> {
        let n = self.layers.len() as isize + 1;
        let k = if layer < 0 { n + layer } else { layer };
        if !(0..n).contains(&k) {
            return Err(Error::config(
                "layer",
                format!("{layer} is outside the {n} hidden states"),
            ));
        }
        Ok(k as usize)
    }

    /// Stem and positions. x: [batch, mels, 2 * max_source_positions] -> [batch, max_source_positions, d_model]
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let (_, mels, frames) = x.dims3()?;
        let want = [self.cfg.num_mel_bins, 2 * self.cfg.max_source_positions];
        if [mels, frames] != want {
            return Err(Error::shape(
                "Whisper input features [batch, mels, frames]",
                &want,
                &[mels, frames],
            ));
        }
        let h = self.conv2.forward(&self.conv1.forward(x)?.gelu_erf()?)?.gelu_erf()?;
        Ok(h.transpose(1, 2)?.broadcast_add(&self.embed_positions)?)
    }

    /// Hidden state `layer` (see [`Self::with_layer`]).
    ///
    /// x: [batch, mels, 2 * max_source_positions] -> [batch, max_source_positions, d_model]
    pub fn hidden_state(&self, x: &Tensor, layer: isize) -> Result<Tensor> {
        let k = self.resolve(layer)?;
        let mut h = self.embed(x)?;
        for block in self.layers.iter().take(k) {
            h = block.forward(&h, None, None)?;
        }
        match k == self.layers.len() {
            true => self.layer_norm.forward(&h),
            false => Ok(h),
        }
    }

    /// The normed output (`last_hidden_state`).
    ///
    /// x: [batch, mels, 2 * max_source_positions] -> [batch, max_source_positions, d_model]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.hidden_state(x, -1)
    }
}

impl Encoder for WhisperEncoder {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn output_dim(&self) -> usize {
        self.cfg.d_model
    }

    /// input: log-mel [batch, mels, 2 * max_source_positions] -> tokens [batch, max_source_positions, d_model]
    /// (Whisper attends over the padding too, so the mask is ignored and none is returned)
    fn encode(&self, input: &Tensor, _mask: Option<&Tensor>) -> Result<Features> {
        Features::new(self.hidden_state(input, self.layer)?, None)
    }
}

/// Whisper's fixed positions: `[sin(t * w_i) | cos(t * w_i)]`, `w_i = 10000^(-i / (d/2 - 1))`.
/// -> [length, channels] (f32)
pub fn sinusoids(length: usize, channels: usize, device: &Device) -> Result<Tensor> {
    let half = channels / 2;
    let step = (10000f64).ln() / (half.max(2) - 1) as f64;
    let mut out = vec![0f32; length * channels];
    for t in 0..length {
        for i in 0..half {
            let a = t as f64 * (-step * i as f64).exp();
            out[t * channels + i] = a.sin() as f32;
            out[t * channels + half + i] = a.cos() as f32;
        }
    }
    Ok(Tensor::from_vec(out, (length, channels), device)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests;
