//! The `contrastive` stage: two towers map paired examples into one space and InfoNCE
//! pulls pairs together (CLIP: Radford et al. 2021; reference `transformers`
//! `models/clip/modeling_clip.py` `clip_loss`), with a learnable temperature stored as
//! `logit_scale = ln(1/τ)` (initialised to ln(1/0.07), clamped to at most ln 100 as CLIP
//! does). Examples that share a group (two images captioned "a red circle") are all
//! positives of each other: the target distribution is uniform over the group
//! (multi-positive InfoNCE, Khosla et al. 2020), which reduces to CLIP's loss when every
//! group is a singleton.

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_nn::log_softmax;
use candle_core::{Tensor, Var, D};

/// Maps example indices to embeddings `[batch, dim]` (not yet normalised).
pub type Tower<'a> = Box<dyn Fn(&[usize]) -> Result<Tensor> + 'a>;

use super::Evaluate;

/// InfoNCE between two towers.
pub struct ContrastiveTask<'a> {
    /// The first tower (e.g. image encoder + head).
    pub left: Tower<'a>,
    /// The second tower (e.g. frozen text embeddings + head).
    pub right: Tower<'a>,
    /// `ln(1/τ)`, a trainable scalar.
    pub logit_scale: Var,
    /// Group id per example (same id: positives of each other); `None`: pairs only.
    pub groups: Option<Vec<usize>>,
    /// Training examples.
    pub len: usize,
    /// The trainable variables of both towers (the scale is added by the task).
    pub vars: Vec<(String, Var)>,
    /// Held-out evaluation.
    pub evaluate: Option<Evaluate<'a>>,
}

/// `ln(1/0.07)`, CLIP's initial `logit_scale`.
pub const INITIAL_LOGIT_SCALE: f64 = 2.659_260_036_932_778;

/// Rows scaled to unit L2 norm (differentiable). x: [n, d] -> [n, d]
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(x.broadcast_div(&norm)?)
}

/// Symmetric InfoNCE. left, right: [n, d]; groups: n ids -> loss []
pub fn info_nce(
    left: &Tensor,
    right: &Tensor,
    logit_scale: &Tensor,
    groups: &[usize],
) -> Result<Tensor> {
    let n = left.dim(0)?;
    if right.dim(0)? != n || groups.len() != n {
        return Err(Error::shape("info_nce pairs", &[n], &[right.dim(0)?, groups.len()]));
    }
    let scale = logit_scale.clamp(f64::MIN, 100f64.ln())?.exp()?;
    let logits = l2_normalize(left)?.matmul(&l2_normalize(right)?.t()?)?.broadcast_mul(&scale)?;
    let mut target = vec![0f32; n * n];
    for i in 0..n {
        let same: Vec<usize> = (0..n).filter(|&j| groups[j] == groups[i]).collect();
        for &j in &same {
            target[i * n + j] = 1.0 / same.len() as f32;
        }
    }
    let target = Tensor::from_vec(target, (n, n), left.device())?.to_dtype(logits.dtype())?;
    let ce = |l: &Tensor| -> Result<Tensor> {
        Ok((log_softmax(l, D::Minus1)?.mul(&target)?.sum_all()?.neg()? / n as f64)?)
    };
    // The target is symmetric, so the same matrix serves both directions.
    Ok(((ce(&logits)? + ce(&logits.t()?.contiguous()?)?)? / 2.0)?)
}

impl crate::Task for ContrastiveTask<'_> {
    fn unsplittable(&self) -> Option<String> {
        Some("the contrastive loss compares every example with the rest of its batch".into())
    }

    fn train_len(&self) -> usize {
        self.len
    }

    fn loss(&self, indices: &[usize], _step: usize) -> Result<Tensor> {
        let groups: Vec<usize> = match &self.groups {
            Some(g) => indices.iter().map(|&i| g[i]).collect(),
            None => indices.to_vec(),
        };
        info_nce(
            &(self.left)(indices)?,
            &(self.right)(indices)?,
            self.logit_scale.as_tensor(),
            &groups,
        )
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let mut m = match &self.evaluate {
            Some(f) => f()?,
            None => BTreeMap::new(),
        };
        m.insert(
            "temperature".into(),
            (-self
                .logit_scale
                .as_tensor()
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?)
            .exp(),
        );
        Ok(m)
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        let mut v = self.vars.clone();
        v.push(("logit_scale".into(), self.logit_scale.clone()));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use candle_core::{DType, Device};

    use super::*;

    #[test]
    fn singleton_groups_give_clips_loss() {
        // transformers clip_loss on these logits (scale 1): computed by hand below.
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f64, 0.0], [0.0, 1.0]], &dev).unwrap();
        let b = Tensor::new(&[[1f64, 0.0], [1.0, 1.0]], &dev).unwrap();
        let loss = info_nce(&a, &b, &Tensor::new(0f64, &dev).unwrap(), &[0, 1])
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let s = std::f64::consts::FRAC_1_SQRT_2;
        // logits [[1, s], [0, s]]; rows: -log softmax at the diagonal; columns likewise.
        let row = |l: [f64; 2], k: usize| -(l[k] - (l[0].exp() + l[1].exp()).ln());
        let want = ((row([1.0, s], 0) + row([0.0, s], 1)) / 2.0
            + (row([1.0, 0.0], 0) + row([s, s], 1)) / 2.0)
            / 2.0;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        // One group: every target row is [0.5, 0.5].
        let grouped = info_nce(&a, &b, &Tensor::new(0f64, &dev).unwrap(), &[0, 0])
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let half = |l: [f64; 2]| (row(l, 0) + row(l, 1)) / 2.0;
        let want = ((half([1.0, s]) + half([0.0, s])) / 2.0
            + (half([1.0, 0.0]) + half([s, s])) / 2.0)
            / 2.0;
        assert!((grouped - want).abs() < 1e-12, "{grouped} vs {want}");
        assert_eq!(DType::F64, a.dtype());
    }
}
