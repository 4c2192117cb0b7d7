//! The typed choice of encoder architecture in `pipeline.toml`, so that a trained model
//! directory can rebuild its encoders from their safetensors files:
//!
//! ```toml
//! [encoders.encoder]
//! type = "vit"            # vit | imu_patch | spectrogram_patch
//! feature_layer = -2      # LLaVA-1.5: second to last hidden state, class token dropped
//! pool = 2                # optional: average 2x2 neighbouring patches (a quarter of the tokens)
//! ```

use braid_core::{Error, Features, Modality, Result};
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
        /// Average the patch grid over `pool` x `pool` windows (1: every patch), for fewer
        /// image tokens in the language model (LLaVA-OneVision's bilinear/avg pooling of
        /// the grid; MobileVLM's pooled projector).
        #[serde(default = "default_pool", skip_serializing_if = "is_one")]
        pool: usize,
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
            Self::SpectrogramPatch(c) => Box::new(SpectrogramPatchEncoder::new(*c, vb)?),
        })
    }
}

/// A ViT read out at its feature layer, optionally without the class token, its patch
/// grid optionally average-pooled.
#[derive(Debug, Clone)]
pub(crate) struct ImageTower {
    pub(crate) vit: Vit,
    pub(crate) drop_cls: bool,
    pub(crate) pool: usize,
}

/// patches: [batch, g*g, D] (row-major grid) -> [batch, (g/k)^2, D], the mean of each k x k
/// window.
fn pool_grid(patches: &Tensor, k: usize) -> Result<Tensor> {
    let (b, n, d) = patches.dims3()?;
    let g = (n as f64).sqrt().round() as usize;
    if g * g != n || k == 0 || g % k != 0 {
        return Err(Error::shape("patch grid to pool (a square grid divisible by pool)", &[b, g * g, d], patches.dims()));
    }
    let m = g / k;
    Ok(patches.reshape((b, m, k, m, k, d))?.mean(4)?.mean(2)?.reshape((b, m * m, d))?)
}

impl Encoder for ImageTower {
    fn modality(&self) -> Modality {
        Modality::Image
    }

    fn output_dim(&self) -> usize {
        self.vit.output_dim()
    }

    /// pixels: [batch, C, H, W] -> [batch, n / pool^2 (+ 1 with the class token), D]
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let f = self.vit.encode(input, mask)?;
        if self.drop_cls && self.pool == 1 {
            let n = f.tokens.dim(1)?;
            return Features::new(f.tokens.narrow(1, 1, n - 1)?, None);
        }
        if self.pool == 1 {
            return Ok(f);
        }
        let n = f.tokens.dim(1)?;
        let patches = pool_grid(&f.tokens.narrow(1, 1, n - 1)?, self.pool)?;
        if self.drop_cls {
            return Features::new(patches, None);
        }
        Features::new(Tensor::cat(&[&f.tokens.narrow(1, 0, 1)?, &patches], 1)?, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn pooling_averages_each_window_of_the_row_major_grid() -> Result<()> {
        // A 4x4 grid whose token (r, c) holds [r, c]: the 2x2 windows average to
        // (0.5|2.5, 0.5|2.5) in row-major order.
        let vals: Vec<f32> = (0..4).flat_map(|r| (0..4).flat_map(move |c| [r as f32, c as f32])).collect();
        let grid = Tensor::from_vec(vals, (1, 16, 2), &Device::Cpu)?;
        let pooled = pool_grid(&grid, 2)?.squeeze(0)?.to_vec2::<f32>()?;
        assert_eq!(pooled, vec![vec![0.5, 0.5], vec![0.5, 2.5], vec![2.5, 0.5], vec![2.5, 2.5]]);
        assert_eq!(pool_grid(&grid, 4)?.dims(), &[1, 1, 2]);
        assert!(pool_grid(&grid, 3).is_err());
        Ok(())
    }

    #[test]
    fn a_pool_that_does_not_divide_the_grid_names_the_field() {
        let vit = VitConfig { image_size: 64, patch_size: 8, ..VitConfig::default() };
        let cfg = EncoderConfig::Vit { vit, feature_layer: -1, drop_cls: false, pool: 3 };
        let vb = VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu);
        let e = cfg.build(vb).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("encoder.pool") && e.contains("8x8"), "{e}");
    }
}
