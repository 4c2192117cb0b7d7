//! A differentiable 2-D convolution, PyTorch's `nn.Conv2d` (square kernel, zero padding,
//! stride; `weight [out, in, k, k]`, `bias [out]`, initialised uniform in
//! `±1/sqrt(in * k * k)` as PyTorch does), and nearest-neighbour 2x upsampling
//! (`F.interpolate(scale_factor=2, mode="nearest")`). candle's `conv2d` has a backward
//! pass, but a direct transposed convolution several times slower than the forward, and
//! wrong when a stride skips input rows; on the CPU in f32/f64 the convolution is
//! `fused::conv2d` (im2col and a matrix product per image, with its own backward), and
//! elsewhere candle's, strided as the dense convolution subsampled. The test below checks
//! the gradients against finite differences for the strides the diffusion UNet and VAE use.

use braid_core::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

/// `weight [out, in, k, k]`, `bias [out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Builds from `vb`; missing variables are initialised as PyTorch does.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        if kernel == 0 || stride == 0 || in_channels == 0 || out_channels == 0 {
            return Err(Error::config(
                "conv2d",
                format!(
                    "kernel {kernel}, stride {stride} and channels {in_channels} -> \
                     {out_channels} must be positive"
                ),
            ));
        }
        let bound = 1.0 / ((in_channels * kernel * kernel) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight =
            vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?;
        let bias = vb.get_with_hints(out_channels, "bias", init)?;
        Ok(Self { weight, bias: Some(bias), stride, padding })
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// x: [batch, in, h, w] -> [batch, out, h', w']
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        let (out, cin, k, _) = self.weight.dims4()?;
        if c != cin {
            return Err(Error::shape("conv2d input [batch, channels, h, w]", &[cin], &[c]));
        }
        if h + 2 * self.padding < k || w + 2 * self.padding < k {
            return Err(Error::Invalid(format!(
                "conv2d: a {h}x{w} input is smaller than the {k}x{k} kernel"
            )));
        }
        let w = self.weight.to_dtype(x.dtype())?;
        let y = if crate::fused::on_cpu(&[x, &w]) {
            crate::fused::conv2d(x, &w, self.padding, self.stride)?
        } else {
            // Strided as every stride-th output of the dense convolution: candle's strided
            // backward drops the rows a stride skips (the test below).
            let mut y = x.conv2d(&w, self.padding, 1, 1, 1)?;
            if self.stride > 1 {
                for dim in [2, 3] {
                    let n = y.dim(dim)?;
                    let keep: Vec<u32> = (0..n as u32).step_by(self.stride).collect();
                    y = y.index_select(&Tensor::new(keep.as_slice(), y.device())?, dim)?;
                }
            }
            y
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(x.dtype())?.reshape((1, out, 1, 1))?)?,
            None => y,
        })
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.weight.dtype()
    }
}

/// Nearest-neighbour 2x upsampling from differentiable ops (each pixel repeated along
/// both axes). x: [batch, c, h, w] -> [batch, c, 2h, 2w]
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = x.unsqueeze(3)?.unsqueeze(5)?; // [b, c, h, 1, w, 1]
    let x = x.broadcast_as((b, c, h, 2, w, 2))?;
    Ok(x.reshape((b, c, 2 * h, 2 * w))?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;
    use crate::gradcheck::{check_param_grads, finite_difference_check, varmap_tensors};

    #[test]
    fn finite_difference_gradients_for_stride_one_and_two() {
        for (stride, padding, k) in [(1, 1, 3), (2, 1, 3), (1, 0, 1)] {
            let new = |vb: VarBuilder| Conv2d::new(3, 4, k, stride, padding, vb);
            let vm = VarMap::new();
            let conv = new(VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
            let x = Tensor::randn(0f64, 1.0, (2, 3, 6, 5), &Device::Cpu).unwrap();
            let params = varmap_tensors(&vm).unwrap();
            check_param_grads(&params, new, |m| m.forward(&x), 1e-6, 1e-6).unwrap();
            finite_difference_check(|x| conv.forward(x), &x, 1e-6, 1e-6).unwrap();
        }
    }

    #[test]
    fn the_training_path_equals_candles_convolution() {
        let vm = VarMap::new();
        let conv =
            Conv2d::new(3, 5, 3, 1, 1, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
                .unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 7, 6), &Device::Cpu).unwrap();
        let trained = conv.forward(&x).unwrap(); // variables track: the im2col path
        let frozen = x.conv2d(&conv.weight, 1, 1, 1, 1).unwrap();
        let frozen = frozen
            .broadcast_add(&conv.bias.as_ref().unwrap().reshape((1, 5, 1, 1)).unwrap())
            .unwrap();
        let diff = (trained - frozen).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn upsampling_repeats_each_pixel_and_passes_gradient() {
        let x = Tensor::new(&[[[[1f64, 2.], [3., 4.]]]], &Device::Cpu).unwrap();
        let y = upsample_nearest2x(&x).unwrap();
        assert_eq!(y.dims(), [1, 1, 4, 4]);
        let rows = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2::<f64>().unwrap();
        assert_eq!(rows[0], [1., 1., 2., 2.]);
        assert_eq!(rows[3], [3., 3., 4., 4.]);
        finite_difference_check(upsample_nearest2x, &x, 1e-6, 1e-6).unwrap();
    }

    #[test]
    fn a_kernel_larger_than_the_input_is_an_error() {
        let vm = VarMap::new();
        let conv =
            Conv2d::new(1, 1, 5, 1, 0, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))
                .unwrap();
        let x = Tensor::zeros((1, 1, 3, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(conv.forward(&x).unwrap_err().to_string().contains("smaller than"));
    }
}
