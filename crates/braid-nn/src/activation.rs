//! Pointwise activations, named as in Hugging Face configs (`hidden_act`).

use braid_core::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// An activation function. Deserialises from Hugging Face `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x * Phi(x)` with the error function (BERT's "gelu").
    #[default]
    Gelu,
    /// GELU with the tanh approximation ("gelu_new", "gelu_pytorch_tanh").
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    /// `x * sigmoid(1.702 x)` (OpenAI CLIP's "quick_gelu").
    QuickGelu,
    /// `x * sigmoid(x)` ("silu", "swish"; LLaMA).
    #[serde(alias = "swish")]
    Silu,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation. x: [..any] -> same shape
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Gelu => x.gelu_erf()?,
            Self::GeluTanh => x.gelu()?,
            Self::QuickGelu => (x * sigmoid(&(x * 1.702)?)?)?,
            // The fused kernel (vectorised exp, one-pass backward) where it applies.
            Self::Silu if crate::fused::on_cpu(&[x]) => crate::fused::silu(x)?,
            Self::Silu => x.silu()?,
            Self::Relu => x.relu()?,
        })
    }
}

impl candle_core::Module for Activation {
    /// x: [..any] -> same shape
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Activation::forward(self, x).map_err(candle_core::Error::wrap)
    }
}

/// `1 / (1 + exp(-x))` from differentiable ops (candle's fused sigmoid has no backward).
///
/// x: [..any] -> same shape
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::Device;

    const ALL: [(Activation, &str); 5] = [
        (Activation::Gelu, "gelu"),
        (Activation::GeluTanh, "gelu_tanh"),
        (Activation::QuickGelu, "quick_gelu"),
        (Activation::Silu, "silu"),
        (Activation::Relu, "relu"),
    ];

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("activation")?;
        let x = f.get("x")?;
        for (act, name) in ALL {
            fixtures::check(&act.forward(&x)?, &f.get(name)?, name)?;
        }
        f.assert_all_used()
    }

    #[test]
    fn parses_hugging_face_names() {
        let parse = |s: &str| serde_json::from_str::<Activation>(&format!("\"{s}\"")).ok();
        assert_eq!(parse("gelu"), Some(Activation::Gelu));
        assert_eq!(parse("gelu_new"), Some(Activation::GeluTanh));
        assert_eq!(parse("gelu_pytorch_tanh"), Some(Activation::GeluTanh));
        assert_eq!(parse("quick_gelu"), Some(Activation::QuickGelu));
        assert_eq!(parse("silu"), Some(Activation::Silu));
        assert_eq!(parse("relu"), Some(Activation::Relu));
        assert_eq!(parse("tanhh"), None);
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        // Keep away from relu's kink at 0, where central differences are meaningless.
        let x = Tensor::new(&[-2.1f64, -0.7, -0.3, 0.2, 0.9, 1.7, 3.0], &Device::Cpu)?;
        for (act, name) in ALL {
            finite_difference_check(|x| act.forward(x), &x, 1e-6, 1e-5)
                .map_err(|e| braid_core::Error::Invalid(format!("{name}: {e}")))?;
        }
        Ok(())
    }
}
