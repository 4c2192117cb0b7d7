//! Low-rank adaptation (Hu et al. 2021, "LoRA"; reference: Hugging Face PEFT `lora.Linear`):
//! `y = base(x) + (alpha / r) * x A^T B^T` with the base frozen.

use braid_core::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::Linear;

/// LoRA hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Rank `r` of the update.
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    pub alpha: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0 }
    }
}

/// A frozen [`Linear`] plus a trainable low-rank update, variables named as in PEFT:
/// "lora_A.weight" `[r, in]` and "lora_B.weight" `[out, r]`.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    base: Linear,
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl LoraLinear {
    /// Wraps `base` (whose weights should come from a frozen VarMap) with A and B from `vb`
    /// (the trainable map). New variables: A uniform in `±1/sqrt(in)` (PEFT's
    /// `kaiming_uniform_(a=sqrt(5))`), B zero, so training starts from the base model.
    pub fn new(base: Linear, cfg: LoraConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.rank == 0 {
            return Err(Error::config("lora.rank", "must be at least 1"));
        }
        let (in_dim, out_dim) = (base.in_dim(), base.out_dim());
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = vb.get_with_hints((cfg.rank, in_dim), "lora_A.weight", Init::Uniform { lo: -bound, up: bound })?;
        let b = vb.get_with_hints((out_dim, cfg.rank), "lora_B.weight", Init::Const(0.0))?;
        Ok(Self { base, a, b, scale: cfg.alpha / cfg.rank as f64 })
    }

    /// The frozen layer.
    pub fn base(&self) -> &Linear {
        &self.base
    }

    /// A plain [`Linear`] with `W + scale * B A`, giving the same outputs without the
    /// extra matmuls.
    pub fn merge(&self) -> Result<Linear> {
        let delta = (self.b.matmul(&self.a)? * self.scale)?;
        let w = (self.base.weight() + delta.to_dtype(self.base.weight().dtype())?)?;
        Linear::from_weights(w.detach(), self.base.bias().map(Tensor::detach))
    }

    /// x: [..., in] -> [..., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let update = x.broadcast_matmul(&self.a.t()?)?.broadcast_matmul(&self.b.t()?)?;
        Ok((self.base.forward(x)? + (update * self.scale)?)?)
    }
}

impl Module for LoraLinear {
    /// x: [..., in] -> [..., out]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        LoraLinear::forward(self, x).map_err(candle_core::Error::wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::{check_all_vars_get_grad, finite_difference_check};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    const CFG: LoraConfig = LoraConfig { rank: 2, alpha: 4.0 };

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("lora")?;
        let base = Linear::new(6, 5, true, f.vb().pp("layer.base_layer"))?;
        let lora = LoraLinear::new(base, CFG, f.vb().pp("layer"))?;
        let x = f.get("x")?;
        fixtures::check(&lora.forward(&x)?, &f.get("y")?, "lora")?;
        fixtures::check(&lora.merge()?.forward(&x)?, &f.get("y")?, "merged lora")?;
        f.assert_all_used()
    }

    fn random_lora(trainable: &VarMap) -> Result<LoraLinear> {
        let dev = Device::Cpu;
        let base = Linear::from_weights(Tensor::randn(0f32, 1., (5, 4), &dev)?, None)?;
        LoraLinear::new(base, CFG, VarBuilder::from_varmap(trainable, DType::F32, &dev))
    }

    #[test]
    fn merged_equals_unmerged() -> Result<()> {
        let vm = VarMap::new();
        let lora = random_lora(&vm)?;
        // Var::set writes in place, so `lora` sees the new A and B.
        for var in vm.all_vars() {
            var.set(&var.as_tensor().randn_like(0., 1.)?)?;
        }
        let x = Tensor::randn(0f32, 1., (2, 3, 4), &Device::Cpu)?;
        braid_core::testing::assert_close(&lora.forward(&x)?, &lora.merge()?.forward(&x)?, 1e-5, "merge")
    }

    #[test]
    fn a_and_b_get_gradients() -> Result<()> {
        let vm = VarMap::new();
        let lora = random_lora(&vm)?;
        let x = Tensor::randn(0f32, 1., (3, 4), &Device::Cpu)?;
        // At init B = 0, so only B gets a gradient.
        let grads = lora.forward(&x)?.sum_all()?.backward()?;
        let peak = |t: &Tensor| -> Result<f32> { Ok(t.abs()?.max_all()?.to_scalar::<f32>()?) };
        let gb = grads.get(&lora.b).ok_or_else(|| Error::Invalid("no grad for B".into()))?;
        assert!(peak(gb)? > 0.0);
        // One SGD step on B, then both receive a gradient.
        let b_var = vm.all_vars().into_iter().find(|v| v.dims() == [5, 2]).ok_or_else(|| Error::Invalid("B".into()))?;
        b_var.set(&(b_var.as_tensor() - gb)?)?;
        check_all_vars_get_grad(&vm, &lora.forward(&x)?.sum_all()?)
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let base = Linear::from_weights(Tensor::randn(0f64, 1., (5, 4), &dev)?, None)?;
        let x = Tensor::randn(0f64, 1., (3, 4), &dev)?;
        let a = Tensor::randn(0f64, 1., (2, 4), &dev)?;
        let b = Tensor::randn(0f64, 1., (5, 2), &dev)?;
        let make = |a: &Tensor, b: &Tensor| LoraLinear { base: base.clone(), a: a.clone(), b: b.clone(), scale: 2.0 };
        finite_difference_check(|x| make(&a, &b).forward(x), &x, 1e-6, 1e-6)?;
        finite_difference_check(|a| make(a, &b).forward(&x), &a, 1e-6, 1e-6)?;
        finite_difference_check(|b| make(&a, b).forward(&x), &b, 1e-6, 1e-6)
    }
}
