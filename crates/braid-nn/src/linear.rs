//! Affine map `y = x W^T + b`, weight laid out `[out, in]` as in PyTorch's `nn.Linear`.

use braid_core::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// A fully connected layer with weight `[out, in]` ("weight") and optional bias `[out]` ("bias").
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Builds from `vb`, initialising missing variables like PyTorch (uniform in
    /// `±1/sqrt(in_dim)`).
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
        let bias = if bias { Some(vb.get_with_hints(out_dim, "bias", init)?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Wraps existing tensors: `weight [out, in]`, `bias [out]`.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, _) = weight.dims2()?;
        if let Some(b) = &bias {
            if b.dims() != [out_dim] {
                return Err(Error::shape("linear bias", &[out_dim], b.dims()));
            }
        }
        Ok(Self { weight, bias })
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    /// x: [..., in] -> [..., out]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // One 2-D matmul over all leading dims rather than a batched one per sample.
        let mut dims = x.dims().to_vec();
        let in_dim = dims.pop().unwrap_or(0);
        dims.push(self.weight.dim(0)?);
        let y = x.reshape(((), in_dim))?.matmul(&self.weight.t()?)?.reshape(dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::{DType, Device};

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("linear")?;
        let layer = Linear::new(6, 5, true, f.vb().pp("layer"))?;
        fixtures::check(&layer.forward(&f.get("x")?)?, &f.get("y")?, "linear")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (2, 3, 4), &dev)?;
        let w = Tensor::randn(0f64, 1., (5, 4), &dev)?;
        let b = Tensor::randn(0f64, 1., 5, &dev)?;
        let fwd = |x: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
            Ok(Linear::from_weights(w.clone(), Some(b.clone()))?.forward(x)?)
        };
        finite_difference_check(|x| fwd(x, &w, &b), &x, 1e-6, 1e-6)?;
        finite_difference_check(|w| fwd(&x, w, &b), &w, 1e-6, 1e-6)?;
        finite_difference_check(|b| fwd(&x, &w, b), &b, 1e-6, 1e-6)?;
        assert_eq!(x.dtype(), DType::F64);
        Ok(())
    }
}
