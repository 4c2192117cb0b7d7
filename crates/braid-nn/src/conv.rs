//! A differentiable 1-D convolution, PyTorch's `nn.Conv1d` (zero padding, stride,
//! `weight [out, in, kernel]`, `bias [out]`, initialised uniform in `±1/sqrt(in * kernel)`
//! as PyTorch does). Written as im2col (one `index_select` per kernel tap) and a matmul,
//! because candle 0.11's `conv1d` backward gives wrong weight gradients (the test below
//! would catch that).

use braid_core::{Error, Result};
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// Kernel, stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv1dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Taps.
    pub kernel: usize,
    /// Steps between outputs.
    pub stride: usize,
    /// Zeros added at both ends.
    pub padding: usize,
    /// Whether there is a bias.
    pub bias: bool,
}

/// `weight [out, in, kernel]`, `bias [out]`.
#[derive(Debug, Clone)]
pub struct Conv1d {
    /// `[out, in * kernel]`, the kernel flattened as im2col lays out its columns.
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: Conv1dConfig,
}

impl Conv1d {
    /// Builds from `vb`; missing variables are initialised as PyTorch does.
    pub fn new(cfg: Conv1dConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.kernel == 0 || cfg.stride == 0 || cfg.in_channels == 0 {
            return Err(Error::config(
                "conv1d",
                format!("kernel, stride and channels must be positive: {cfg:?}"),
            ));
        }
        let bound = 1.0 / ((cfg.in_channels * cfg.kernel) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight =
            vb.get_with_hints((cfg.out_channels, cfg.in_channels, cfg.kernel), "weight", init)?;
        let bias =
            if cfg.bias { Some(vb.get_with_hints(cfg.out_channels, "bias", init)?) } else { None };
        let weight = weight.reshape((cfg.out_channels, cfg.in_channels * cfg.kernel))?;
        Ok(Self { weight, bias, cfg })
    }

    /// Output length for an input of `t` steps.
    pub fn out_len(&self, t: usize) -> usize {
        (t + 2 * self.cfg.padding).saturating_sub(self.cfg.kernel) / self.cfg.stride + 1
    }

    /// Channels-last: x [batch, time, in] -> [batch, time_out, out]
    pub fn forward_tokens(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        if c != self.cfg.in_channels {
            return Err(Error::shape(
                "conv1d input [batch, time, channels]",
                &[b, t, self.cfg.in_channels],
                &[b, t, c],
            ));
        }
        if t + 2 * self.cfg.padding < self.cfg.kernel {
            return Err(Error::Invalid(format!(
                "conv1d: {t} steps are fewer than the kernel ({})",
                self.cfg.kernel
            )));
        }
        let x = x.pad_with_zeros(1, self.cfg.padding, self.cfg.padding)?.contiguous()?;
        let n = self.out_len(t);
        let taps = (0..self.cfg.kernel)
            .map(|k| {
                let idx: Vec<u32> = (0..n).map(|i| (k + i * self.cfg.stride) as u32).collect();
                x.index_select(&Tensor::new(idx.as_slice(), x.device())?, 1)
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        // [batch, n, in, kernel] -> [batch, n, in * kernel], matching weight [out, in, kernel].
        let cols = Tensor::stack(&taps, 3)?.reshape((b, n, c * self.cfg.kernel))?;
        let y = cols.broadcast_matmul(&self.weight.t()?.to_dtype(cols.dtype())?)?;
        Ok(match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        })
    }

    /// PyTorch layout: x [batch, in, time] -> [batch, out, time_out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_tokens(&x.transpose(1, 2)?)?.transpose(1, 2)?)
    }

    /// The dtype of the weights.
    pub fn dtype(&self) -> DType {
        self.weight.dtype()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;
    use crate::gradcheck::{check_param_grads, finite_difference_check, varmap_tensors};

    fn cfg() -> Conv1dConfig {
        Conv1dConfig {
            in_channels: 3,
            out_channels: 4,
            kernel: 3,
            stride: 2,
            padding: 1,
            bias: true,
        }
    }

    #[test]
    fn matches_candle_forward_and_finite_difference_gradients() {
        let vm = VarMap::new();
        let conv =
            Conv1d::new(cfg(), VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu)).unwrap();
        let x = Tensor::randn(0f64, 1.0, (2, 3, 9), &Device::Cpu).unwrap();
        let params = varmap_tensors(&vm).unwrap();
        let w = params["weight"].clone();
        let want = x
            .conv1d(&w, 1, 2, 1, 1)
            .unwrap()
            .broadcast_add(&params["bias"].reshape((1, 4, 1)).unwrap())
            .unwrap();
        let got = conv.forward(&x).unwrap();
        assert_eq!(got.dims(), [2, 4, 5]);
        let diff =
            (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(diff < 1e-12, "{diff}");
        check_param_grads(&params, |vb| Conv1d::new(cfg(), vb), |m| m.forward(&x), 1e-6, 1e-6)
            .unwrap();
        finite_difference_check(|x| conv.forward(x), &x, 1e-6, 1e-6).unwrap();
    }
}
