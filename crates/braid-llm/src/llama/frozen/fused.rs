//! Projections that read the same input, stacked into one weight so the input is
//! quantized and dispatched once (q/k/v, gate/up), as llama.cpp's fused QKV tensors do.
//! Parts with LoRA keep the fusion: their updates are added to the fused output
//! ([`Projection`]).

use braid_core::{Error, Result};
use braid_nn::linear::QLinear;
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Tensor, D};

use super::lora::{LoraPair, Projection};

/// A weight `[out, in]`, an optional bias `[out]` and an optional LoRA update.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) weight: QTensor,
    pub(crate) bias: Option<Tensor>,
    pub(crate) lora: Option<LoraPair>,
}

/// Several projections of one input; consecutive parts of one ggml type share a matmul.
#[derive(Debug, Clone)]
pub(crate) struct Fused {
    groups: Vec<(Projection, Vec<usize>)>,
}

/// Stacks the rows of same-typed weights (rows are independent in every ggml type).
fn stack(parts: &[Part]) -> Result<QLinear> {
    let [first, ..] = parts else { return Err(Error::Invalid("nothing to stack".into())) };
    if parts.len() == 1 {
        let w = &first.weight;
        let q = QTensor::new(
            QStorage::from_data(w.data()?, &w.device(), w.dtype())?,
            w.shape().clone(),
        )?;
        return QLinear::new(q, first.bias.clone());
    }
    let in_dim = first.weight.shape().dims2()?.1;
    let (mut bytes, mut rows, mut biases) = (Vec::new(), 0, Vec::new());
    for Part { weight: w, bias: b, .. } in parts {
        let (out, _) = w.shape().dims2()?;
        bytes.extend_from_slice(&w.data()?);
        rows += out;
        biases.push(match b {
            Some(b) => b.clone(),
            None => Tensor::zeros(out, candle_core::DType::F32, &w.device())?,
        });
    }
    let any_bias = parts.iter().any(|p| p.bias.is_some());
    let storage = QStorage::from_data(
        std::borrow::Cow::Owned(bytes),
        &first.weight.device(),
        first.weight.dtype(),
    )?;
    let bias = if any_bias { Some(Tensor::cat(&biases, 0)?) } else { None };
    QLinear::new(QTensor::new(storage, (rows, in_dim))?, bias)
}

/// One matmul over same-typed `parts`, their LoRA updates added to its output.
fn group(parts: &[Part]) -> Result<(Projection, Vec<usize>)> {
    let sizes = parts
        .iter()
        .map(|p| p.weight.shape().dims2().map(|d| d.0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let loras: Vec<(usize, Option<&LoraPair>)> =
        sizes.iter().zip(parts).map(|(&n, p)| (n, p.lora.as_ref())).collect();
    Ok((Projection::new(stack(parts)?, &loras)?, sizes))
}

impl Fused {
    /// Groups `parts` (in order) into as few matmuls as their types allow.
    pub(crate) fn new(parts: Vec<Part>) -> Result<Self> {
        let mut groups = Vec::new();
        let mut start = 0;
        for i in 1..=parts.len() {
            if i == parts.len() || parts[i].weight.dtype() != parts[start].weight.dtype() {
                groups.push(group(&parts[start..i])?);
                start = i;
            }
        }
        Ok(Self { groups })
    }

    /// x: [..., in] -> one tensor [..., out_i] per part, in order
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::new();
        for (proj, sizes) in &self.groups {
            let y = proj.forward(x)?;
            if sizes.len() == 1 {
                outs.push(y);
                continue;
            }
            let mut at = 0;
            for &n in sizes {
                outs.push(y.narrow(D::Minus1, at, n)?);
                at += n;
            }
        }
        Ok(outs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_core::Device;

    #[test]
    fn stacked_parts_equal_separate_matmuls() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 64), &dev)?;
        let w: Vec<Tensor> = [16usize, 8, 8]
            .iter()
            .map(|&o| Tensor::randn(0f32, 1., (o, 64), &dev))
            .collect::<candle_core::Result<_>>()?;
        let b = Tensor::randn(0f32, 1., 8, &dev)?;
        let q = |t: &Tensor, dt| QTensor::quantize(t, dt);
        let part = |weight, bias| Part { weight, bias, lora: None };
        let parts = vec![
            part(q(&w[0], GgmlDType::Q8_0)?, None),
            part(q(&w[1], GgmlDType::Q8_0)?, Some(b.clone())),
            part(q(&w[2], GgmlDType::Q4_1)?, None),
        ];
        let fused = Fused::new(parts)?;
        assert_eq!(fused.groups.len(), 2);
        let outs = fused.forward(&x)?;
        let want = [
            QLinear::new(q(&w[0], GgmlDType::Q8_0)?, None)?.forward(&x)?,
            QLinear::new(q(&w[1], GgmlDType::Q8_0)?, Some(b))?.forward(&x)?,
            QLinear::new(q(&w[2], GgmlDType::Q4_1)?, None)?.forward(&x)?,
        ];
        for (o, w) in outs.iter().zip(want.iter()) {
            let diff = (o - w)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "{diff}");
        }
        Ok(())
    }
}
