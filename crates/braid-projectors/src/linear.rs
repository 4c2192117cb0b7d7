//! A single linear map from encoder width to LLM width: the first LLaVA's projector
//! (`mm_projector_type = "linear"` in LLaVA `llava/model/multimodal_projector/builder.py`).

use braid_core::{Features, Result};
use braid_nn::Linear;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::InputProjector;

/// Options of the [`LinearProjector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    /// Bias on the projection.
    pub bias: bool,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self { bias: true }
    }
}

/// `y = x W^T + b`, token-wise; variables `weight [out, in]` and `bias [out]` at the root of `vb`.
#[derive(Debug, Clone)]
pub struct LinearProjector {
    proj: Linear,
}

impl LinearProjector {
    /// Builds under `vb`.
    pub fn new(cfg: LinearConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { proj: Linear::new(in_dim, out_dim, cfg.bias, vb)? })
    }
}

impl InputProjector for LinearProjector {
    fn in_dim(&self) -> usize {
        self.proj.in_dim()
    }

    fn out_dim(&self) -> usize {
        self.proj.out_dim()
    }

    /// tokens [batch, n, in_dim] -> [batch, n, out_dim]; the mask is kept.
    fn project(&self, features: &Features) -> Result<Features> {
        let tokens = candle_core::Module::forward(&self.proj, &features.tokens)?;
        Features::new(tokens, features.mask.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{features, loss};
    use braid_nn::gradcheck::check_all_vars_get_grad;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_gradients() -> Result<()> {
        let vm = VarMap::new();
        let p = LinearProjector::new(
            LinearConfig::default(),
            6,
            10,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
        )?;
        let out = p.project(&features(2, 5, 6, true)?)?;
        assert_eq!(out.tokens.dims(), &[2, 5, 10]);
        assert_eq!(out.mask.as_ref().map(|m| m.dims().to_vec()), Some(vec![2, 5]));
        check_all_vars_get_grad(&vm, &loss(&out)?)
    }
}
