//! Projections that read the same input, stacked into one weight so the input is
//! quantized and dispatched once (q/k/v, gate/up), as llama.cpp's fused QKV tensors do.

use braid_core::{Error, Result};
use braid_nn::linear::QLinear;
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Tensor, D};

/// A weight and an optional bias, `[out, in]` and `[out]`.
pub(crate) type Part = (QTensor, Option<Tensor>);

/// Several projections of one input; consecutive parts of one ggml type share a matmul.
#[derive(Debug, Clone)]
pub(crate) struct Fused {
    groups: Vec<(QLinear, Vec<usize>)>,
}

/// Stacks the rows of same-typed weights (rows are independent in every ggml type).
fn stack(parts: &[Part]) -> Result<QLinear> {
    let [(first, _), ..] = parts else { return Err(Error::Invalid("nothing to stack".into())) };
    if parts.len() == 1 {
        let (w, b) = &parts[0];
        let q = QTensor::new(QStorage::from_data(w.data()?, &w.device(), w.dtype())?, w.shape().clone())?;
        return QLinear::new(q, b.clone());
    }
    let in_dim = first.shape().dims2()?.1;
    let (mut bytes, mut rows, mut biases) = (Vec::new(), 0, Vec::new());
    for (w, b) in parts {
        let (out, _) = w.shape().dims2()?;
        bytes.extend_from_slice(&w.data()?);
        rows += out;
        biases.push(match b {
            Some(b) => b.clone(),
            None => Tensor::zeros(out, candle_core::DType::F32, &w.device())?,
        });
    }
    let any_bias = parts.iter().any(|(_, b)| b.is_some());
    let storage = QStorage::from_data(std::borrow::Cow::Owned(bytes), &first.device(), first.dtype())?;
    let bias = if any_bias { Some(Tensor::cat(&biases, 0)?) } else { None };
    QLinear::new(QTensor::new(storage, (rows, in_dim))?, bias)
}

impl Fused {
    /// Groups `parts` (in order) into as few matmuls as their types allow.
    pub(crate) fn new(parts: Vec<Part>) -> Result<Self> {
        let mut groups: Vec<(QLinear, Vec<usize>)> = Vec::new();
        let mut start = 0;
        for i in 1..=parts.len() {
            if i == parts.len() || parts[i].0.dtype() != parts[start].0.dtype() {
                let sizes = parts[start..i].iter().map(|(w, _)| w.shape().dims2().map(|d| d.0)).collect::<candle_core::Result<_>>()?;
                groups.push((stack(&parts[start..i])?, sizes));
                start = i;
            }
        }
        Ok(Self { groups })
    }

    /// x: [..., in] -> one tensor [..., out_i] per part, in order
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::new();
        for (linear, sizes) in &self.groups {
            let y = linear.forward(x)?;
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
        let w: Vec<Tensor> = [16usize, 8, 8].iter().map(|&o| Tensor::randn(0f32, 1., (o, 64), &dev)).collect::<candle_core::Result<_>>()?;
        let b = Tensor::randn(0f32, 1., 8, &dev)?;
        let q = |t: &Tensor, dt| QTensor::quantize(t, dt);
        let parts = vec![
            (q(&w[0], GgmlDType::Q8_0)?, None),
            (q(&w[1], GgmlDType::Q8_0)?, Some(b.clone())),
            (q(&w[2], GgmlDType::Q4_1)?, None),
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
