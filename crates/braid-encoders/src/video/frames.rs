//! Frame-based video encoder: any image [`Encoder`] applied to each frame, one vector per
//! frame (its class token or the mean of its tokens), then temporal pooling, as in
//! CLIP4Clip's mean-pooling variant (Luo et al. 2022) and Video-LLaMA-style frame stacks.
//! Reference: github.com/ArrowLuo/CLIP4Clip `modules/modeling.py` (`meanP`).

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{cls_pool, mean_pool};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::{TemporalPool, TemporalPoolingConfig};
use crate::Encoder;

/// Which vector stands for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameToken {
    /// The first token (ViT / CLIP class token).
    #[default]
    Cls,
    /// The mean of the frame's tokens.
    Mean,
}

/// A per-frame image encoder plus temporal pooling (variables of attention pooling under `pool`).
#[derive(Debug, Clone)]
pub struct VideoEncoder<E> {
    image: E,
    frame_token: FrameToken,
    pool: TemporalPool,
}

impl<E: Encoder> VideoEncoder<E> {
    /// Wraps `image`, pooling frames by `pooling` (its variables from `vb.pp("pool")`).
    pub fn new(
        image: E,
        frame_token: FrameToken,
        pooling: TemporalPoolingConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if image.modality() != Modality::Image {
            return Err(Error::config(
                "video.image_encoder",
                format!("needs an image encoder, got {:?}", image.modality()),
            ));
        }
        let pool = TemporalPool::new(pooling, image.output_dim(), vb.pp("pool"))?;
        Ok(Self { image, frame_token, pool })
    }

    /// The image encoder.
    pub fn image_encoder(&self) -> &E {
        &self.image
    }

    /// One vector per frame. frames: [batch, T, 3, H, W] -> [batch, T, D]
    pub fn frame_features(&self, frames: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = frames.dims5()?;
        let f = self.image.encode(&frames.reshape((b * t, c, h, w))?, None)?;
        let v = match self.frame_token {
            FrameToken::Cls => cls_pool(&f.tokens)?,
            FrameToken::Mean => mean_pool(&f.tokens, &f.mask_or_ones()?)?,
        };
        Ok(v.reshape((b, t, ()))?)
    }
}

impl<E: Encoder> Encoder for VideoEncoder<E> {
    fn modality(&self) -> Modality {
        Modality::Video
    }

    fn output_dim(&self) -> usize {
        self.image.output_dim()
    }

    /// input: frames [batch, T, 3, H, W]; mask: [batch, T] of real frames ->
    /// tokens [batch, 1, D] (mean / attention pooling) or [batch, T, D] with the mask (no pooling)
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let per_frame = self.frame_features(input)?;
        let (tokens, mask) = self.pool.forward(&per_frame, mask)?;
        Features::new(tokens, mask)
    }
}

#[cfg(test)]
mod tests;
