//! Layer normalisation and RMS normalisation from differentiable ops (candle's fused
//! `layer_norm` and `rms_norm` kernels have no backward pass), and [`Norm`], the choice of
//! either that transformer blocks hold. Where no gradient can be needed (neither the input
//! nor the weights track ops: frozen inference) the fused kernels run instead.

use braid_core::Result;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::fused_ok;

/// Half-precision inputs are normalised in f32: their mean of squares loses too much.
fn internal(x: &Tensor) -> Result<Tensor> {
    Ok(match x.dtype() {
        DType::F16 | DType::BF16 => x.to_dtype(DType::F32)?,
        _ => x.clone(),
    })
}

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension (biased variance,
/// as PyTorch's `nn.LayerNorm`). Variables "weight" and "bias", `[dim]`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Builds from `vb`; missing variables start at weight 1, bias 0.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    /// x: [..., dim] -> [..., dim]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_ok(&[x, &self.weight, &self.bias]) {
            let x = x.contiguous()?;
            return Ok(candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps as f32)?);
        }
        let h = internal(x)?;
        let centred = h.broadcast_sub(&h.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(x.dtype())?;
        Ok(normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

/// `x / sqrt(mean(x^2) + eps) * weight` over the last dimension (LLaMA). Variable
/// "weight", `[dim]`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Builds from `vb`; a missing weight starts at 1.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(dim, "weight", Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    /// The scale, `[dim]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// x: [..., dim] -> [..., dim]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_ok(&[x, &self.weight]) {
            return Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps as f32)?);
        }
        if crate::fused::applies(&[x, &self.weight]) {
            return Ok(crate::fused::rms_norm(x, &self.weight, self.eps)?);
        }
        let h = internal(x)?;
        let ms = h.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = h.broadcast_div(&(ms + self.eps)?.sqrt()?)?.to_dtype(x.dtype())?;
        Ok(normed.broadcast_mul(&self.weight)?)
    }
}

macro_rules! impl_module {
    ($t:ty) => {
        impl Module for $t {
            /// x: [..., dim] -> [..., dim]
            fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
                <$t>::forward(self, x).map_err(candle_core::Error::wrap)
            }
        }
    };
}
impl_module!(LayerNorm);
impl_module!(RmsNorm);

/// Which normalisation a block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// [`LayerNorm`] (BERT, CLIP, ViT).
    #[default]
    LayerNorm,
    /// [`RmsNorm`] (LLaMA).
    RmsNorm,
}

/// A normalisation layer's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NormConfig {
    /// Layer or RMS norm.
    pub kind: NormKind,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl Default for NormConfig {
    fn default() -> Self {
        Self { kind: NormKind::LayerNorm, eps: 1e-5 }
    }
}

/// A [`LayerNorm`] or an [`RmsNorm`], chosen by [`NormConfig`].
#[derive(Debug, Clone)]
pub enum Norm {
    /// Layer normalisation.
    LayerNorm(LayerNorm),
    /// RMS normalisation.
    RmsNorm(RmsNorm),
}

impl Norm {
    /// Builds the kind `cfg` names, with variables under `vb`.
    pub fn new(dim: usize, cfg: NormConfig, vb: VarBuilder) -> Result<Self> {
        Ok(match cfg.kind {
            NormKind::LayerNorm => Self::LayerNorm(LayerNorm::new(dim, cfg.eps, vb)?),
            NormKind::RmsNorm => Self::RmsNorm(RmsNorm::new(dim, cfg.eps, vb)?),
        })
    }

    /// x: [..., dim] -> [..., dim]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::LayerNorm(n) => n.forward(x),
            Self::RmsNorm(n) => n.forward(x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::{check_param_grads, finite_difference_check, varmap_tensors};
    use candle_core::Device;
    use candle_nn::VarMap;

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("norm")?;
        let x = f.get("x")?;
        let ln = LayerNorm::new(8, 1e-5, f.vb().pp("ln"))?;
        fixtures::check(&ln.forward(&x)?, &f.get("ln_out")?, "layer norm")?;
        let rms = RmsNorm::new(8, 1e-6, f.vb().pp("rms"))?;
        fixtures::check(&rms.forward(&x)?, &f.get("rms_out")?, "rms norm")?;
        f.assert_all_used()
    }

    fn random_params(kind: NormKind) -> Result<std::collections::HashMap<String, Tensor>> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        Norm::new(5, NormConfig { kind, eps: 1e-5 }, vb)?;
        let mut params = varmap_tensors(&vm)?;
        for t in params.values_mut() {
            *t = (t.randn_like(0., 0.5)? + t.clone())?;
        }
        Ok(params)
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let x = Tensor::randn(0f64, 1., (2, 3, 5), &Device::Cpu)?;
        for kind in [NormKind::LayerNorm, NormKind::RmsNorm] {
            let cfg = NormConfig { kind, eps: 1e-5 };
            let params = random_params(kind)?;
            let build = |vb: VarBuilder| Norm::new(5, cfg, vb);
            check_param_grads(&params, build, |n| n.forward(&x), 1e-6, 1e-5)?;
            let vb = VarBuilder::from_tensors(params, DType::F64, &Device::Cpu);
            let norm = Norm::new(5, cfg, vb)?;
            finite_difference_check(|x| norm.forward(x), &x, 1e-6, 1e-5)?;
        }
        Ok(())
    }

    /// Frozen inputs take candle's fused kernels, a variable input the differentiable
    /// path: both must give the same numbers.
    #[test]
    fn fused_inference_path_equals_differentiable_path() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 8), &dev)?;
        let w = Tensor::randn(1f32, 0.1, 8, &dev)?;
        let b = Tensor::randn(0f32, 0.1, 8, &dev)?;
        let ln = LayerNorm { weight: w.clone(), bias: b, eps: 1e-5 };
        let rms = RmsNorm { weight: w, eps: 1e-6 };
        let tracked = candle_core::Var::from_tensor(&x)?;
        assert!(fused_ok(&[&x]) && !fused_ok(&[tracked.as_tensor()]));
        for (fused, composed) in [
            (ln.forward(&x)?, ln.forward(tracked.as_tensor())?),
            (rms.forward(&x)?, rms.forward(tracked.as_tensor())?),
        ] {
            fixtures::check(&fused, &composed.detach(), "fused vs composed")?;
        }
        Ok(())
    }
}
