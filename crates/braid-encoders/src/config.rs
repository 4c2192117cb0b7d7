//! The typed choice of encoder architecture, one enum for every place an encoder is
//! named (a recipe's `[model.encoder]`, a model directory's `[encoders.encoder]`):
//!
//! ```toml
//! [encoders.encoder]
//! type = "vit"            # vit | imu_patch | cnn | recurrent | spectrogram_patch
//! feature_layer = -2      # LLaVA-1.5: second to last hidden state, class token dropped
//! pool = 2                # optional: average 2x2 neighbouring patches (a quarter of the tokens)
//! ```

use braid_core::{Error, Result};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::audio::{SpectrogramPatchConfig, SpectrogramPatchEncoder};
use crate::image::{ImageTower, Vit, VitConfig};
use crate::imu::{
    Cnn1d, Cnn1dConfig, PatchTransformer, PatchTransformerConfig, RecurrentConfig, RecurrentEncoder,
};
use crate::Encoder;

/// Which encoder to build, with its architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EncoderConfig {
    /// CLIP vision tower (HF `CLIPVisionModel.vision_model` layout) read out as an
    /// [`ImageTower`].
    Vit {
        /// The tower's architecture.
        #[serde(default)]
        vit: VitConfig,
        /// Hidden state read out (Python indexing; LLaVA-1.5: -2).
        #[serde(default = "default_layer")]
        feature_layer: isize,
        /// Drop the class token (LLaVA's "default" strategy).
        #[serde(default = "default_true")]
        drop_cls: bool,
        /// Average the patch grid over `pool` x `pool` windows (1: every patch), for fewer
        /// image tokens in the language model (LLaVA-OneVision's bilinear/avg pooling of
        /// the grid; MobileVLM's pooled projector).
        #[serde(default = "default_pool", skip_serializing_if = "is_one")]
        pool: usize,
    },
    /// IMU patch transformer (OneLLM-style conv1d tokenizer + transformer).
    #[serde(alias = "patch")]
    ImuPatch(PatchTransformerConfig),
    /// IMU 1D CNN.
    Cnn(Cnn1dConfig),
    /// IMU GRU or LSTM in PyTorch's layout.
    Recurrent(RecurrentConfig),
    /// Audio spectrogram patch transformer (AST-style).
    SpectrogramPatch(SpectrogramPatchConfig),
}

fn default_layer() -> isize {
    -2
}
fn default_true() -> bool {
    true
}
fn default_pool() -> usize {
    1
}
fn is_one(n: &usize) -> bool {
    *n == 1
}

impl EncoderConfig {
    /// Builds the encoder under `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Encoder>> {
        Ok(match self {
            Self::Vit { vit, feature_layer, drop_cls, pool } => {
                if let Some((field, msg)) = vit.problem() {
                    return Err(Error::config(format!("encoder.vit.{field}"), msg));
                }
                let grid = vit.image_size / vit.patch_size.max(1);
                if *pool == 0 || grid % pool != 0 {
                    return Err(Error::config(
                        "encoder.pool",
                        format!("{pool} does not divide the {grid}x{grid} patch grid"),
                    ));
                }
                Box::new(ImageTower {
                    vit: Vit::new(vit, vb)?.with_feature_layer(*feature_layer)?,
                    drop_cls: *drop_cls,
                    pool: *pool,
                })
            }
            Self::ImuPatch(c) => Box::new(PatchTransformer::new(*c, vb)?),
            Self::Cnn(c) => Box::new(Cnn1d::new(c.clone(), vb)?),
            Self::Recurrent(c) => Box::new(RecurrentEncoder::new(*c, vb)?),
            Self::SpectrogramPatch(c) => Box::new(SpectrogramPatchEncoder::new(*c, vb)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_pool_that_does_not_divide_the_grid_names_the_field() {
        let vit = VitConfig { image_size: 64, patch_size: 8, ..VitConfig::default() };
        let cfg = EncoderConfig::Vit { vit, feature_layer: -1, drop_cls: false, pool: 3 };
        let vb = VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu);
        let e = cfg.build(vb).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("encoder.pool") && e.contains("8x8"), "{e}");
    }

    #[test]
    fn imu_encoders_parse_under_their_recipe_names() -> Result<()> {
        let cnn: EncoderConfig = toml::from_str("type = \"cnn\"\nchannels = 6\nwidths = [4]\n")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        assert!(matches!(cnn, EncoderConfig::Cnn(_)));
        let patch: EncoderConfig = toml::from_str("type = \"patch\"\nchannels = 6\n")
            .map_err(|e| Error::Invalid(e.to_string()))?;
        assert!(matches!(patch, EncoderConfig::ImuPatch(_)));
        let e = toml::from_str::<EncoderConfig>("type = \"cnn\"\nwidht = [4]\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("widht"), "{e}");
        Ok(())
    }
}
