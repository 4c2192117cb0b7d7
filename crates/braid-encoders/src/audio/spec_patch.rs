//! Spectrogram-patch encoder to train from scratch: a conv2d patch tokenizer over the
//! log-mel image (AST, Gong et al. 2021, "AST: Audio Spectrogram Transformer"; OneLLM's
//! audio tokenizer, Han et al. 2024) then the shared [`TokenTransformer`].
//! Reference: github.com/YuanGongND/ast `src/models/ast_models.py` (`PatchEmbed`).
//!
//! A patch may be taller than wide: with `patch_size = mels` and `patch_frames = k`, each
//! token is a whole spectrum over `k` frames (a time-slice tokenizer, as speech models
//! frame their input). Trained from scratch on 2,000 spoken digits, such slices (64 x 8)
//! reach 87% on voices never heard after one epoch as a plain classifier, where AST's
//! 16 x 16 squares are at 13% (PyTorch, same transformer:
//! `bench/spoken_digits_tokenizers.py`); square patches need far more data.

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
    /// Patch height in mel bins, and width too unless `patch_frames` is given (AST: 16).
    pub patch_size: usize,
    /// Patch width in frames (default: `patch_size`, a square patch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_frames: Option<usize>,
    /// Step between patches on both axes (AST: 10, overlapping).
    pub stride: usize,
    /// The transformer; its `hidden_size` is the token width.
    pub transformer: TokenTransformerConfig,
}

impl Default for SpectrogramPatchConfig {
    fn default() -> Self {
        let transformer =
            TokenTransformerConfig { max_positions: 1213, ..TokenTransformerConfig::default() };
        Self { mels: 128, patch_size: 16, patch_frames: None, stride: 10, transformer }
    }
}

impl SpectrogramPatchConfig {
    /// Patch (height in mel bins, width in frames).
    pub fn kernel(&self) -> (usize, usize) {
        (self.patch_size, self.patch_frames.unwrap_or(self.patch_size))
    }
}

/// Variables: `patch_embed.{weight,bias}` (`[D, 1, patch_size, patch_frames]`),
/// `transformer.*`.
#[derive(Debug, Clone)]
pub struct SpectrogramPatchEncoder {
    patch_embed: Conv2d,
    transformer: TokenTransformer,
    cfg: SpectrogramPatchConfig,
}

impl SpectrogramPatchEncoder {
    /// Builds under `vb`.
    pub fn new(cfg: SpectrogramPatchConfig, vb: VarBuilder) -> Result<Self> {
        let (kh, kw) = cfg.kernel();
        if kh == 0 || kw == 0 || cfg.stride == 0 || cfg.mels < kh {
            return Err(Error::config(
                "patch_size",
                format!("need 0 < patch <= mels, 0 < patch_frames and a positive stride: {cfg:?}"),
            ));
        }
        let conv = Conv2dConfig { stride: cfg.stride, ..Default::default() };
        let d = cfg.transformer.hidden_size;
        // candle_nn::conv2d's initialisation (PyTorch's), for a kernel of any shape.
        let vb_patch = vb.pp("patch_embed");
        let weight = vb_patch.get_with_hints(
            (d, 1, kh, kw),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )?;
        let bound = 1. / ((kh * kw) as f64).sqrt();
        let bias = vb_patch.get_with_hints(
            d,
            "bias",
            candle_nn::Init::Uniform { lo: -bound, up: bound },
        )?;
        Ok(Self {
            patch_embed: Conv2d::new(weight, Some(bias), conv),
            transformer: TokenTransformer::new(cfg.transformer, vb.pp("transformer"))?,
            cfg,
        })
    }

    /// Tokens per clip of `frames` frames.
    pub fn num_tokens(&self, frames: usize) -> usize {
        let (kh, kw) = self.cfg.kernel();
        let steps = |n: usize, k: usize| (n.saturating_sub(k)) / self.cfg.stride + 1;
        steps(self.cfg.mels, kh) * steps(frames, kw)
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
        let (_, kw) = self.cfg.kernel();
        if mels != self.cfg.mels || frames < kw {
            return Err(Error::shape(
                "log-mel [batch, mels, frames >= patch_frames]",
                &[self.cfg.mels, kw],
                &[mels, frames],
            ));
        }
        let grid = self.patch_embed.forward(&input.unsqueeze(1)?)?; // [b, D, f, t]
        let (_, d, f, t) = grid.dims4()?;
        let tokens = grid.flatten_from(2)?.transpose(1, 2)?; // [b, f * t, D]
        let mask = match mask {
            Some(m) => {
                let per_time = crate::imu::token_mask(m, t, kw, self.cfg.stride)?;
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
        SpectrogramPatchConfig {
            mels: 8,
            patch_size: 4,
            patch_frames: None,
            stride: 2,
            transformer,
        }
    }

    #[test]
    fn a_time_slice_patch_spans_every_mel_bin() -> Result<()> {
        let vm = VarMap::new();
        let slices = SpectrogramPatchConfig { patch_size: 8, patch_frames: Some(3), ..cfg() };
        let enc = SpectrogramPatchEncoder::new(
            slices,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        assert_eq!(
            vm.data().lock().map(|d| d["patch_embed.weight"].dims().to_vec()).ok(),
            Some(vec![8, 1, 8, 3])
        );
        // One frequency position, (10 - 3) / 2 + 1 = 4 time positions.
        assert_eq!(enc.num_tokens(10), 4);
        let x = Tensor::randn(0f32, 1., (2, 8, 10), &Device::Cpu)?;
        let mask = Tensor::ones((2, 10), DType::F32, &Device::Cpu)?;
        assert_eq!(enc.encode(&x, Some(&mask))?.tokens.dims(), [2, 5, 8]);
        assert!(enc.encode(&Tensor::zeros((1, 8, 2), DType::F32, &Device::Cpu)?, None).is_err());
        check_all_vars_get_grad(&vm, &enc.encode(&x, None)?.tokens.sqr()?.sum_all()?)
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
