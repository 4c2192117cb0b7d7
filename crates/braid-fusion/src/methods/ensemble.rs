//! Ensembles of unimodal members (each input's encoder with its own linear head, trained
//! by its own cross-entropy): hard vote, soft average, or stacking (a linear
//! meta-classifier over the members' detached probabilities). A missing input's member
//! abstains (stacking sees the uniform distribution in its place).

use braid_core::{Features, Result};
use braid_nn::{cross_entropy, Linear};
use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;

use crate::config::Combine;
use crate::fusion::{pooled, sum_terms};
use crate::ops::per_input_linear;
use crate::FusionModel;

/// Weight of the summed probabilities that break a vote's ties.
const TIE_BREAK: f64 = 1e-3;

/// The ensemble.
pub struct Ensemble {
    members: Vec<Linear>,
    meta: Option<Linear>,
    combine: Combine,
    classes: usize,
}

impl Ensemble {
    /// dims: each input's feature width.
    pub fn new(dims: &[usize], classes: usize, combine: Combine, vb: VarBuilder) -> Result<Self> {
        let members = per_input_linear(dims, classes, "members", &vb)?;
        let meta = match combine {
            Combine::Stacking => {
                Some(Linear::new(dims.len() * classes, classes, true, vb.pp("meta"))?)
            }
            _ => None,
        };
        Ok(Self { members, meta, combine, classes })
    }

    fn member_logits(&self, inputs: &[Option<Features>]) -> Result<Vec<Option<Tensor>>> {
        pooled(inputs)?
            .iter()
            .zip(&self.members)
            .map(|(z, m)| Ok(z.as_ref().map(|z| m.forward(z)).transpose()?))
            .collect()
    }

    /// Members' probabilities (detached), uniform where a member abstains -> `[b, n * c]`.
    fn stacked(
        &self,
        logits: &[Option<Tensor>],
        b: usize,
        dev: &candle_core::Device,
    ) -> Result<Tensor> {
        let uniform = (Tensor::ones((b, self.classes), DType::F32, dev)? / self.classes as f64)?;
        let parts = logits
            .iter()
            .map(|l| match l {
                Some(l) => braid_nn::softmax(&l.detach(), 1),
                None => Ok(uniform.clone()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

impl FusionModel for Ensemble {
    fn num_modalities(&self) -> usize {
        self.members.len()
    }
    fn num_classes(&self) -> usize {
        self.classes
    }
    /// Scores whose argmax is the ensemble's prediction: vote counts (plus a small share
    /// of the summed probabilities for ties), the log of the mean probability, or the
    /// meta-classifier's logits.
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor> {
        let logits = self.member_logits(inputs)?;
        let present: Vec<&Tensor> = logits.iter().flatten().collect();
        let Some(first) = present.first() else {
            return Err(braid_core::Error::Invalid("every input is missing".into()));
        };
        let (b, dev) = (first.dim(0)?, first.device().clone());
        let probs = present.iter().map(|l| braid_nn::softmax(l, 1)).collect::<Result<Vec<_>>>()?;
        let sum = Tensor::stack(&probs, 0)?.sum(0)?;
        match (self.combine, &self.meta) {
            (Combine::Stacking, Some(meta)) => Ok(meta.forward(&self.stacked(&logits, b, &dev)?)?),
            (Combine::Vote, _) => {
                let mut votes = (sum.clone() * TIE_BREAK)?;
                for l in &present {
                    let hot = candle_nn::encoding::one_hot(l.argmax(1)?, self.classes, 1f32, 0f32)?;
                    votes = (votes + hot)?;
                }
                Ok(votes)
            }
            _ => Ok((sum / present.len() as f64)?.log()?),
        }
    }
    /// The sum of the members' cross-entropies (plus the meta-classifier's, stacking).
    fn loss(
        &self,
        inputs: &[Option<Features>],
        _raw: &[Tensor],
        labels: &Tensor,
    ) -> Result<Tensor> {
        let logits = self.member_logits(inputs)?;
        let members = logits
            .iter()
            .flatten()
            .map(|l| cross_entropy(l, labels, None))
            .collect::<Result<Vec<_>>>()?;
        let mut loss = sum_terms(&members)?;
        if let Some(meta) = &self.meta {
            let b = labels.dim(0)?;
            let stacked = self.stacked(&logits, b, labels.device())?;
            loss = (loss + cross_entropy(&meta.forward(&stacked)?, labels, None)?)?;
        }
        Ok(loss)
    }
}
