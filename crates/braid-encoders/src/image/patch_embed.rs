//! ViT patch embedding (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"): the
//! image is cut into non-overlapping `p x p` patches, each flattened (`C * p * p` values,
//! channel-major like PyTorch's `Conv2d` kernel) and projected to `D`. Written as
//! reshape + matmul rather than a convolution, which is the same map for stride = kernel
//! and keeps the backward pass simple. Reference: `transformers.models.clip.modeling_clip.
//! CLIPVisionEmbeddings.patch_embedding` (`Conv2d(C, D, p, stride=p)`).

use braid_core::{Error, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

/// The patch projection, stored as a `Conv2d` kernel `weight [D, C, p, p]` (+ `bias [D]`).
#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    /// `[D, C * p * p]`
    weight: Tensor,
    bias: Option<Tensor>,
    channels: usize,
    patch: usize,
}

impl PatchEmbedding {
    /// Builds from `vb` (`weight`, and `bias` when `bias`); a fresh weight is uniform in
    /// `±1/sqrt(C p p)` like PyTorch's `Conv2d`.
    pub fn new(
        channels: usize,
        patch: usize,
        dim: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        if patch == 0 {
            return Err(Error::config("patch_size", "must be positive"));
        }
        let fan_in = channels * patch * patch;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb
            .get_with_hints((dim, channels, patch, patch), "weight", init)?
            .reshape((dim, fan_in))?;
        let bias = if bias { Some(vb.get_with_hints(dim, "bias", init)?) } else { None };
        Ok(Self { weight, bias, channels, patch })
    }

    /// Patch side in pixels.
    pub fn patch_size(&self) -> usize {
        self.patch
    }

    /// Patches per column and per row of an `h x w` image; a side the patch size does not
    /// divide is an error.
    pub fn grid(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        if h % self.patch != 0 || w % self.patch != 0 || h == 0 || w == 0 {
            return Err(Error::Invalid(format!(
                "image size {h}x{w} is not a multiple of the patch size {p}x{p}; resize or crop it to a multiple of {p}",
                p = self.patch
            )));
        }
        Ok((h / self.patch, w / self.patch))
    }

    /// pixels: [batch, C, H, W] -> [batch, (H/p) * (W/p), D], patches in row-major order
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        if c != self.channels {
            return Err(Error::shape("pixels channels", &[self.channels], &[c]));
        }
        let (gh, gw) = self.grid(h, w)?;
        let p = self.patch;
        let patches = pixels
            .reshape(vec![b, c, gh, p, gw, p])?
            .permute([0, 2, 4, 1, 3, 5])?
            .reshape((b * gh * gw, c * p * p))?;
        let mut y = patches.matmul(&self.weight.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        Ok(y.reshape((b, gh * gw, ()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    #[test]
    fn vit_l14_example_224_gives_256_tokens_of_588_values_to_768() {
        let vm = VarMap::new();
        let pe = PatchEmbedding::new(
            3,
            14,
            768,
            false,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        assert_eq!(pe.weight.dims(), &[768, 588]);
        let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(pe.forward(&x).unwrap().dims(), &[1, 256, 768]);
    }

    #[test]
    fn equals_a_strided_convolution() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let pe = PatchEmbedding::new(3, 4, 5, true, VarBuilder::from_varmap(&vm, DType::F32, &dev))
            .unwrap();
        let x = Tensor::randn(0f32, 1., (2, 3, 8, 12), &dev).unwrap();
        let kernel = pe.weight.reshape((5, 3, 4, 4)).unwrap();
        let conv = x.conv2d(&kernel, 0, 4, 1, 1).unwrap(); // [2, 5, 2, 3]
        let conv =
            conv.broadcast_add(&pe.bias.clone().unwrap().reshape((1, 5, 1, 1)).unwrap()).unwrap();
        let conv = conv.flatten_from(2).unwrap().transpose(1, 2).unwrap();
        let ours = pe.forward(&x).unwrap();
        braid_core::testing::assert_close(&ours, &conv, 1e-5, "patches").unwrap();
        assert_eq!(ours.i((1, 4)).unwrap().dims(), &[5]);
    }

    #[test]
    fn indivisible_size_is_a_clear_error() {
        let vm = VarMap::new();
        let pe = PatchEmbedding::new(
            3,
            14,
            8,
            false,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )
        .unwrap();
        let x = Tensor::zeros((1, 3, 224, 230), DType::F32, &Device::Cpu).unwrap();
        let err = pe.forward(&x).unwrap_err().to_string();
        assert!(err.contains("224x230") && err.contains("patch size 14x14"), "{err}");
    }
}
