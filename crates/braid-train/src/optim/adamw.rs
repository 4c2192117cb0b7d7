//! AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019),
//! step for step as `torch.optim.AdamW` (single-tensor path, `amsgrad=False`):
//!
//! ```text
//! t += 1
//! θ ← θ · (1 − lr·λ)                      decoupled weight decay
//! m ← β1·m + (1 − β1)·g
//! v ← β2·v + (1 − β2)·g²
//! θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)   ε outside the square root
//! ```
//!
//! Parameter groups: a variable decays (λ = `weight_decay`) unless [`decays`] says no —
//! biases and norm gains, recognised by rank ≤ 1 or by name, get λ = 0, as in the
//! nanoGPT / transformers `Trainer` grouping. Like PyTorch, a variable without a gradient
//! is skipped and its step counter does not advance; state is created at its first step.

use std::collections::BTreeMap;

use braid_core::Result;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::Grads;

/// AdamW hyper-parameters; defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (the schedule overwrites it each step with [`AdamW::set_lr`]).
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the bias-corrected √v.
    pub eps: f64,
    /// Decoupled weight decay λ for the variables that decay.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2 }
    }
}

/// Whether the variable `name` of rank `rank` gets weight decay: not for rank ≤ 1 tensors
/// (biases, norm gains, scalars such as a learned temperature) nor for names with a
/// `bias` or `norm` component (`ln_1`/`layernorm` included), whatever their rank.
pub fn decays(name: &str, rank: usize) -> bool {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or("");
    let normish = lower.split('.').any(|p| p.contains("norm") || p.starts_with("ln_") || p == "ln");
    rank >= 2 && last != "bias" && !normish
}

/// Per-variable optimiser state.
#[derive(Debug, Clone)]
pub(super) struct ParamState {
    pub(super) step: u64,
    pub(super) exp_avg: Tensor,
    pub(super) exp_avg_sq: Tensor,
}

/// One trainable variable and its group's weight decay.
#[derive(Debug, Clone)]
struct Param {
    var: Var,
    weight_decay: f64,
}

/// AdamW over the variables of a `VarMap` (the trainable components only: freezing is
/// structural, see [`crate::Stage`]).
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    params: BTreeMap<String, Param>,
    pub(super) state: BTreeMap<String, ParamState>,
}

impl AdamW {
    /// AdamW over every variable in `varmap`, grouped by [`decays`].
    pub fn new(varmap: &VarMap, cfg: AdamWConfig) -> Result<Self> {
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        Ok(Self::from_vars(vars.iter().map(|(n, v)| (n.clone(), v.clone())), cfg))
    }

    /// AdamW over named variables, grouped by [`decays`]: for several components' `VarMap`s
    /// at once, their names prefixed by the caller so that they stay unique (the same names
    /// must key the [`Grads`], see [`Grads::from_vars`]).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, Var)>, cfg: AdamWConfig) -> Self {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let wd = if decays(&name, var.rank()) { cfg.weight_decay } else { 0.0 };
                (name, Param { var, weight_decay: wd })
            })
            .collect();
        Self { cfg, params, state: BTreeMap::new() }
    }

    /// The hyper-parameters (with the current learning rate).
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// Sets the learning rate for the next steps (what a scheduler does).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// The weight decay applied to `name`, or None when it is not optimised.
    pub fn weight_decay_of(&self, name: &str) -> Option<f64> {
        self.params.get(name).map(|p| p.weight_decay)
    }

    /// Names of the optimised variables, in order.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.params.keys()
    }

    /// Steps taken by `name` (0 before its first gradient).
    pub fn step_of(&self, name: &str) -> u64 {
        self.state.get(name).map_or(0, |s| s.step)
    }

    /// Fails when a loaded state's moments differ in shape from their variable.
    pub(super) fn check_shapes(&self, state: &BTreeMap<String, ParamState>) -> Result<()> {
        for (name, st) in state {
            if let Some(p) = self.params.get(name) {
                for m in [&st.exp_avg, &st.exp_avg_sq] {
                    if m.dims() != p.var.dims() {
                        return Err(braid_core::Error::shape(
                            format!("optimiser state of {name}"),
                            p.var.dims(),
                            m.dims(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// One optimiser step with `grads` (already accumulated and clipped).
    pub fn step(&mut self, grads: &Grads) -> Result<()> {
        for (name, param) in &self.params {
            let Some(g) = grads.get(name) else { continue };
            let theta = param.var.as_tensor().detach();
            let g = g.detach().to_dtype(theta.dtype())?;
            let st = match self.state.remove(name) {
                Some(st) => st,
                None => ParamState {
                    step: 0,
                    exp_avg: theta.zeros_like()?,
                    exp_avg_sq: theta.zeros_like()?,
                },
            };
            let (next, st) = update(&self.cfg, param.weight_decay, &theta, &g, st)?;
            param.var.set(&next)?;
            self.state.insert(name.clone(), st);
        }
        Ok(())
    }
}

/// One AdamW update of `theta`; returns the new value and state.
fn update(
    cfg: &AdamWConfig,
    wd: f64,
    theta: &Tensor,
    g: &Tensor,
    st: ParamState,
) -> Result<(Tensor, ParamState)> {
    let step = st.step + 1;
    let theta = if wd != 0.0 { theta.affine(1.0 - cfg.lr * wd, 0.0)? } else { theta.clone() };
    let exp_avg = (st.exp_avg.affine(cfg.beta1, 0.0)? + g.affine(1.0 - cfg.beta1, 0.0)?)?;
    let exp_avg_sq =
        (st.exp_avg_sq.affine(cfg.beta2, 0.0)? + g.sqr()?.affine(1.0 - cfg.beta2, 0.0)?)?;
    let bc1 = 1.0 - cfg.beta1.powi(step as i32);
    let bc2 = 1.0 - cfg.beta2.powi(step as i32);
    let denom = exp_avg_sq.sqrt()?.affine(1.0 / bc2.sqrt(), cfg.eps)?;
    let next = (theta - exp_avg.div(&denom)?.affine(cfg.lr / bc1, 0.0)?)?;
    Ok((next, ParamState { step, exp_avg, exp_avg_sq }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Device};
    use candle_nn::Init;

    use super::*;

    #[test]
    fn groups_by_rank_and_name() {
        assert!(decays("fc1.weight", 2));
        assert!(!decays("fc1.bias", 1));
        assert!(!decays("norm.weight", 1));
        assert!(!decays("model.layers.0.input_layernorm.weight", 2));
        assert!(!decays("logit_scale", 0));
    }

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // With m = (1-β1)g and v = (1-β2)g², the bias-corrected step is lr·g/(|g|+ε').
        let varmap = VarMap::new();
        let w = varmap.get((1, 2), "w", Init::Const(1.0), DType::F32, &Device::Cpu).unwrap();
        let cfg = AdamWConfig { lr: 0.1, weight_decay: 0.0, ..Default::default() };
        let mut opt = AdamW::new(&varmap, cfg).unwrap();
        let g = Tensor::new(&[[2f32, -3.0]], &Device::Cpu).unwrap();
        opt.step(&Grads::from_map(BTreeMap::from([("w".into(), g)]))).unwrap();
        let got = w.to_vec2::<f32>().unwrap();
        assert!((got[0][0] - 0.9).abs() < 1e-6 && (got[0][1] - 1.1).abs() < 1e-6, "{got:?}");
        assert_eq!(opt.step_of("w"), 1);
    }

    #[test]
    fn several_varmaps_under_prefixes_and_untouched_without_grad() {
        let (proj, head) = (VarMap::new(), VarMap::new());
        let var = |vm: &VarMap| {
            vm.get((2, 2), "w", Init::Const(1.0), DType::F32, &Device::Cpu).unwrap();
            vm.data().lock().unwrap()["w"].clone()
        };
        let (p, h) = (var(&proj), var(&head));
        let vars = [("projector.w".to_string(), p.clone()), ("head.w".to_string(), h.clone())];
        let mut opt = AdamW::from_vars(vars.clone(), AdamWConfig::default());
        let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
        let grads =
            Grads::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), &loss.backward().unwrap());
        assert_eq!(grads.len(), 1);
        opt.step(&grads).unwrap();
        assert!(p.to_vec2::<f32>().unwrap()[0][0] < 1.0);
        assert_eq!(h.to_vec2::<f32>().unwrap(), vec![vec![1.0; 2]; 2]);
        assert_eq!((opt.step_of("projector.w"), opt.step_of("head.w")), (1, 0));
    }
}
