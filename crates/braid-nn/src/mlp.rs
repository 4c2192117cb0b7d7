//! Position-wise feed-forward network: plain `down(act(up(x)))` (BERT, CLIP) or gated
//! `down(act(gate(x)) * up(x))` (SwiGLU, Shazeer 2020; LLaMA), the gate either its own
//! projection or the first half of a stacked one (GLM's `gate_up_proj`; reference:
//! `transformers.models.glm.modeling_glm.GlmMLP`). Any projection may carry LoRA
//! ([`Mlp::new_with_lora`]; PEFT `lora.Linear`).

use braid_core::{Error, Result};
use candle_core::{Module, Tensor, D};
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
    /// Gate projection (gated MLPs only; `None` when `stacked`).
    pub gate: Option<&'static str>,
    /// Projection up to the inner width.
    pub up: &'static str,
    /// A gated MLP whose `up` projection holds the gate's rows, then the up rows
    /// (`[2 * intermediate, hidden]`: GLM's `gate_up_proj`, ChatGLM's `dense_h_to_4h`).
    pub stacked: bool,
    /// Projection back down.
    pub down: &'static str,
}

impl MlpNames {
    /// LLaMA: `gate_proj`, `up_proj`, `down_proj`.
    pub const LLAMA: Self =
        Self { gate: Some("gate_proj"), up: "up_proj", down: "down_proj", stacked: false };
    /// GLM: `gate_up_proj` (gate rows, then up rows), `down_proj`.
    pub const GLM: Self = Self { gate: None, up: "gate_up_proj", down: "down_proj", stacked: true };
    /// Meta's LLaMA layout (OneLLM): `w1` the gate, `w3` up, `w2` down.
    pub const META: Self = Self { gate: Some("w1"), up: "w3", down: "w2", stacked: false };
    /// CLIP, ViT-style: `fc1`, `fc2`.
    pub const CLIP: Self = Self { gate: None, up: "fc1", down: "fc2", stacked: false };
    /// BERT, relative to the layer: `intermediate.dense`, `output.dense`.
    pub const BERT: Self =
        Self { gate: None, up: "intermediate.dense", down: "output.dense", stacked: false };
}

/// A plain or gated feed-forward network.
#[derive(Debug, Clone)]
pub struct Mlp {
    gate: Option<Proj>,
    up: Proj,
    down: Proj,
    activation: Activation,
    names: MlpNames,
    /// Inner width (half of `up`'s output when the gate is stacked on it).
    inner: usize,
}

impl Mlp {
    /// Every projection, by its name, for re-parameterising them in place.
    pub fn projections_mut(&mut self) -> Vec<(&'static str, &mut Proj)> {
        let n = self.names;
        let mut out = Vec::with_capacity(3);
        if let (Some(name), Some(gate)) = (n.gate, self.gate.as_mut()) {
            out.push((name, gate));
        }
        out.push((n.up, &mut self.up));
        out.push((n.down, &mut self.down));
        out
    }

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
        let gate = match (cfg.gated, names.gate, names.stacked) {
            (false, _, true) => {
                return Err(Error::config("mlp.gated", "a stacked gate needs a gated MLP"))
            }
            (false, _, false) | (true, None, true) => None,
            (true, Some(name), false) => Some(Proj::new(hidden, inner, bias, &vb, name, lora)?),
            (true, _, _) => {
                return Err(Error::config(
                    "mlp.gated",
                    "a gated MLP needs exactly one of a gate name and a stacked gate",
                ))
            }
        };
        let up_rows = if names.stacked { 2 * inner } else { inner };
        Ok(Self {
            gate,
            up: Proj::new(hidden, up_rows, bias, &vb, names.up, lora)?,
            down: Proj::new(inner, hidden, bias, &vb, names.down, lora)?,
            activation: cfg.activation,
            names,
            inner,
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
            Some(gate) => self.gated(&gate.forward(x)?, &self.up.forward(x)?)?,
            None if self.names.stacked => {
                let gu = self.up.forward(x)?;
                let n = self.inner;
                self.gated(&gu.narrow(D::Minus1, 0, n)?, &gu.narrow(D::Minus1, n, n)?)?
            }
            None => self.activation.forward(&self.up.forward(x)?)?,
        };
        self.down.forward(&inner)
    }

    /// `act(g) * u`, fused for SiLU where a gradient is needed on the CPU.
    fn gated(&self, g: &Tensor, u: &Tensor) -> Result<Tensor> {
        if self.activation == Activation::Silu && crate::fused::applies(&[g, u]) {
            return Ok(crate::fused::silu_mul(g, u)?);
        }
        Ok((self.activation.forward(g)? * u)?)
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
            (cfg(true, Activation::Silu), MlpNames::GLM),
        ] {
            let vm = VarMap::new();
            let mlp = Mlp::new(c, names, VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu))?;
            finite_difference_check(|x| mlp.forward(x), &x, 1e-6, 1e-5)?;
            let build = |vb: VarBuilder| Mlp::new(c, names, vb);
            check_param_grads(&varmap_tensors(&vm)?, build, |m| m.forward(&x), 1e-6, 1e-5)?;
        }
        Ok(())
    }

    #[test]
    fn stacked_gate_equals_separate_gate_and_up() -> Result<()> {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let c = cfg(true, Activation::Silu);
        let sep = Mlp::new(c, MlpNames::LLAMA, VarBuilder::from_varmap(&vm, DType::F64, &dev))?;
        let t = varmap_tensors(&vm)?;
        let gate_up = Tensor::cat(&[&t["gate_proj.weight"], &t["up_proj.weight"]], 0)?;
        let stacked_weights: std::collections::HashMap<String, Tensor> = [
            ("gate_up_proj.weight".to_string(), gate_up),
            ("down_proj.weight".to_string(), t["down_proj.weight"].clone()),
        ]
        .into();
        let vb = VarBuilder::from_tensors(stacked_weights, DType::F64, &dev);
        let stacked = Mlp::new(c, MlpNames::GLM, vb)?;
        let x = Tensor::randn(0f64, 1., (2, 3, 6), &dev)?;
        let d = (sep.forward(&x)? - stacked.forward(&x)?)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(d < 1e-12, "{d}");
        let names: Vec<_> = stacked.projections().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["gate_up_proj", "down_proj"]);
        let bad = MlpNames { gate: Some("gate_proj"), ..MlpNames::GLM };
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &dev);
        assert!(Mlp::new(c, bad, vb).unwrap_err().to_string().contains("exactly one"));
        Ok(())
    }
}
