//! Affine map `y = x W^T + b`, weight laid out `[out, in]` as in PyTorch's `nn.Linear`:
//! [`Linear`] (differentiable) and [`QLinear`] (frozen, ggml-quantized weights multiplied
//! by candle's `QMatMul`, which has no backward pass; llama.cpp `ggml_mul_mat`).

use braid_core::{Error, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

/// A fully connected layer with weight `[out, in]` ("weight") and optional bias `[out]` ("bias").
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Builds from `vb`, initialising missing variables like PyTorch (uniform in
    /// `±1/sqrt(in_dim)`).
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
        let bias = if bias { Some(vb.get_with_hints(out_dim, "bias", init)?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Wraps existing tensors: `weight [out, in]`, `bias [out]`.
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, _) = weight.dims2()?;
        if let Some(b) = &bias {
            if b.dims() != [out_dim] {
                return Err(Error::shape("linear bias", &[out_dim], b.dims()));
            }
        }
        Ok(Self { weight, bias })
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, `[out]`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }
}

impl Module for Linear {
    /// x: [..., in] -> [..., out]
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // One 2-D matmul over all leading dims rather than a batched one per sample.
        let mut dims = x.dims().to_vec();
        let in_dim = dims.pop().unwrap_or(0);
        dims.push(self.weight.dim(0)?);
        let x2 = x.reshape(((), in_dim))?;
        let y = if crate::frozen_matmul::frozen_applies(&x2, &self.weight) {
            crate::frozen_matmul::frozen_matmul(&x2, &self.weight)?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        let y = y.reshape(dims)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// A frozen linear layer for inference: weight `[out, in]` kept in its stored ggml type
/// (Q4_1, Q8_0, ...; F32/F16 become a dense matmul) and an optional f32 bias `[out]`.
/// Gradients do not pass through it: use [`Linear`] wherever they must.
///
/// Q4_1 weights (`d * q + m` per block of 32) are held as Q4_0 (`d * (q - 8)`, the same
/// bytes without `m`) plus one offset `m + 8d` per block, `y = Q4_0(W) x + offsets . blocksum(x)`:
/// exact, and candle's Q4_0 kernel is vectorised where its Q4_1 kernel is scalar.
#[derive(Debug, Clone)]
pub struct QLinear {
    weight: QMatMul,
    bias: Option<Tensor>,
    /// Per-block offsets `[in / 32, out]` of a Q4_1 weight split into Q4_0.
    offsets: Option<Tensor>,
    in_dim: usize,
    out_dim: usize,
}

/// Bytes per ggml block: Q4_1 `{d: f16, m: f16, qs: [u8; 16]}`, Q4_0 `{d: f16, qs: [u8; 16]}`.
const Q4_1_BLOCK: usize = 20;

/// A Q4_1 weight `[out, in]` as a Q4_0 weight and block offsets `[in / 32, out]`.
fn split_q4_1(w: &QTensor) -> Result<(QTensor, Tensor)> {
    let (out, k) = w.shape().dims2()?;
    let dev = w.device();
    let data = w.data()?;
    let mut bytes = Vec::with_capacity(data.len() / Q4_1_BLOCK * 18);
    for block in data.chunks_exact(Q4_1_BLOCK) {
        bytes.extend_from_slice(&block[..2]);
        bytes.extend_from_slice(&block[4..]);
    }
    let q0 = QTensor::new(
        QStorage::from_data(std::borrow::Cow::Owned(bytes), &dev, GgmlDType::Q4_0)?,
        (out, k),
    )?;
    // Every element of a block differs by the same m + 8d between the two readings.
    let diff = (w.dequantize(&dev)? - q0.dequantize(&dev)?)?;
    let offsets = diff.reshape((out, k / 32, 32))?.mean(2)?.t()?.contiguous()?;
    Ok((q0, offsets))
}

impl QLinear {
    /// Wraps a quantized weight `[out, in]` and an optional bias `[out]`.
    pub fn new(weight: QTensor, bias: Option<Tensor>) -> Result<Self> {
        if weight.dtype() == GgmlDType::Q4_1 {
            let (q0, offsets) = split_q4_1(&weight)?;
            let mut layer = Self::from_qmatmul(QMatMul::from_qtensor(q0)?, bias)?;
            layer.offsets = Some(offsets);
            return Ok(layer);
        }
        Self::from_qmatmul(QMatMul::from_qtensor(weight)?, bias)
    }

    /// Wraps a weight already behind a `QMatMul` (shared, e.g. with a tied embedding).
    pub fn from_qmatmul(weight: QMatMul, bias: Option<Tensor>) -> Result<Self> {
        let (out_dim, in_dim) = match &weight {
            QMatMul::QTensor(t) => t.shape().dims2()?,
            QMatMul::Tensor(w) | QMatMul::TensorF16(w) => w.dims2()?,
        };
        if let Some(b) = &bias {
            if b.dims() != [out_dim] {
                return Err(Error::shape("quantized linear bias", &[out_dim], b.dims()));
            }
        }
        Ok(Self { weight, bias, offsets: None, in_dim, out_dim })
    }

    /// The weight.
    pub fn weight(&self) -> &QMatMul {
        &self.weight
    }

    /// A frozen copy of a dense layer (no quantization: same numbers, no gradient).
    pub fn from_linear(linear: &Linear) -> Result<Self> {
        let weight = QMatMul::Tensor(linear.weight().detach());
        let bias = linear.bias().map(Tensor::detach);
        Ok(Self { weight, bias, offsets: None, in_dim: linear.in_dim(), out_dim: linear.out_dim() })
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// x: [..., in] -> [..., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims.pop();
        dims.push(self.out_dim);
        let x2 = x.reshape(((), self.in_dim))?;
        let mut y = match &self.weight {
            QMatMul::QTensor(_) => self.weight.forward(&x2.contiguous()?)?,
            QMatMul::Tensor(w) | QMatMul::TensorF16(w) => {
                x2.matmul(&w.to_dtype(x.dtype())?.t()?)?
            }
        };
        if let Some(off) = &self.offsets {
            let sums = x2.reshape(((), self.in_dim / 32, 32))?.sum(2)?;
            y = (y + sums.matmul(off)?)?;
        }
        let y = y.reshape(dims)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use crate::gradcheck::finite_difference_check;
    use candle_core::{DType, Device};

    #[test]
    fn matches_pytorch() -> Result<()> {
        let f = fixtures::load("linear")?;
        let layer = Linear::new(6, 5, true, f.vb().pp("layer"))?;
        fixtures::check(&layer.forward(&f.get("x")?)?, &f.get("y")?, "linear")?;
        f.assert_all_used()
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1., (2, 3, 4), &dev)?;
        let w = Tensor::randn(0f64, 1., (5, 4), &dev)?;
        let b = Tensor::randn(0f64, 1., 5, &dev)?;
        let fwd = |x: &Tensor, w: &Tensor, b: &Tensor| -> Result<Tensor> {
            Ok(Linear::from_weights(w.clone(), Some(b.clone()))?.forward(x)?)
        };
        finite_difference_check(|x| fwd(x, &w, &b), &x, 1e-6, 1e-6)?;
        finite_difference_check(|w| fwd(&x, w, &b), &w, 1e-6, 1e-6)?;
        finite_difference_check(|b| fwd(&x, &w, b), &b, 1e-6, 1e-6)?;
        assert_eq!(x.dtype(), DType::F64);
        Ok(())
    }

    #[test]
    fn quantized_matches_dequantized_dense() -> Result<()> {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1., (8, 64), &dev)?;
        let b = Tensor::randn(0f32, 1., 8, &dev)?;
        let x = Tensor::randn(0f32, 1., (2, 3, 64), &dev)?;
        let q = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        let dense = Linear::from_weights(q.dequantize(&dev)?, Some(b.clone()))?.forward(&x)?;
        let ql = QLinear::new(q, Some(b))?;
        let y = ql.forward(&x)?;
        assert_eq!(y.dims(), &[2, 3, 8]);
        // Q8_0 also rounds the activations to 8 bits.
        let diff = (y - &dense)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 0.3, "{diff}");
        let q41 = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let dense = Linear::from_weights(q41.dequantize(&dev)?, None)?.forward(&x)?;
        let plain = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4_1)?)?.forward(&x)?;
        let split = QLinear::new(q41, None)?.forward(&x)?;
        let max_diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?)
        };
        // Both round activations to the same 8-bit values; the split form sums them exactly.
        let (to_dense, to_plain) = (max_diff(&split, &dense)?, max_diff(&split, &plain)?);
        assert!(
            to_dense < 0.3 && to_plain < to_dense,
            "q4_1 split: {to_dense} from dense, {to_plain} from Q4_1 kernel"
        );
        let exact = QLinear::from_linear(&Linear::from_weights(w.clone(), None)?)?.forward(&x)?;
        let want = Linear::from_weights(w, None)?.forward(&x)?;
        assert_eq!(exact.flatten_all()?.to_vec1::<f32>()?, want.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }
}
