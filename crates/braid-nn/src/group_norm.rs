//! Group normalisation (Wu & He 2018), PyTorch's `nn.GroupNorm`: channels split into
//! groups, each group normalised over its channels and all positions (biased variance),
//! then a per-channel affine. On the CPU in f32/f64 the fused kernel with its backward pass
//! (`fused::group_norm`); elsewhere from differentiable ops.

use braid_core::{Error, Result};
use candle_core::{DType, Tensor, D};
use candle_nn::{Init, VarBuilder};

/// Variables "weight" and "bias", `[channels]`.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// Builds from `vb`; missing variables start at weight 1, bias 0. `channels` must be a
    /// multiple of `groups`.
    pub fn new(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if groups == 0 || channels % groups != 0 {
            return Err(Error::config(
                "norm_num_groups",
                format!("{channels} channels cannot be split into {groups} groups"),
            ));
        }
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, groups, eps })
    }

    /// x: [batch, channels, ...] -> the same shape
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let c = self.weight.dim(0)?;
        if dims.len() < 2 || dims[1] != c {
            return Err(Error::shape("group norm input [batch, channels, ...]", &[c], &dims));
        }
        if crate::fused::on_cpu(&[x, &self.weight, &self.bias]) {
            return Ok(crate::fused::group_norm(
                x,
                &self.weight,
                &self.bias,
                self.groups,
                self.eps,
            )?);
        }
        let h = match x.dtype() {
            DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
            _ => x.clone(),
        };
        let grouped = h.reshape((dims[0], self.groups, ()))?;
        let centred = grouped.broadcast_sub(&grouped.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.reshape(dims.as_slice())?;
        let mut affine = vec![1usize; dims.len()];
        affine[1] = c;
        let w = self.weight.to_dtype(normed.dtype())?.reshape(affine.as_slice())?;
        let b = self.bias.to_dtype(normed.dtype())?.reshape(affine.as_slice())?;
        Ok(normed.broadcast_mul(&w)?.broadcast_add(&b)?.to_dtype(x.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;
    use crate::gradcheck::{check_param_grads, finite_difference_check, varmap_tensors};

    #[test]
    fn normalises_each_group_and_passes_gradients() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 2.0, (2, 6, 3, 2), &dev).unwrap();
        let params: std::collections::HashMap<String, Tensor> = [
            ("weight".to_string(), Tensor::randn(1f64, 0.3, 6, &dev).unwrap()),
            ("bias".to_string(), Tensor::randn(0f64, 0.3, 6, &dev).unwrap()),
        ]
        .into();
        let new = |vb: VarBuilder| GroupNorm::new(3, 6, 1e-5, vb);
        let gn = new(VarBuilder::from_tensors(params.clone(), DType::F64, &dev)).unwrap();
        // Unit affine: each group of 2 channels x 6 positions has mean 0 and variance ~1.
        let vm = VarMap::new();
        let plain = new(VarBuilder::from_varmap(&vm, DType::F64, &dev)).unwrap();
        let y = plain.forward(&x).unwrap().reshape((2, 3, 12)).unwrap();
        let mean = y.mean_keepdim(2).unwrap().abs().unwrap().max_all().unwrap();
        assert!(mean.to_scalar::<f64>().unwrap() < 1e-12);
        let var = y.sqr().unwrap().mean_keepdim(2).unwrap().flatten_all().unwrap();
        for v in var.to_vec1::<f64>().unwrap() {
            assert!((v - 1.0).abs() < 1e-3, "{v}");
        }
        check_param_grads(&params, new, |m| m.forward(&x), 1e-6, 1e-6).unwrap();
        finite_difference_check(|x| gn.forward(x), &x, 1e-6, 1e-6).unwrap();
        let _ = varmap_tensors(&vm).unwrap();
    }

    #[test]
    fn channels_not_divisible_by_groups_is_an_error() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let err = GroupNorm::new(4, 6, 1e-5, vb).unwrap_err().to_string();
        assert!(err.contains("norm_num_groups"), "{err}");
    }
}
