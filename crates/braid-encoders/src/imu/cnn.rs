//! A small 1D CNN for time series: `conv1d (same padding, stride) -> ReLU` per layer, the
//! fully convolutional baseline of Wang et al. 2017 ("Time Series Classification from
//! Scratch with Deep Neural Networks") without batch norm, so train and eval agree.
//! Reference: `torch.nn.Conv1d`.

use braid_core::{Error, Features, Modality, Result};
use braid_nn::{Conv1d, Conv1dConfig};
use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::transformer::token_mask;
use crate::Encoder;

/// Layer widths, kernel and stride.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cnn1dConfig {
    /// Input channels.
    pub channels: usize,
    /// Output width of each layer; the last is the token width.
    pub widths: Vec<usize>,
    /// Odd kernel size (padding `kernel / 2` keeps the length at stride 1).
    pub kernel_size: usize,
    /// Stride of every layer (2 halves the time steps per layer).
    pub stride: usize,
}

impl Default for Cnn1dConfig {
    fn default() -> Self {
        Self { channels: 6, widths: vec![64, 128, 128], kernel_size: 5, stride: 2 }
    }
}

/// Variables: `convs.K.{weight,bias}` (`[out, in, kernel]`, `[out]`).
#[derive(Debug, Clone)]
pub struct Cnn1d {
    convs: Vec<Conv1d>,
    cfg: Cnn1dConfig,
}

impl Cnn1d {
    /// Builds under `vb`.
    pub fn new(cfg: Cnn1dConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.widths.is_empty() || cfg.kernel_size % 2 == 0 || cfg.stride == 0 {
            return Err(Error::config(
                "cnn",
                format!("need widths, an odd kernel and a positive stride: {cfg:?}"),
            ));
        }
        let mut input = cfg.channels;
        let mut convs = Vec::with_capacity(cfg.widths.len());
        for (k, &w) in cfg.widths.iter().enumerate() {
            let conv = Conv1dConfig {
                in_channels: input,
                out_channels: w,
                kernel: cfg.kernel_size,
                stride: cfg.stride,
                padding: cfg.kernel_size / 2,
                bias: true,
            };
            convs.push(Conv1d::new(conv, vb.pp(format!("convs.{k}")))?);
            input = w;
        }
        Ok(Self { convs, cfg })
    }
}

impl Encoder for Cnn1d {
    fn modality(&self) -> Modality {
        Modality::Imu
    }

    fn output_dim(&self) -> usize {
        self.cfg.widths.last().copied().unwrap_or(0)
    }

    /// input: [batch, time, channels]; mask: [batch, time] -> tokens [batch, time', width]
    /// (time' = time after `layers` strided convs, each `ceil(t / stride)`)
    fn encode(&self, input: &Tensor, mask: Option<&Tensor>) -> Result<Features> {
        let c = input.dim(2)?;
        if c != self.cfg.channels {
            return Err(Error::shape(
                "IMU input [batch, time, channels]",
                &[self.cfg.channels],
                &[c],
            ));
        }
        let mut h = input.clone();
        let mut mask = mask.cloned();
        for conv in &self.convs {
            h = conv.forward_tokens(&h)?.relu()?;
            // A step is real where the input sample at its centre was.
            mask = mask.map(|m| token_mask(&m, h.dim(1)?, 1, self.cfg.stride)).transpose()?;
        }
        Features::new(h, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn cfg() -> Cnn1dConfig {
        Cnn1dConfig { channels: 6, widths: vec![4, 8], kernel_size: 3, stride: 2 }
    }

    #[test]
    fn shapes() -> Result<()> {
        let vm = VarMap::new();
        let enc = Cnn1d::new(cfg(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let x = Tensor::randn(0f32, 1., (3, 9, 6), &Device::Cpu)?;
        let mask = Tensor::ones((3, 9), DType::F32, &Device::Cpu)?;
        let f = enc.encode(&x, Some(&mask))?;
        assert_eq!(f.tokens.dims(), [3, 3, 8]); // 9 -> 5 -> 3
        assert_eq!(f.mask_or_ones()?.dims(), [3, 3]);
        assert!(Cnn1d::new(
            Cnn1dConfig { kernel_size: 4, ..cfg() },
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn parameter_gradients_match_finite_differences() -> Result<()> {
        let vm = VarMap::new();
        Cnn1d::new(cfg(), VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
        let x = Tensor::randn(0f64, 1., (2, 11, 6), &Device::Cpu)?;
        let params = braid_nn::gradcheck::varmap_tensors(&vm)?;
        braid_nn::gradcheck::check_param_grads(
            &params,
            |vb| Cnn1d::new(cfg(), vb),
            |m| Ok(m.encode(&x, None)?.tokens),
            1e-6,
            1e-5,
        )
    }

    #[test]
    fn every_variable_gets_a_gradient() -> Result<()> {
        let vm = VarMap::new();
        let enc = Cnn1d::new(cfg(), VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu))?;
        let x = Tensor::randn(0f32, 1., (2, 12, 6), &Device::Cpu)?;
        check_all_vars_get_grad(&vm, &enc.encode(&x, None)?.tokens.sqr()?.sum_all()?)
    }
}
