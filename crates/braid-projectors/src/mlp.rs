//! LLaVA-1.5's two-layer MLP projector, `mlp2x_gelu` (Liu et al. 2023, "Improved Baselines
//! with Visual Instruction Tuning"): `linear_2(gelu(linear_1(x)))`, token-wise. Names follow
//! Hugging Face `LlavaMultiModalProjector` (transformers `models/llava/modeling_llava.py`);
//! reference: LLaVA `llava/model/multimodal_projector/builder.py`.

use braid_core::{Features, Result};
use braid_nn::{Activation, Linear};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::InputProjector;

/// Options of the [`MlpProjector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlpProjectorConfig {
    /// Nonlinearity between the layers (HF `projector_hidden_act`, "gelu" in LLaVA-1.5).
    pub activation: Activation,
    /// Biases on both layers (HF `multimodal_projector_bias`).
    pub bias: bool,
}

impl Default for MlpProjectorConfig {
    fn default() -> Self {
        Self { activation: Activation::Gelu, bias: true }
    }
}

/// `linear_1: in -> out`, activation, `linear_2: out -> out`.
#[derive(Debug, Clone)]
pub struct MlpProjector {
    linear_1: Linear,
    linear_2: Linear,
    activation: Activation,
}

impl MlpProjector {
    /// Builds under `vb` (`multi_modal_projector` in an HF LLaVA checkpoint).
    pub fn new(
        cfg: MlpProjectorConfig,
        in_dim: usize,
        out_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::new(in_dim, out_dim, cfg.bias, vb.pp("linear_1"))?,
            linear_2: Linear::new(out_dim, out_dim, cfg.bias, vb.pp("linear_2"))?,
            activation: cfg.activation,
        })
    }

    /// x: [..., in_dim] -> [..., out_dim]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.activation.forward(&self.linear_1.forward(x)?)?;
        Ok(self.linear_2.forward(&h)?)
    }
}

impl InputProjector for MlpProjector {
    fn in_dim(&self) -> usize {
        self.linear_1.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.linear_2.out_dim()
    }

    /// tokens [batch, n, in_dim] -> [batch, n, out_dim]; the mask is kept.
    fn project(&self, features: &Features) -> Result<Features> {
        Features::new(self.forward(&features.tokens)?, features.mask.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{features, loss};
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;
    use std::collections::HashMap;

    #[test]
    fn shapes_and_gradients() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let p = MlpProjector::new(MlpProjectorConfig::default(), 6, 10, vb)?;
        let out = p.project(&features(2, 5, 6, true)?)?;
        assert_eq!(out.tokens.dims(), &[2, 5, 10]);
        assert_eq!((p.in_dim(), p.out_dim()), (6, 10));
        check_all_vars_get_grad(&vm, &loss(&out)?)
    }

    /// The HF `LlavaForConditionalGeneration` names load, and the forward is
    /// `W2 gelu(W1 x + b1) + b2`.
    #[test]
    fn loads_hf_llava_projector_names() -> Result<()> {
        let dev = Device::Cpu;
        let mut ts = HashMap::new();
        let w1 = Tensor::randn(0f32, 0.3, (10, 6), &dev)?;
        let b1 = Tensor::randn(0f32, 0.3, 10, &dev)?;
        let w2 = Tensor::randn(0f32, 0.3, (10, 10), &dev)?;
        let b2 = Tensor::randn(0f32, 0.3, 10, &dev)?;
        ts.insert("multi_modal_projector.linear_1.weight".to_string(), w1.clone());
        ts.insert("multi_modal_projector.linear_1.bias".to_string(), b1.clone());
        ts.insert("multi_modal_projector.linear_2.weight".to_string(), w2.clone());
        ts.insert("multi_modal_projector.linear_2.bias".to_string(), b2.clone());
        let vb = VarBuilder::from_tensors(ts, DType::F32, &dev);
        let p = MlpProjector::new(
            MlpProjectorConfig::default(),
            6,
            10,
            vb.pp("multi_modal_projector"),
        )?;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 6), &dev)?;
        let h = x.broadcast_matmul(&w1.t()?)?.broadcast_add(&b1)?.gelu_erf()?;
        let want = h.broadcast_matmul(&w2.t()?)?.broadcast_add(&b2)?;
        let diff = (p.forward(&x)? - want)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "max abs diff {diff}");
        Ok(())
    }
}
