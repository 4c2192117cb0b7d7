//! Position-wise feed-forward network: plain `down(act(up(x)))` (BERT, CLIP) or gated
//! `down(act(gate(x)) * up(x))` (SwiGLU, Shazeer 2020; LLaMA). Any projection may carry
//! LoRA ([`Mlp::new_with_lora`]; PEFT `lora.Linear`).

use braid_core::{Error, Result};
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::{Activation, LoraSpec, Proj};

/// Widths and choices of an [`Mlp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    /// Input and output width.
    pub hidden: usize,
    /// Inner width.
    pub intermediate: usize,
    /// Nonlinearity (on the gate branch when gated).
    pub activation: Activation,
    /// SwiGLU-style gating with a third projection.
    pub gated: bool,
    /// Biases on the projections.
    pub bias: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: 768,
            intermediate: 3072,
            activation: Activation::Gelu,
            gated: false,
            bias: true,
        }
    }
}

/// Checkpoint names of the projections, relative to the MLP's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpNames {
    /// Gate projection (gated MLPs only).
    pub gate: Option<&'static str>,
    /// Projection up to the inner width.
    pub up: &'static str,
    /// Projection back down.
    pub down: &'static str,
}

impl MlpNames {
    /// LLaMA: `gate_proj`, `up_proj`, `down_proj`.
    pub const LLAMA: Self = Self { gate: Some("gate_proj"), up: "up_proj", down: "down_proj" };
    /// Meta's LLaMA layout (OneLLM): `w1` the gate, `w3` up, `w2` down.
    pub const META: Self = Self { gate: Some("w1"), up: "w3", down: "w2" };
    /// CLIP, ViT-style: `fc1`, `fc2`.
    pub const CLIP: Self = Self { gate: None, up: "fc1", down: "fc2" };
    /// BERT, relative to the layer: `intermediate.dense`, `output.dense`.
    pub const BERT: Self = Self { gate: None, up: "intermediate.dense", down: "output.dense" };
}

/// A plain or gated feed-forward network.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate: Option<Proj>,
    up: Proj,
    down: Proj,
    activation: Activation,
    names: MlpNames,
}

impl Mlp {
    /// Builds under `vb`; a gated config needs `names.gate`.
    pub fn new(cfg: MlpConfig, names: MlpNames, vb: VarBuilder) -> Result<Self> {
        Self::new_with_lora(cfg, names, vb, None)
    }

    /// As [`Self::new`], wrapping the projections `lora` targets with LoRA (variables under
    /// `lora.vb`, which sits at the same position as `vb`).
    pub fn new_with_lora(
        cfg: MlpConfig,
        names: MlpNames,
        vb: VarBuilder,
        lora: Option<&LoraSpec>,
    ) -> Result<Self> {
        let (hidden, inner, bias) = (cfg.hidden, cfg.intermediate, cfg.bias);
        let gate = match (cfg.gated, names.gate) {
            (false, _) => None,
            (true, Some(name)) => Some(Proj::new(hidden, inner, bias, &vb, name, lora)?),
            (true, None) => {
                return Err(Error::config("mlp.gated", "gated MLP but no gate name given"))
            }
        };
        Ok(Self {
            gate,
            up: Proj::new(hidden, inner, bias, &vb, names.up, lora)?,
            down: Proj::new(inner, hidden, bias, &vb, names.down, lora)?,
            activation: cfg.activation,
            names,
        })
    }

    /// The projections by checkpoint name (gate if gated, up, down), for merging and export.
    pub fn projections(&self) -> Vec<(&'static str, &Proj)> {
        let gate = self.names.gate.zip(self.gate.as_ref());
        gate.into_iter().chain([(self.names.up, &self.up), (self.names.down, &self.down)]).collect()
    }

    /// x: [..., hidden] -> [..., hidden]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let inner = match &self.gate {
            Some(gate) => {
                let (g, u) = (gate.forward(x)?, self.up.forward(x)?);
                if self.activation == Activation::Silu && crate::fused::applies(&[&g, &u]) {
                    crate::fused::silu_mul(&g, &u)?
                } else {
                    (self.activation.forward(&g)? * u)?
                }
            }
            None => self.activation.forward(&self.up.forward(x)?)?,
        };
        self.down.forward(&inner)
    }
}

impl Module for Mlp {
    /// x: [..., hidden] -> [..., hidden]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Mlp::forward(self, x).map_err(candle_core::Error::wrap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::{check_param_grads, finite_difference_check, varmap_tensors};
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    fn cfg(gated: bool, activation: Activation) -> MlpConfig {
        MlpConfig { hidden: 6, intermediate: 10, activation, gated, bias: !gated }
    }

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("mlp")?;
        let x = f.get("x")?;
        let plain =
            Mlp::new(cfg(false, Activation::QuickGelu), MlpNames::CLIP, f.vb().pp("plain"))?;
        fixtures::check(&plain.forward(&x)?, &f.get("plain_out")?, "plain mlp")?;
        let gated = Mlp::new(cfg(true, Activation::Silu), MlpNames::LLAMA, f.vb().pp("gated"))?;
        fixtures::check(&gated.forward(&x)?, &f.get("gated_out")?, "gated mlp")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let x = Tensor::randn(0f64, 1., (2, 6), &Device::Cpu)?;
        for (c, names) in [
            (cfg(false, Activation::Gelu), MlpNames::BERT),
            (cfg(true, Activation::Silu), MlpNames::LLAMA),
        ] {
            let vm = VarMap::new();
            let mlp = Mlp::new(c, names, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
            finite_difference_check(|x| mlp.forward(x), &x, 1e-6, 1e-5)?;
            let build = |vb: VarBuilder| Mlp::new(c, names, vb);
            check_param_grads(&varmap_tensors(&vm)?, build, |m| m.forward(&x), 1e-6, 1e-5)?;
        }
        Ok(())
    }
}
