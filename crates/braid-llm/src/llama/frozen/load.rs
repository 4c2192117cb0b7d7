//! Reads frozen-inference weights from a [`Checkpoint`] by Hugging Face name, keeping
//! ggml-quantized tensors quantized, and reports every missing, unexpected or wrongly
//! shaped tensor at once (placeholders stand in until the report is checked). The shapes
//! come from the config, so placeholders have a budget: past it, or past
//! [`MAX_PROBLEMS`] problems, loading stops with the report so far instead of
//! allocating what an absurd config claims. With a [`LoraReader`], the projections its
//! targets name get their LoRA updates, and every LoRA tensor must be used too.

use std::collections::BTreeSet;

use braid_core::checkpoint::tracker::MAX_PROBLEMS;
use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use braid_nn::linear::QLinear;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::fused::Part;
use super::lora::{LoraPair, LoraReader, Projection};

/// Elements of zeros that may stand in for missing or mismatched tensors (128 MiB of f32).
const PLACEHOLDER_BUDGET: usize = 1 << 25;

/// A checkpoint reader that records what was asked for.
pub(crate) struct Loader<'a> {
    ckpt: &'a Checkpoint,
    device: Device,
    used: BTreeSet<String>,
    report: LoadReport,
    dequantize: bool,
    /// Elements of placeholders made so far.
    placeholders: usize,
    /// Where the projections' LoRA updates come from, if they have any.
    lora: Option<LoraReader<'a>>,
}

impl<'a> Loader<'a> {
    /// Reads from `ckpt` onto `device`; `dequantize` turns quantized weights into f32.
    pub(crate) fn new(ckpt: &'a Checkpoint, device: &Device, dequantize: bool) -> Self {
        let used = BTreeSet::new();
        Self {
            ckpt,
            device: device.clone(),
            used,
            report: LoadReport::default(),
            dequantize,
            placeholders: 0,
            lora: None,
        }
    }

    /// The same, with LoRA updates from `lora` on the projections it targets.
    pub(crate) fn with_lora(mut self, lora: Option<LoraReader<'a>>) -> Self {
        self.lora = lora;
        self
    }

    /// The LoRA update of the projection `prefix`, shape `(out, in)`, if it has one.
    fn lora_pair(&mut self, prefix: &str, shape: (usize, usize)) -> Result<Option<LoraPair>> {
        match &mut self.lora {
            Some(l) => l.pair(prefix, shape),
            None => Ok(None),
        }
    }

    /// Whether `name` is present with shape `want`; records the problem otherwise.
    fn check(&mut self, name: &str, want: &[usize]) -> bool {
        self.used.insert(name.to_string());
        match self.ckpt.shape(name) {
            None => {
                self.report.missing.push(name.to_string());
                false
            }
            Some(got) if got != want => {
                self.report.mismatched.push((name.to_string(), want.to_vec(), got));
                false
            }
            Some(_) => {
                self.report.used += 1;
                self.report.total_params += want.iter().product::<usize>();
                true
            }
        }
    }

    /// `name` in its stored type, shape `(out, in)`.
    pub(crate) fn qtensor(&mut self, name: &str, (out, inp): (usize, usize)) -> Result<QTensor> {
        if self.check(name, &[out, inp]) {
            let q = self.ckpt.qtensor(name, &self.device)?;
            if self.dequantize && q.dtype() != GgmlDType::F32 {
                return Ok(QTensor::quantize(&q.dequantize(&self.device)?, GgmlDType::F32)?);
            }
            return Ok(q);
        }
        self.make_room(out.saturating_mul(inp))?;
        Ok(QTensor::quantize(
            &Tensor::zeros((out, inp), DType::F32, &self.device)?,
            GgmlDType::F32,
        )?)
    }

    /// Counts a placeholder of `n` elements; the report so far as an error once the
    /// placeholders or the problems are over budget.
    fn make_room(&mut self, n: usize) -> Result<()> {
        self.placeholders = self.placeholders.saturating_add(n);
        let problems = self.report.missing.len() + self.report.mismatched.len();
        if self.placeholders <= PLACEHOLDER_BUDGET && problems < MAX_PROBLEMS {
            return Ok(());
        }
        let path = self.ckpt.path().to_path_buf();
        let summary = match self.report.clone().into_result(&path) {
            Err(Error::Load { summary, .. }) => summary,
            _ => String::new(),
        };
        let summary = format!("{summary}; stopped there: the checkpoint does not fit this config");
        Err(Error::Load { path, summary })
    }

    /// An f32 vector `[n]` (norm weights, biases).
    pub(crate) fn vector(&mut self, name: &str, n: usize) -> Result<Tensor> {
        if self.check(name, &[n]) {
            return self.ckpt.tensor(name, DType::F32, &self.device);
        }
        self.make_room(n)?;
        Ok(Tensor::zeros(n, DType::F32, &self.device)?)
    }

    /// `{prefix}.weight` `(out, in)`, with `bias` `{prefix}.bias`, and its LoRA update.
    pub(crate) fn part(&mut self, prefix: &str, shape: (usize, usize), bias: bool) -> Result<Part> {
        let weight = self.qtensor(&format!("{prefix}.weight"), shape)?;
        let bias = if bias { Some(self.vector(&format!("{prefix}.bias"), shape.0)?) } else { None };
        Ok(Part { weight, bias, lora: self.lora_pair(prefix, shape)? })
    }

    /// A bias-free projection `{prefix}.weight` `(out, in)` with its LoRA update, if any.
    pub(crate) fn projection(&mut self, prefix: &str, shape: (usize, usize)) -> Result<Projection> {
        let linear = self.linear(prefix, shape)?;
        let pair = self.lora_pair(prefix, shape)?;
        Projection::new(linear, &[(shape.0, pair.as_ref())])
    }

    /// A bias-free projection `{prefix}.weight` `(out, in)` that LoRA never targets (the
    /// output head).
    pub(crate) fn linear(&mut self, prefix: &str, shape: (usize, usize)) -> Result<QLinear> {
        QLinear::new(self.qtensor(&format!("{prefix}.weight"), shape)?, None)
    }

    /// The checkpoint's report, as an error naming the file when anything was missing,
    /// unexpected or mismatched, then the same for the LoRA tensors.
    pub(crate) fn finish(mut self) -> Result<LoadReport> {
        self.report.unexpected =
            self.ckpt.names().into_iter().filter(|n| !self.used.contains(n)).collect();
        let report = self.report.into_result(self.ckpt.path())?;
        if let Some(lora) = self.lora {
            lora.finish(&format!("LoRA tensors for {}", self.ckpt.path().display()))?;
        }
        Ok(report)
    }
}
