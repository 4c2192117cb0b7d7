//! Fusion on pooled features: early (concatenation), late (unimodal logits averaged or
//! weighted), weighted sum and attention (gated) over per-input projections. Reference:
//! MultiBench `fusions/common_fusions.py` (`Concat`, and the late-fusion and weighted
//! baselines of its examples).

use braid_core::{Features, Result};
use braid_nn::Linear;
use candle_core::{Module, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::config::LateWeights;
use crate::fusion::{batch_of, pooled, pooled_or_zeros};
use crate::ops::{masked_softmax, per_input_linear, Mlp2};
use crate::FusionModel;

fn present(z: &[Option<Tensor>]) -> Vec<bool> {
    z.iter().map(Option::is_some).collect()
}

/// Concatenated pooled features into an MLP; a missing input contributes zeros.
pub struct Early {
    dims: Vec<usize>,
    head: Mlp2,
    classes: usize,
}

impl Early {
    /// dims: each input's feature width.
    pub fn new(dims: &[usize], classes: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let head = Mlp2::new(dims.iter().sum(), hidden, classes, vb.pp("head"))?;
        Ok(Self { dims: dims.to_vec(), head, classes })
    }
}

impl FusionModel for Early {
    fn num_modalities(&self) -> usize {
        self.dims.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let parts = pooled_or_zeros(inputs, &self.dims)?;
        self.head.forward(&Tensor::cat(&parts, 1)?)
    }
}

/// One linear head per input; the logits of the present inputs averaged (or weighted by a
/// softmax of learned scalars).
pub struct Late {
    heads: Vec<Linear>,
    weights: Option<Tensor>,
    classes: usize,
}

impl Late {
    /// dims: each input's feature width.
    pub fn new(dims: &[usize], classes: usize, how: LateWeights, vb: VarBuilder) -> Result<Self> {
        let heads = per_input_linear(dims, classes, "heads", &vb)?;
        let weights = match how {
            LateWeights::Mean => None,
            LateWeights::Learned => {
                Some(vb.get_with_hints(dims.len(), "weights", Init::Const(0.0))?)
            }
        };
        Ok(Self { heads, weights, classes })
    }
}

impl FusionModel for Late {
    fn num_modalities(&self) -> usize {
        self.heads.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let z = pooled(inputs)?;
        let (b, dev) = batch_of(&z)?;
        let m = self.heads.len();
        let scores = match &self.weights {
            Some(w) => w.unsqueeze(0)?.broadcast_as((b, m))?.contiguous()?,
            None => Tensor::zeros((b, m), candle_core::DType::F32, &dev)?,
        };
        let w = masked_softmax(&scores, &present(&z))?;
        weighted(&z, &self.heads, &w, |h, x| Ok(h.forward(x)?))
    }
}

/// `sum_i w[:, i] * f_i(z_i)` over the present inputs.
fn weighted<M>(
    z: &[Option<Tensor>],
    modules: &[M],
    w: &Tensor,
    f: impl Fn(&M, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for (i, (z, m)) in z.iter().zip(modules).enumerate() {
        let Some(z) = z else { continue };
        let term = f(m, z)?.broadcast_mul(&w.narrow(1, i, 1)?)?;
        sum = Some(match sum {
            Some(s) => (s + term)?,
            None => term,
        });
    }
    sum.ok_or_else(|| braid_core::Error::Invalid("every input is missing".into()))
}

/// Each input projected to `hidden`, summed with weights: learned scalars (weighted sum)
/// or per-sample attention scores `v^T tanh(W h_i)` (gated / attention fusion); missing
/// inputs get weight 0. The sum goes through an MLP head.
pub struct Gated {
    proj: Vec<Linear>,
    /// `None`: learned scalars in `weights`.
    score: Option<(Linear, Linear)>,
    weights: Option<Tensor>,
    head: Mlp2,
    classes: usize,
}

impl Gated {
    /// A weighted sum (`attention = false`) or attention fusion.
    pub fn new(
        dims: &[usize],
        classes: usize,
        hidden: usize,
        attention: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let proj = per_input_linear(dims, hidden, "proj", &vb)?;
        let (score, weights) = if attention {
            let w = Linear::new(hidden, hidden, true, vb.pp("score.w"))?;
            let v = Linear::new(hidden, 1, false, vb.pp("score.v"))?;
            (Some((w, v)), None)
        } else {
            (None, Some(vb.get_with_hints(dims.len(), "weights", Init::Const(0.0))?))
        };
        let head = Mlp2::new(hidden, hidden, classes, vb.pp("head"))?;
        Ok(Self { proj, score, weights, head, classes })
    }
}

impl FusionModel for Gated {
    fn num_modalities(&self) -> usize {
        self.proj.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let z = pooled(inputs)?;
        let (b, dev) = batch_of(&z)?;
        let h: Vec<Option<Tensor>> = z
            .iter()
            .zip(&self.proj)
            .map(|(z, p)| z.as_ref().map(|z| p.forward(z)).transpose())
            .collect::<candle_core::Result<_>>()?;
        let m = self.proj.len();
        let scores = match (&self.score, &self.weights) {
            (Some((w, v)), _) => {
                let cols = h
                    .iter()
                    .map(|h| match h {
                        Some(h) => Ok(v.forward(&w.forward(h)?.tanh()?)?),
                        None => Ok(Tensor::zeros((b, 1), candle_core::DType::F32, &dev)?),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Tensor::cat(&cols, 1)?
            }
            (None, Some(wt)) => wt.unsqueeze(0)?.broadcast_as((b, m))?.contiguous()?,
            (None, None) => Tensor::zeros((b, m), candle_core::DType::F32, &dev)?,
        };
        let w = masked_softmax(&scores, &present(&h))?;
        let ones: Vec<()> = vec![(); m];
        let fused = weighted(&h, &ones, &w, |_, x| Ok(x.clone()))?;
        self.head.forward(&fused)
    }
}
