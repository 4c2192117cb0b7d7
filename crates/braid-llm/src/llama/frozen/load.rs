//! Reads frozen-inference weights from a [`Checkpoint`] by Hugging Face name, keeping
//! ggml-quantized tensors quantized, and reports every missing, unexpected or wrongly
//! shaped tensor at once (placeholders stand in until the report is checked).

use std::collections::BTreeSet;

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::Result;
use braid_nn::linear::QLinear;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use super::fused::Part;

/// A checkpoint reader that records what was asked for.
pub(crate) struct Loader<'a> {
    ckpt: &'a Checkpoint,
    device: Device,
    used: BTreeSet<String>,
    report: LoadReport,
    dequantize: bool,
}

impl<'a> Loader<'a> {
    /// Reads from `ckpt` onto `device`; `dequantize` turns quantized weights into f32.
    pub(crate) fn new(ckpt: &'a Checkpoint, device: &Device, dequantize: bool) -> Self {
        Self { ckpt, device: device.clone(), used: BTreeSet::new(), report: LoadReport::default(), dequantize }
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
        Ok(QTensor::quantize(&Tensor::zeros((out, inp), DType::F32, &self.device)?, GgmlDType::F32)?)
    }

    /// An f32 vector `[n]` (norm weights, biases).
    pub(crate) fn vector(&mut self, name: &str, n: usize) -> Result<Tensor> {
        if self.check(name, &[n]) {
            return self.ckpt.tensor(name, DType::F32, &self.device);
        }
        Ok(Tensor::zeros(n, DType::F32, &self.device)?)
    }

    /// `{prefix}.weight` `(out, in)` and, with `bias`, `{prefix}.bias`.
    pub(crate) fn part(&mut self, prefix: &str, shape: (usize, usize), bias: bool) -> Result<Part> {
        let w = self.qtensor(&format!("{prefix}.weight"), shape)?;
        let b = if bias { Some(self.vector(&format!("{prefix}.bias"), shape.0)?) } else { None };
        Ok((w, b))
    }

    /// A bias-free projection `{prefix}.weight` `(out, in)`.
    pub(crate) fn linear(&mut self, prefix: &str, shape: (usize, usize)) -> Result<QLinear> {
        QLinear::new(self.qtensor(&format!("{prefix}.weight"), shape)?, None)
    }

    /// The report, as an error naming the file when anything was missing, unexpected or
    /// mismatched.
    pub(crate) fn finish(mut self) -> Result<LoadReport> {
        self.report.unexpected = self.ckpt.names().into_iter().filter(|n| !self.used.contains(n)).collect();
        self.report.into_result(self.ckpt.path())
    }
}
