//! Small differentiable pieces the fusion objectives share: gradient reversal, MSE,
//! binary cross-entropy on logits, InfoNCE, and a two-layer MLP.

use braid_core::Result;
use braid_nn::Linear;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

/// Identity forward, gradient times `-1` backward (Ganin & Lempitsky 2015): what lies
/// before it learns to fool what lies after it, in one optimiser. Written as
/// `2 * stop_grad(x) - x`, so it needs no custom backward.
pub fn grad_reverse(x: &Tensor) -> Result<Tensor> {
    Ok(((x.detach() * 2.0)? - x)?)
}

/// Mean squared error over every element.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.mean_all()?)
}

/// Mean of `softplus(-x)` (target 1) or `softplus(x)` (target 0): PyTorch's
/// `binary_cross_entropy_with_logits` against a constant target.
pub fn bce_logits(x: &Tensor, target_one: bool) -> Result<Tensor> {
    let z = if target_one { x.neg()? } else { x.clone() };
    // softplus(z) = max(z, 0) + log(1 + exp(-|z|)), stable for large |z|.
    let sp = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(sp.mean_all()?)
}

/// Symmetric InfoNCE between two batches of vectors (row `i` of `a` matches row `i` of
/// `b`), cosine similarities over `temperature` (CLIP's loss).
pub fn info_nce(a: &Tensor, b: &Tensor, temperature: f64) -> Result<Tensor> {
    let (a, b) = (l2_normalise(a)?, l2_normalise(b)?);
    let logits = (a.matmul(&b.t()?)? / temperature)?;
    let n = logits.dim(0)?;
    let targets = Tensor::arange(0u32, n as u32, logits.device())?;
    let ab = braid_nn::cross_entropy(&logits, &targets, None)?;
    let ba = braid_nn::cross_entropy(&logits.t()?, &targets, None)?;
    Ok(((ab + ba)? / 2.0)?)
}

fn l2_normalise(x: &Tensor) -> Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?;
    Ok(x.broadcast_div(&norm)?)
}

/// One linear layer per input, `in = dims[i]` -> `out`, under `NAME.i`.
pub fn per_input_linear(
    dims: &[usize],
    out: usize,
    name: &str,
    vb: &VarBuilder,
) -> Result<Vec<Linear>> {
    dims.iter()
        .enumerate()
        .map(|(i, &d)| Linear::new(d, out, true, vb.pp(format!("{name}.{i}"))))
        .collect()
}

/// `Linear -> ReLU -> Linear` (variables `0.*` and `1.*`).
#[derive(Debug, Clone)]
pub struct Mlp2 {
    a: Linear,
    b: Linear,
}

impl Mlp2 {
    /// in -> hidden -> out.
    pub fn new(input: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            a: Linear::new(input, hidden, true, vb.pp("0"))?,
            b: Linear::new(hidden, out, true, vb.pp("1"))?,
        })
    }

    /// x: [..., in] -> [..., out]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.b.forward(&self.a.forward(x)?.relu()?)?)
    }
}

/// Softmax over dim 1 of `scores` `[batch, m]` restricted to the columns `present` marks;
/// the others get weight 0.
pub fn masked_softmax(scores: &Tensor, present: &[bool]) -> Result<Tensor> {
    let mask: Vec<f32> = present.iter().map(|&p| if p { 0.0 } else { -1e9 }).collect();
    let mask = Tensor::new(mask.as_slice(), scores.device())?.to_dtype(DType::F32)?.unsqueeze(0)?;
    braid_nn::softmax(&scores.broadcast_add(&mask)?, 1)
}
