//! LoRA on the frozen decoder's projections (Hu et al. 2021): each targeted projection
//! computes `base(x) + scale * (x A^T) B^T` with `scale = alpha / r`, PEFT's
//! `lora.Linear.forward` (`peft/tuners/lora/layer.py`: `result + lora_B(lora_A(x)) *
//! scaling`) and `braid_nn::LoraLinear`'s maths. The base stays quantized; A and B are
//! dense f32, read once (a snapshot: later changes to a trainable map are not seen).
//!
//! A fused projection (q/k/v, gate/up) keeps its one base matmul: its parts' A are
//! stacked into `[sum r, in]` (one small matmul for all parts), each part's slice of
//! that is multiplied by its own B, and the updates, side by side, are added to the
//! fused output before it is split.

use std::collections::{BTreeSet, HashMap};

use braid_core::checkpoint::LoadReport;
use braid_core::{Error, Result};
use braid_nn::linear::QLinear;
use braid_nn::{LoraConfig, LoraSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

/// One projection's update: A `[r, in]` and B `[out, r]` with the scale folded into B.
#[derive(Debug, Clone)]
pub(crate) struct LoraPair {
    a: Tensor,
    b: Tensor,
}

/// Reads LoRA A and B by module path from a name -> tensor map, with the targets matched
/// as the trainable body matches them, and records every missing, unexpected or wrongly
/// shaped tensor.
pub(crate) struct LoraReader<'a> {
    tensors: &'a HashMap<String, Tensor>,
    spec: LoraSpec<'static>,
    device: Device,
    used: BTreeSet<String>,
    report: LoadReport,
}

impl<'a> LoraReader<'a> {
    /// Reads from `tensors` (names `{module}.lora_A.weight`, `{module}.lora_B.weight`) for
    /// the modules `targets` names (PEFT's `target_modules` rule), onto `device`.
    pub(crate) fn new(
        tensors: &'a HashMap<String, Tensor>,
        cfg: LoraConfig,
        targets: &[&str],
        device: &Device,
    ) -> Result<Self> {
        if cfg.rank == 0 {
            return Err(Error::config("lora.rank", "must be at least 1"));
        }
        // Only the matching rule of the spec is used; its VarBuilder never reads.
        let spec = LoraSpec::new(cfg, targets, VarBuilder::zeros(DType::F32, device));
        Ok(Self {
            tensors,
            spec,
            device: device.clone(),
            used: BTreeSet::new(),
            report: LoadReport::default(),
        })
    }

    /// `name` as f32 on the device when present with shape `want`; records the problem otherwise.
    fn get(&mut self, name: String, want: [usize; 2]) -> Result<Option<Tensor>> {
        let found = self.tensors.get(&name);
        self.used.insert(name.clone());
        match found {
            None => {
                self.report.missing.push(name);
                Ok(None)
            }
            Some(t) if t.dims() != want => {
                self.report.mismatched.push((name, want.to_vec(), t.dims().to_vec()));
                Ok(None)
            }
            Some(t) => {
                self.report.used += 1;
                self.report.total_params += t.elem_count();
                Ok(Some(t.detach().to_dtype(DType::F32)?.to_device(&self.device)?))
            }
        }
    }

    /// The update of the projection at `path` (`model.layers.0.self_attn.q_proj`), shape
    /// `(out, in)`, when a target names it; None when none does or (recorded) its tensors
    /// do not fit.
    pub(crate) fn pair(
        &mut self,
        path: &str,
        (out, inp): (usize, usize),
    ) -> Result<Option<LoraPair>> {
        let (parent, module) = path.rsplit_once('.').unwrap_or(("", path));
        if !self.spec.pp(parent).targets(module) {
            return Ok(None);
        }
        let r = self.spec.config.rank;
        let a = self.get(format!("{path}.lora_A.weight"), [r, inp])?;
        let b = self.get(format!("{path}.lora_B.weight"), [out, r])?;
        let scale = self.spec.config.alpha / r as f64;
        match (a, b) {
            (Some(a), Some(b)) => Ok(Some(LoraPair { a, b: (b * scale)? })),
            _ => Ok(None),
        }
    }

    /// The report, as an error naming every missing, unexpected or mismatched LoRA tensor
    /// (`what` says whose LoRA it is).
    pub(crate) fn finish(mut self, what: &str) -> Result<LoadReport> {
        let mut unexpected: Vec<String> =
            self.tensors.keys().filter(|n| !self.used.contains(*n)).cloned().collect();
        unexpected.sort();
        self.report.unexpected = unexpected;
        self.report.into_result(what)
    }
}

/// The updates of the parts of one (possibly fused) projection, side by side.
#[derive(Debug, Clone)]
struct Delta {
    /// Stacked A, transposed: `[in, sum r]`.
    a_t: Tensor,
    /// Per part: its output rows and, with LoRA, where its rank slice starts and its scaled
    /// B, transposed `[r, out]`.
    parts: Vec<(usize, Option<(usize, Tensor)>)>,
}

impl Delta {
    /// One update over parts of `out_i` rows each, a part without LoRA getting zeros; None
    /// when no part has LoRA.
    fn stack(parts: &[(usize, Option<&LoraPair>)]) -> Result<Option<Self>> {
        let pairs: Vec<&LoraPair> = parts.iter().filter_map(|(_, p)| *p).collect();
        if pairs.is_empty() {
            return Ok(None);
        }
        let a = Tensor::cat(&pairs.iter().map(|p| &p.a).collect::<Vec<_>>(), 0)?;
        let mut at = 0;
        let mut out = Vec::with_capacity(parts.len());
        for (rows, pair) in parts {
            let Some(p) = pair else {
                out.push((*rows, None));
                continue;
            };
            out.push((*rows, Some((at, p.b.t()?.contiguous()?))));
            at += p.a.dim(0)?;
        }
        Ok(Some(Self { a_t: a.t()?.contiguous()?, parts: out }))
    }

    /// x: [..., in] -> [..., sum out]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let in_dim = self.a_t.dim(0)?;
        if dims.last() != Some(&in_dim) {
            return Err(Error::shape("lora input", &[in_dim], x.dims()));
        }
        dims.pop();
        dims.push(self.parts.iter().map(|(rows, _)| rows).sum());
        let u = x.reshape(((), in_dim))?.matmul(&self.a_t)?;
        // Each rank slice by its own B: a block-diagonal B would stream its zeros from
        // memory at every decoding step (two thirds of the q/k/v B's bytes).
        let mut pieces = Vec::with_capacity(self.parts.len());
        for (rows, part) in &self.parts {
            pieces.push(match part {
                Some((at, b_t)) => u.narrow(1, *at, b_t.dim(0)?)?.contiguous()?.matmul(b_t)?,
                None => Tensor::zeros((u.dim(0)?, *rows), DType::F32, u.device())?,
            });
        }
        let d = match pieces.as_slice() {
            [one] => one.clone(),
            _ => Tensor::cat(&pieces, 1)?,
        };
        Ok(d.reshape(dims)?)
    }
}

/// A frozen projection, its parts' LoRA updates (if any) added to its output.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    linear: QLinear,
    delta: Option<Delta>,
}

impl Projection {
    /// `linear` (parts of `out_i` rows stacked) with the parts' updates, where they have one.
    pub(crate) fn new(linear: QLinear, parts: &[(usize, Option<&LoraPair>)]) -> Result<Self> {
        let out: usize = parts.iter().map(|(o, _)| o).sum();
        if out != linear.out_dim() {
            return Err(Error::shape("lora parts of a projection", &[linear.out_dim()], &[out]));
        }
        Ok(Self { linear, delta: Delta::stack(parts)? })
    }

    /// x: [..., in] -> [..., out]
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear.forward(x)?;
        match &self.delta {
            Some(d) => Ok((y + d.forward(x)?)?),
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};

    fn randn(shape: (usize, usize)) -> Result<Tensor> {
        Ok(Tensor::randn(0f32, 1., shape, &Device::Cpu)?)
    }

    /// The block-diagonal update equals each part's `scale * x A^T B^T` computed alone,
    /// a part without LoRA getting exactly nothing.
    #[test]
    fn stacked_updates_equal_each_parts_own() -> Result<()> {
        let x = Tensor::randn(0f32, 1., (2, 3, 32), &Device::Cpu)?;
        let pairs = [
            LoraPair { a: randn((2, 32))?, b: randn((8, 2))? },
            LoraPair { a: randn((2, 32))?, b: randn((4, 2))? },
        ];
        let w = randn((16, 32))?;
        let linear = QLinear::new(QTensor::quantize(&w, GgmlDType::F32)?, None)?;
        let proj =
            Projection::new(linear, &[(8, Some(&pairs[0])), (4, None), (4, Some(&pairs[1]))])?;
        let y = proj.forward(&x)?;
        let base = x.broadcast_matmul(&w.t()?)?;
        let own = |p: &LoraPair| -> Result<Tensor> {
            Ok(x.broadcast_matmul(&p.a.t()?)?.broadcast_matmul(&p.b.t()?)?)
        };
        let want = Tensor::cat(
            &[
                (base.narrow(2, 0, 8)? + own(&pairs[0])?)?,
                base.narrow(2, 8, 4)?,
                (base.narrow(2, 12, 4)? + own(&pairs[1])?)?,
            ],
            2,
        )?;
        braid_core::testing::assert_close(&y, &want, 1e-4, "stacked lora")?;
        let alone = proj.linear.forward(&x)?.narrow(2, 8, 4)?;
        braid_core::testing::assert_close(&y.narrow(2, 8, 4)?, &alone, 0.0, "part without lora")
    }

    /// Parts of two ggml types (two matmuls), LoRA on one part of each: every part gets its
    /// own quantized output plus its own update.
    #[test]
    fn fused_parts_of_two_types_each_get_their_update() -> Result<()> {
        use super::super::fused::{Fused, Part};
        let x = Tensor::randn(0f32, 1., (1, 2, 64), &Device::Cpu)?;
        let w = [randn((16, 64))?, randn((8, 64))?, randn((8, 64))?];
        let types = [GgmlDType::Q8_0, GgmlDType::Q8_0, GgmlDType::Q4_1];
        let loras = [
            Some(LoraPair { a: randn((3, 64))?, b: randn((16, 3))? }),
            None,
            Some(LoraPair { a: randn((3, 64))?, b: randn((8, 3))? }),
        ];
        let parts = (0..3).map(|i| {
            Ok(Part {
                weight: QTensor::quantize(&w[i], types[i])?,
                bias: None,
                lora: loras[i].clone(),
            })
        });
        let outs = Fused::new(parts.collect::<Result<Vec<_>>>()?)?.forward(&x)?;
        for i in 0..3 {
            let mut want = QLinear::new(QTensor::quantize(&w[i], types[i])?, None)?.forward(&x)?;
            if let Some(p) = &loras[i] {
                want = (want + x.broadcast_matmul(&p.a.t()?)?.broadcast_matmul(&p.b.t()?)?)?;
            }
            braid_core::testing::assert_close(&outs[i], &want, 1e-4, &format!("part {i}"))?;
        }
        Ok(())
    }

    #[test]
    fn parts_not_covering_the_projection_are_a_shape_error() -> Result<()> {
        let linear = QLinear::new(QTensor::quantize(&randn((16, 32))?, GgmlDType::F32)?, None)?;
        let e =
            Projection::new(linear, &[(8, None)]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("lora parts of a projection"), "{e}");
        Ok(())
    }
}
