//! IMU patch transformer: a conv1d tokenizer over time (kernel = patch, stride = step)
//! then a [`TokenTransformer`], as OneLLM's IMU tokenizer (Han et al. 2024, `imu_conv`,
//! a bias-free `nn.Conv1d` over the 6 channels) and ImageBind's IMU stem (Girdhar et al.
//! 2023) do. Reference code: github.com/csuhan/OneLLM `model/meta.py`.

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{Conv1d, Conv1dConfig};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::transformer::token_mask;
use super::{TokenTransformer, TokenTransformerConfig};
use crate::Encoder;

/// Tokenizer and transformer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatchTransformerConfig {
    /// Input channels (6 for accelerometer + gyroscope).
    pub channels: usize,
    /// Time steps per patch (the conv kernel).
    pub patch_size: usize,
    /// Time steps between patch starts (the conv stride).
    pub stride: usize,
    /// Bias on the patch conv (OneLLM has none).
    pub patch_bias: bool,
    /// The transformer; its `hidden_size` is the token width.
    pub transformer: TokenTransformerConfig,
}

impl Default for PatchTransformerConfig {
    fn default() -> Self {
        Self {
            channels: 6,
            patch_size: 8,
            stride: 8,
            patch_bias: false,
            transformer: TokenTransformerConfig::default(),
        }
    }
}

/// Variables: `patch_embed.weight [D, channels, patch]` (+ `bias`), `transformer.*`.
#[derive(Debug, Clone)]
pub struct PatchTransformer {
    patch_embed: Conv1d,
    transformer: TokenTransformer,
    cfg: PatchTransformerConfig,
}

impl PatchTransformer {
    /// Builds under `vb`.
    pub fn new(cfg: PatchTransformerConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.patch_size == 0 || cfg.stride == 0 {
            return Err(Error::config("patch_size", "patch size and stride must be positive"));
        }
        let conv_cfg = Conv1dConfig {
            in_channels: cfg.channels,
            out_channels: cfg.transformer.hidden_size,
            kernel: cfg.patch_size,
            stride: cfg.stride,
            padding: 0,
            bias: cfg.patch_bias,
        };
        let patch_embed = Conv1d::new(conv_cfg, vb.pp("patch_embed"))?;
        Ok(Self {
            patch_embed,
            transformer: TokenTransformer::new(cfg.transformer, vb.pp("transformer"))?,
            cfg,
        })
    }

    /// Patch tokens before the transformer. x: [batch, time, channels] -> [batch, n, D]
    pub fn tokenize(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, c) = x.dims3()?;
        if c != self.cfg.channels {
            return Err(Error::shape(
                "IMU input [batch, time, channels]",
                &[self.cfg.channels],
                &[c],
            ));
        }
        if t < self.cfg.patch_size {
            return Err(Error::Invalid(format!(
                "{t} time steps is shorter than one patch ({})",
                self.cfg.patch_size
            )));
        }
        self.patch_embed.forward_tokens(x)
    }
}

impl Encoder for PatchTransformer {
    fn modality(&self) -> Modality {
        Modality::Imu
    }

    fn output_dim(&self) -> usize {
        self.cfg.transformer.hidden_size
    }

    /// input: [batch, time, channels]; mask: [batch, time] -> tokens [batch, 1 + n, D]
    /// (n = (time - patch) / stride + 1; the class token first when configured)
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let tokens = self.tokenize(input)?;
        let n = tokens.dim(1)?;
        let mask =
            mask.map(|m| token_mask(m, n, self.cfg.patch_size, self.cfg.stride)).transpose()?;
        let (h, mask) = self.transformer.forward(&tokens, mask.as_ref())?;
        Features::new(h, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn cfg() -> PatchTransformerConfig {
        let transformer = TokenTransformerConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 2,
            num_heads: 2,
            max_positions: 16,
            ..Default::default()
        };
        PatchTransformerConfig {
            channels: 6,
            patch_size: 4,
            stride: 4,
            patch_bias: false,
            transformer,
        }
    }

    #[test]
    fn shapes_and_masks() -> Result<()> {
        let vm = VarMap::new();
        let enc =
            PatchTransformer::new(cfg(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let x = Tensor::randn(0f32, 1., (2, 18, 6), &Device::Cpu)?;
        let second: Vec<f32> = (0..18).map(|t| if t < 9 { 1. } else { 0. }).collect();
        let mask = Tensor::stack(
            &[Tensor::ones(18, DType::F32, &Device::Cpu)?, Tensor::new(second, &Device::Cpu)?],
            0,
        )?;
        let f = enc.encode(&x, Some(&mask))?;
        assert_eq!(f.tokens.dims(), [2, 5, 8]);
        assert_eq!(f.mask_or_ones()?.to_vec2::<f32>()?[1], [1., 1., 1., 0., 0.]);
        assert!(enc.encode(&Tensor::zeros((1, 3, 6), DType::F32, &Device::Cpu)?, None).is_err());
        assert!(enc.encode(&Tensor::zeros((1, 8, 5), DType::F32, &Device::Cpu)?, None).is_err());
        Ok(())
    }

    #[test]
    fn every_variable_gets_a_gradient() -> Result<()> {
        let vm = VarMap::new();
        let enc =
            PatchTransformer::new(cfg(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let x = Tensor::randn(0f32, 1., (2, 16, 6), &Device::Cpu)?;
        check_all_vars_get_grad(&vm, &enc.encode(&x, None)?.tokens.sqr()?.sum_all()?)
    }
}
