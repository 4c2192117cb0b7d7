//! Low-rank adaptation (Hu et al. 2021, "LoRA"; reference: Hugging Face PEFT `lora.Linear`,
//! `peft.tuners.lora.model.LoraModel`): `y = base(x) + (alpha / r) * x A^T B^T` with the base
//! frozen.
//!
//! Layers take their projections as [`Proj`]s: plain, or LoRA-wrapped when a [`LoraSpec`]
//! names them. The spec carries its own VarBuilder (the trainable LoRA VarMap) that walks
//! the same module tree as the base VarBuilder, so a LoRA variable is named like its base
//! weight with `lora_A.weight` / `lora_B.weight` in place of `weight`
//! (`model.layers.0.self_attn.q_proj.lora_A.weight`). PEFT's saved adapters add
//! `base_model.model.` in front ([`PEFT_PREFIX`]); savers and loaders add and strip it.

use braid_core::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::{sub, Linear};

/// What PEFT's `save_pretrained` puts before a module path in `adapter_model.safetensors`.
pub const PEFT_PREFIX: &str = "base_model.model";

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
        let a = vb.get_with_hints(
            (cfg.rank, in_dim),
            "lora_A.weight",
            Init::Uniform { lo: -bound, up: bound },
        )?;
        let b = vb.get_with_hints((out_dim, cfg.rank), "lora_B.weight", Init::Const(0.0))?;
        Ok(Self { base, a, b, scale: cfg.alpha / cfg.rank as f64 })
    }

    /// The frozen layer.
    pub fn base(&self) -> &Linear {
        &self.base
    }

    /// The down projection A, `[r, in]`.
    pub fn a(&self) -> &Tensor {
        &self.a
    }

    /// The up projection B, `[out, r]`.
    pub fn b(&self) -> &Tensor {
        &self.b
    }

    /// The update's scale, `alpha / r`.
    pub fn scale(&self) -> f64 {
        self.scale
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
        let w = self.base.weight();
        if crate::fused::applies(&[x, w, &self.a, &self.b]) && !w.track_op() {
            let in_dim = self.base.in_dim();
            let mut dims = x.dims().to_vec();
            dims.pop();
            dims.push(self.base.out_dim());
            let x2 = x.reshape(((), in_dim))?;
            let y =
                crate::fused::lora_linear(&x2, w, &self.a, &self.b, self.scale)?.reshape(dims)?;
            return Ok(match self.base.bias() {
                Some(bias) => y.broadcast_add(bias)?,
                None => y,
            });
        }
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

/// Which projections get LoRA and where their variables live: the LoRA counterpart of a
/// VarBuilder, moved down the module tree in step with the base VarBuilder by [`Self::pp`].
#[derive(Clone)]
pub struct LoraSpec<'a> {
    /// Rank and scale of every update.
    pub config: LoraConfig,
    /// Target module names as in PEFT's `target_modules`: a projection is wrapped when its
    /// full path equals a target or ends with `.target` (`q_proj`, `mlp.down_proj`).
    pub targets: Vec<String>,
    /// The trainable map, at the same position as the base VarBuilder.
    pub vb: VarBuilder<'a>,
}

impl std::fmt::Debug for LoraSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoraSpec({:?}, {:?}, at `{}`)", self.config, self.targets, self.vb.prefix())
    }
}

impl<'a> LoraSpec<'a> {
    /// The seven LLaMA projections PEFT users usually target.
    pub const LLAMA_ALL: [&'static str; 7] =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// The six GLM projections (gate and up stacked in `gate_up_proj`).
    pub const GLM_ALL: [&'static str; 6] =
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"];

    /// A spec over `vb` at the model's root.
    pub fn new(config: LoraConfig, targets: &[&str], vb: VarBuilder<'a>) -> Self {
        Self { config, targets: targets.iter().map(|t| (*t).to_string()).collect(), vb }
    }

    /// The spec one module down (`name` empty: the same position).
    pub fn pp(&self, name: &str) -> Self {
        Self { config: self.config, targets: self.targets.clone(), vb: sub(&self.vb, name) }
    }

    /// Whether the module `name` below this position is a target.
    pub fn targets(&self, name: &str) -> bool {
        let path = sub(&self.vb, name).prefix();
        self.targets.iter().any(|t| path == *t || path.ends_with(&format!(".{t}")))
    }
}

/// A projection inside a layer: a plain [`Linear`], one wrapped with LoRA, or one
/// re-parameterised with another modality's weight (Multimodal Pathway).
#[derive(Debug, Clone)]
pub enum Proj {
    /// No adapter.
    Plain(Linear),
    /// Base plus low-rank update.
    Lora(LoraLinear),
    /// `W + λ W_aux`.
    Pathway(crate::PathwayLinear),
}

impl Proj {
    /// A [`Linear`] `[out, in]` under `sub(vb, name)`, wrapped with LoRA when `lora` targets
    /// `name` (its A and B under `lora.vb` at the same path).
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        vb: &VarBuilder,
        name: &str,
        lora: Option<&LoraSpec>,
    ) -> Result<Self> {
        let base = Linear::new(in_dim, out_dim, bias, sub(vb, name))?;
        match lora {
            Some(spec) if spec.targets(name) => {
                Ok(Self::Lora(LoraLinear::new(base, spec.config, sub(&spec.vb, name))?))
            }
            _ => Ok(Self::Plain(base)),
        }
    }

    /// The LoRA layer, if this projection has one.
    pub fn lora(&self) -> Option<&LoraLinear> {
        match self {
            Self::Lora(l) => Some(l),
            Self::Plain(_) | Self::Pathway(_) => None,
        }
    }

    /// This plain projection re-parameterised as a Multimodal Pathway linear, its W_aux and
    /// λ from `vb` at the projection's own position (see [`crate::PathwayLinear`]).
    pub fn with_pathway(&self, vb: VarBuilder) -> Result<Self> {
        match self {
            Self::Plain(l) => Ok(Self::Pathway(crate::PathwayLinear::new(l.clone(), vb)?)),
            Self::Lora(_) => {
                Err(Error::config("pathway", "a LoRA projection cannot also take a pathway"))
            }
            Self::Pathway(_) => Err(Error::config("pathway", "the projection has one already")),
        }
    }

    /// The equivalent plain layer (LoRA or the pathway folded into the weight, detached).
    pub fn merged(&self) -> Result<Linear> {
        match self {
            Self::Plain(l) => Ok(l.clone()),
            Self::Lora(l) => l.merge(),
            Self::Pathway(l) => l.merge(),
        }
    }

    /// x: [..., in] -> [..., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Plain(l) => Ok(l.forward(x)?),
            Self::Lora(l) => l.forward(x),
            Self::Pathway(l) => l.forward(x),
        }
    }
}

impl Module for Proj {
    /// x: [..., in] -> [..., out]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Proj::forward(self, x).map_err(candle_core::Error::wrap)
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
        braid_core::testing::assert_close(
            &lora.forward(&x)?,
            &lora.merge()?.forward(&x)?,
            1e-5,
            "merge",
        )
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
        let b_var = vm
            .all_vars()
            .into_iter()
            .find(|v| v.dims() == [5, 2])
            .ok_or_else(|| Error::Invalid("B".into()))?;
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
        let make = |a: &Tensor, b: &Tensor| LoraLinear {
            base: base.clone(),
            a: a.clone(),
            b: b.clone(),
            scale: 2.0,
        };
        finite_difference_check(|x| make(&a, &b).forward(x), &x, 1e-6, 1e-6)?;
        finite_difference_check(|a| make(a, &b).forward(&x), &a, 1e-6, 1e-6)?;
        finite_difference_check(|b| make(&a, b).forward(&x), &b, 1e-6, 1e-6)
    }

    #[test]
    fn spec_matches_targets_like_peft() -> Result<()> {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let spec = LoraSpec::new(CFG, &["q_proj", "mlp.down_proj"], vb).pp("model.layers.0");
        assert!(spec.pp("self_attn").targets("q_proj"));
        assert!(!spec.pp("self_attn").targets("k_proj"));
        assert!(spec.pp("mlp").targets("down_proj"));
        // `down_proj` alone would match; `mlp.down_proj` must not match another parent.
        assert!(!spec.pp("other").targets("down_proj"));
        assert!(!spec.pp("self_attn").targets("xq_proj"));
        Ok(())
    }

    #[test]
    fn proj_creates_lora_variables_only_in_the_lora_map() -> Result<()> {
        let (base_vm, lora_vm) = (VarMap::new(), VarMap::new());
        let dev = Device::Cpu;
        let vb = VarBuilder::from_varmap(&base_vm, DType::F32, &dev).pp("attn");
        let spec =
            LoraSpec::new(CFG, &["q_proj"], VarBuilder::from_varmap(&lora_vm, DType::F32, &dev))
                .pp("attn");
        let q = Proj::new(4, 6, true, &vb, "q_proj", Some(&spec))?;
        let k = Proj::new(4, 6, true, &vb, "k_proj", Some(&spec))?;
        assert!(q.lora().is_some() && k.lora().is_none());
        let mut names: Vec<_> = lora_vm
            .data()
            .lock()
            .map_err(|e| Error::Invalid(e.to_string()))?
            .keys()
            .cloned()
            .collect();
        names.sort();
        assert_eq!(names, ["attn.q_proj.lora_A.weight", "attn.q_proj.lora_B.weight"]);
        assert_eq!(base_vm.all_vars().len(), 4);
        let x = Tensor::randn(0f32, 1., (2, 4), &dev)?;
        braid_core::testing::assert_close(
            &q.forward(&x)?,
            &q.merged()?.forward(&x)?,
            1e-6,
            "proj merge",
        )
    }
}
