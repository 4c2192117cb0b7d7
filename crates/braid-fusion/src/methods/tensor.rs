//! Tensor fusion (TFN, Zadeh et al. 2017) and low-rank multimodal fusion (LMF, Liu et al.
//! 2018), written from MultiBench `fusions/common_fusions.py` (`TensorFusion`,
//! `LowRankTensorFusion`): the same leading 1 on every feature vector, the same factor
//! shapes and Xavier-normal initialisation.

use braid_core::{Features, Result};
use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::fusion::pooled_or_zeros;
use crate::ops::Mlp2;
use crate::FusionModel;

/// `[1, z]` for each row of `z` `[batch, d]` -> `[batch, d + 1]` (the 1 first, as
/// MultiBench).
fn with_one(z: &Tensor) -> Result<Tensor> {
    let ones = Tensor::ones((z.dim(0)?, 1), z.dtype(), z.device())?;
    Ok(Tensor::cat(&[&ones, z], 1)?)
}

/// The flattened outer product of `[1, z_1] x [1, z_2] x ...`: `[batch, prod(d_i + 1)]`.
/// One input is returned as it is (MultiBench's behaviour).
pub fn tensor_fusion(z: &[Tensor]) -> Result<Tensor> {
    let Some(first) = z.first() else {
        return Err(braid_core::Error::Invalid("tensor fusion of no inputs".into()));
    };
    if z.len() == 1 {
        return Ok(first.clone());
    }
    let mut m = with_one(first)?;
    for next in &z[1..] {
        let next = with_one(next)?;
        let b = m.dim(0)?;
        // einsum('bi,bj->bij')
        m = m.unsqueeze(2)?.broadcast_mul(&next.unsqueeze(1)?)?.reshape((b, ()))?;
    }
    Ok(m)
}

/// TFN: [`tensor_fusion`] of the pooled features into an MLP head.
pub struct Tfn {
    dims: Vec<usize>,
    head: Mlp2,
    classes: usize,
}

impl Tfn {
    /// dims: each input's feature width.
    pub fn new(dims: &[usize], classes: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let width: usize =
            if dims.len() == 1 { dims[0] } else { dims.iter().map(|d| d + 1).product() };
        Ok(Self {
            dims: dims.to_vec(),
            head: Mlp2::new(width, hidden, classes, vb.pp("head"))?,
            classes,
        })
    }
}

impl FusionModel for Tfn {
    fn num_modalities(&self) -> usize {
        self.dims.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let parts = pooled_or_zeros(inputs, &self.dims)?;
        self.head.forward(&tensor_fusion(&parts)?)
    }
}

/// The low-rank fusion layer: variables `factors.I` `[rank, d_i + 1, out]`,
/// `fusion_weights` `[1, rank]`, `fusion_bias` `[1, out]`.
pub struct LowRankFusion {
    factors: Vec<Tensor>,
    weights: Tensor,
    bias: Tensor,
    out: usize,
}

impl LowRankFusion {
    /// dims: each input's width; `out`: the fused width.
    pub fn new(dims: &[usize], out: usize, rank: usize, vb: VarBuilder) -> Result<Self> {
        // PyTorch's fans of a [rank, d + 1, out] tensor: in = (d + 1) * out, out = rank * out.
        let xavier = |fan_in: usize, fan_out: usize| Init::Randn {
            mean: 0.0,
            stdev: (2.0 / (fan_in + fan_out) as f64).sqrt(),
        };
        let factors = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                Ok(vb.get_with_hints(
                    (rank, d + 1, out),
                    &format!("factors.{i}"),
                    xavier((d + 1) * out, rank * out),
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let weights = vb.get_with_hints((1, rank), "fusion_weights", xavier(rank, 1))?;
        let bias = vb.get_with_hints((1, out), "fusion_bias", Init::Const(0.0))?;
        Ok(Self { factors, weights, bias, out })
    }

    /// z: each input `[batch, d_i]` -> `[batch, out]`.
    pub fn forward(&self, z: &[Tensor]) -> Result<Tensor> {
        let mut fused: Option<Tensor> = None;
        for (z, factor) in z.iter().zip(&self.factors) {
            let rank = factor.dim(0)?;
            let zo = with_one(z)?.unsqueeze(0)?.broadcast_as((rank, z.dim(0)?, z.dim(1)? + 1))?;
            let f = zo.contiguous()?.matmul(factor)?; // [rank, batch, out]
            fused = Some(match fused {
                Some(acc) => (acc * f)?,
                None => f,
            });
        }
        let fused = fused
            .ok_or_else(|| braid_core::Error::Invalid("low-rank fusion of no inputs".into()))?;
        // fusion_weights [1, rank] @ fused.permute(1, 0, 2) [batch, rank, out] -> [batch, out]
        let b = fused.dim(1)?;
        let per = fused.permute((1, 0, 2))?.contiguous()?;
        let w =
            self.weights.unsqueeze(0)?.broadcast_as((b, 1, self.weights.dim(1)?))?.contiguous()?;
        let out = w.matmul(&per)?.reshape((b, self.out))?;
        Ok(out.broadcast_add(&self.bias)?)
    }
}

/// LMF: [`LowRankFusion`] of the pooled features to `hidden`, then an MLP head.
pub struct Lmf {
    dims: Vec<usize>,
    fusion: LowRankFusion,
    head: Mlp2,
    classes: usize,
}

impl Lmf {
    /// dims: each input's feature width.
    pub fn new(
        dims: &[usize],
        classes: usize,
        hidden: usize,
        rank: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            dims: dims.to_vec(),
            fusion: LowRankFusion::new(dims, hidden, rank, vb.pp("lmf"))?,
            head: Mlp2::new(hidden, hidden, classes, vb.pp("head"))?,
            classes,
        })
    }
}

impl FusionModel for Lmf {
    fn num_modalities(&self) -> usize {
        self.dims.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let parts = pooled_or_zeros(inputs, &self.dims)?;
        self.head.forward(&self.fusion.forward(&parts)?)
    }
}
