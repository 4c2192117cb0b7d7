//! Spectrogram-patch encoder to train from scratch: a conv2d patch tokenizer over the
//! log-mel image (AST, Gong et al. 2021, "AST: Audio Spectrogram Transformer"; OneLLM's
//! audio tokenizer, Han et al. 2024) then the shared [`TokenTransformer`].
//! Reference: github.com/YuanGongND/ast `src/models/ast_models.py` (`PatchEmbed`).

use braid_core::{Error, Features, Modality, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::imu::{TokenTransformer, TokenTransformerConfig};
use crate::Encoder;

/// Patch grid and transformer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpectrogramPatchConfig {
    /// Mel bins of the input.
    pub mels: usize,
    /// Square patch side (AST: 16).
    pub patch_size: usize,
    /// Step between patches on both axes (AST: 10, overlapping).
    pub stride: usize,
    /// The transformer; its `hidden_size` is the token width.
    pub transformer: TokenTransformerConfig,
}

impl Default for SpectrogramPatchConfig {
    fn default() -> Self {
        let transformer =
            TokenTransformerConfig { max_positions: 1213, ..TokenTransformerConfig::default() };
        Self { mels: 128, patch_size: 16, stride: 10, transformer }
    }
}

/// Variables: `patch_embed.{weight,bias}` (`[D, 1, p, p]`), `transformer.*`.
#[derive(Debug, Clone)]
pub struct SpectrogramPatchEncoder {
    patch_embed: Conv2d,
    transformer: TokenTransformer,
    cfg: SpectrogramPatchConfig,
}

impl SpectrogramPatchEncoder {
    /// Builds under `vb`.
    pub fn new(cfg: SpectrogramPatchConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.patch_size == 0 || cfg.stride == 0 || cfg.mels < cfg.patch_size {
            return Err(Error::config(
                "patch_size",
                format!("need 0 < patch <= mels and a positive stride: {cfg:?}"),
            ));
        }
        let conv = Conv2dConfig { stride: cfg.stride, ..Default::default() };
        let d = cfg.transformer.hidden_size;
        Ok(Self {
            patch_embed: candle_nn::conv2d(1, d, cfg.patch_size, conv, vb.pp("patch_embed"))?,
            transformer: TokenTransformer::new(cfg.transformer, vb.pp("transformer"))?,
            cfg,
        })
    }

    /// Tokens per clip of `frames` frames.
    pub fn num_tokens(&self, frames: usize) -> usize {
        let steps = |n: usize| (n.saturating_sub(self.cfg.patch_size)) / self.cfg.stride + 1;
        steps(self.cfg.mels) * steps(frames)
    }
}

impl Encoder for SpectrogramPatchEncoder {
    fn modality(&self) -> Modality {
        Modality::Audio
    }

    fn output_dim(&self) -> usize {
        self.cfg.transformer.hidden_size
    }

    /// input: log-mel [batch, mels, frames]; mask: [batch, frames] ->
    /// tokens [batch, 1 + f * t, D] (f frequency by t time patches, row-major in
    /// frequency; the class token first when configured)
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let (b, mels, frames) = input.dims3()?;
        if mels != self.cfg.mels || frames < self.cfg.patch_size {
            return Err(Error::shape(
                "log-mel [batch, mels, frames >= patch]",
                &[self.cfg.mels, self.cfg.patch_size],
                &[mels, frames],
            ));
        }
        let grid = self.patch_embed.forward(&input.unsqueeze(1)?)?; // [b, D, f, t]
        let (_, d, f, t) = grid.dims4()?;
        let tokens = grid.flatten_from(2)?.transpose(1, 2)?; // [b, f * t, D]
        let mask = match mask {
            Some(m) => {
                let per_time = crate::imu::token_mask(m, t, self.cfg.patch_size, self.cfg.stride)?;
                Some(per_time.unsqueeze(1)?.broadcast_as((b, f, t))?.reshape((b, f * t))?)
            }
            None => None,
        };
        let (h, mask) = self.transformer.forward(&tokens.reshape((b, f * t, d))?, mask.as_ref())?;
        Features::new(h, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn cfg() -> SpectrogramPatchConfig {
        let transformer = TokenTransformerConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 1,
            num_heads: 2,
            max_positions: 32,
            ..Default::default()
        };
        SpectrogramPatchConfig { mels: 8, patch_size: 4, stride: 2, transformer }
    }

    #[test]
    fn shapes_and_masks() -> Result<()> {
        let vm = VarMap::new();
        let enc = SpectrogramPatchEncoder::new(
            cfg(),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let x = Tensor::randn(0f32, 1., (2, 8, 10), &Device::Cpu)?;
        let f = enc.encode(&x, Some(&Tensor::ones((2, 10), DType::F32, &Device::Cpu)?))?;
        assert_eq!(enc.num_tokens(10), 12); // 3 frequency x 4 time patches
        assert_eq!(f.tokens.dims(), [2, 13, 8]);
        assert_eq!(f.mask_or_ones()?.dims(), [2, 13]);
        assert!(enc.encode(&Tensor::zeros((1, 7, 10), DType::F32, &Device::Cpu)?, None).is_err());
        Ok(())
    }

    #[test]
    fn every_variable_gets_a_gradient() -> Result<()> {
        let vm = VarMap::new();
        let enc = SpectrogramPatchEncoder::new(
            cfg(),
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let x = Tensor::randn(0f32, 1., (2, 8, 10), &Device::Cpu)?;
        check_all_vars_get_grad(&vm, &enc.encode(&x, None)?.tokens.sqr()?.sum_all()?)
    }
}
