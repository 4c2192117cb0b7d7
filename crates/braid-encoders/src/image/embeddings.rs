//! CLIP / ViT input embeddings: a learned class token, patch embeddings and learned
//! position embeddings, interpolated when the image is not the training size.
//! Reference: `transformers.models.clip.modeling_clip.CLIPVisionEmbeddings`.

use braid_core::{Error, Result};
use braid_nn::Embedding;
use candle_core::{Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::interpolate::resize_grid;
use super::PatchEmbedding;

/// `class_embedding [D]`, `patch_embedding.weight [D, C, p, p]`,
/// `position_embedding.weight [1 + (S/p)^2, D]` for training size `S`.
#[derive(Debug, Clone)]
pub struct VisionEmbeddings {
    class: Tensor,
    patch: PatchEmbedding,
    position: Embedding,
    /// Patches per side at the training resolution.
    grid: usize,
}

impl VisionEmbeddings {
    /// Builds for `image_size` / `patch_size` (square training resolution).
    pub fn new(
        channels: usize,
        image_size: usize,
        patch_size: usize,
        dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let patch =
            PatchEmbedding::new(channels, patch_size, dim, false, vb.pp("patch_embedding"))?;
        let (grid, _) = patch
            .grid(image_size, image_size)
            .map_err(|e| Error::config("vision_config.image_size", e.to_string()))?;
        Ok(Self {
            class: vb.get_with_hints(
                dim,
                "class_embedding",
                Init::Randn { mean: 0., stdev: 1. },
            )?,
            patch,
            position: Embedding::new(grid * grid + 1, dim, vb.pp("position_embedding"))?,
            grid,
        })
    }

    /// The patch embedding.
    pub fn patch_embedding(&self) -> &PatchEmbedding {
        &self.patch
    }

    /// Position embeddings for an `gh x gw` patch grid: the stored table when it matches,
    /// else its patch part resized bicubically (the class position is kept).
    ///
    /// -> [1 + gh * gw, D]
    pub fn positions(&self, gh: usize, gw: usize) -> Result<Tensor> {
        let table = self.position.weight();
        if (gh, gw) == (self.grid, self.grid) {
            return Ok(table.clone());
        }
        let dim = table.dim(1)?;
        let grid =
            table.narrow(0, 1, self.grid * self.grid)?.reshape((self.grid, self.grid, dim))?;
        let resized = resize_grid(&grid, gh, gw)?.reshape((gh * gw, dim))?;
        Ok(Tensor::cat(&[&table.narrow(0, 0, 1)?, &resized], 0)?)
    }

    /// pixels: [batch, C, H, W] -> [batch, 1 + (H/p)(W/p), D]
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = pixels.dims4()?;
        let (gh, gw) = self.patch.grid(h, w)?;
        let patches = self.patch.forward(pixels)?;
        debug_assert_eq!(patches.dim(1)?, gh * gw);
        let dim = patches.dim(D::Minus1)?;
        let class = self.class.reshape((1, 1, dim))?.broadcast_as((b, 1, dim))?;
        let x = Tensor::cat(&[&class.contiguous()?, &patches], 1)?;
        Ok(x.broadcast_add(&self.positions(gh, gw)?.unsqueeze(0)?)?)
    }
}
