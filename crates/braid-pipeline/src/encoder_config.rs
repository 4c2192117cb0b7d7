//! The typed choice of encoder architecture in `pipeline.toml`, so that a trained model
//! directory can rebuild its encoders from their safetensors files:
//!
//! ```toml
//! [encoders.encoder]
//! type = "vit"            # vit | imu_patch | spectrogram_patch
//! feature_layer = -2      # LLaVA-1.5: second to last hidden state, class token dropped
//! ```

use braid_core::{Features, Modality, Result};
use braid_encoders::audio::{SpectrogramPatchConfig, SpectrogramPatchEncoder};
use braid_encoders::image::{Vit, VitConfig};
use braid_encoders::imu::{PatchTransformer, PatchTransformerConfig};
use braid_encoders::Encoder;
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

/// Which encoder to build, with its architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EncoderConfig {
    /// CLIP vision tower (HF `CLIPVisionModel.vision_model` layout).
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
    },
    /// IMU patch transformer (OneLLM-style).
    ImuPatch(PatchTransformerConfig),
    /// Audio spectrogram patch transformer (AST-style).
    SpectrogramPatch(SpectrogramPatchConfig),
}

fn default_layer() -> isize {
    -2
}
fn default_true() -> bool {
    true
}

impl EncoderConfig {
    /// Builds the encoder under `vb`.
    pub fn build(&self, vb: VarBuilder) -> Result<Box<dyn Encoder>> {
        Ok(match self {
            Self::Vit { vit, feature_layer, drop_cls } => Box::new(ImageTower {
                vit: Vit::new(vit, vb)?.with_feature_layer(*feature_layer)?,
                drop_cls: *drop_cls,
            }),
            Self::ImuPatch(c) => Box::new(PatchTransformer::new(*c, vb)?),
            Self::SpectrogramPatch(c) => Box::new(SpectrogramPatchEncoder::new(*c, vb)?),
        })
    }
}

/// A ViT read out at its feature layer, optionally without the class token.
#[derive(Debug, Clone)]
pub(crate) struct ImageTower {
    pub(crate) vit: Vit,
    pub(crate) drop_cls: bool,
}

impl Encoder for ImageTower {
    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn output_dim(&self) -> usize {
        self.vit.output_dim()
    }

    /// pixels: [batch, C, H, W] -> [batch, n (+ 1 with the class token), D]
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let f = self.vit.encode(input, mask)?;
        if !self.drop_cls {
            return Ok(f);
        }
        let n = f.tokens.dim(1)?;
        Features::new(f.tokens.narrow(1, 1, n - 1)?, None)
    }
}
