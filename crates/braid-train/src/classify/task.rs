//! The `classify` stage as a [`Task`]: cross-entropy of a classifier (a [`Pipeline`] with
//! a head: its encoder's tokens mean-pooled into a linear layer) on in-memory examples;
//! the encoder's and the head's variables train (or the head's alone, for a linear
//! probe), nothing else exists to change.

use std::collections::BTreeMap;

use braid_core::{Error, Modality, Result};
use braid_nn::cross_entropy;
use braid_pipeline::{Input, Pipeline};
use candle_core::{Tensor, Var};

use super::{Augment, ClassMetrics};
use crate::optim::prefixed_vars;
use crate::Task;

/// Examples as one tensor `[n, ...]` (the encoder's input per example) and their labels.
#[derive(Debug, Clone)]
pub struct Examples {
    /// Inputs, stacked on dim 0.
    pub x: Tensor,
    /// Class index per example.
    pub y: Vec<usize>,
}

impl Examples {
    /// Checks that there is one label per input and at least one example.
    pub fn new(x: Tensor, y: Vec<usize>, what: &str) -> Result<Self> {
        let n = x.dim(0)?;
        if n != y.len() {
            return Err(Error::shape(format!("{what} labels"), &[n], &[y.len()]));
        }
        if n == 0 {
            return Err(Error::Invalid(format!("{what}: no examples")));
        }
        Ok(Self { x, y })
    }

    fn batch(&self, idx: &[usize]) -> Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let sel = Tensor::new(ids.as_slice(), self.x.device())?;
        let labels: Vec<i64> = idx.iter().map(|&i| self.y[i] as i64).collect();
        Ok((self.x.index_select(&sel, 0)?, Tensor::new(labels.as_slice(), self.x.device())?))
    }
}

/// Training a classifier on examples, evaluating on held-out ones.
pub struct ClassifyTask<'a> {
    /// The model: one encoder and a head.
    pub model: &'a Pipeline,
    /// The encoder's modality.
    pub modality: Modality,
    /// Train the encoder too (`false`: it stays frozen, a linear probe).
    pub train_encoder: bool,
    /// Training examples.
    pub train: Examples,
    /// Held-out examples.
    pub eval: Option<Examples>,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Variables whose name ends so stay frozen (a pathway's auxiliary weights).
    pub frozen_suffix: Option<&'static str>,
    /// Examples per forward pass when evaluating.
    pub eval_batch: usize,
}

impl ClassifyTask<'_> {
    /// Predicted class per example of `x` (inputs of `modality`), in batches.
    pub fn predict(
        model: &Pipeline,
        modality: Modality,
        x: &Tensor,
        batch: usize,
    ) -> Result<Vec<usize>> {
        let n = x.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(batch.max(1)) {
            let xb = x.narrow(0, start, batch.min(n - start))?;
            let pred = model
                .classify(&Input { modality, data: xb, mask: None })?
                .detach()
                .argmax(1)?
                .to_vec1::<u32>()?;
            out.extend(pred.into_iter().map(|p| p as usize));
        }
        Ok(out)
    }

    /// Scores the model on `examples`.
    pub fn score(
        model: &Pipeline,
        modality: Modality,
        examples: &Examples,
        batch: usize,
    ) -> Result<ClassMetrics> {
        let classes = model
            .classes()
            .ok_or_else(|| Error::config("head", "the model has no classification head"))?
            .len();
        let pred = Self::predict(model, modality, &examples.x, batch)?;
        Ok(ClassMetrics::new(&pred, &examples.y, classes))
    }
}

impl Task for ClassifyTask<'_> {
    fn unsplittable(&self) -> Option<String> {
        (self.augment.scale != 0.0 || self.augment.max_shift != 0)
            .then(|| "augmentation is drawn per batch ([train.augment])".into())
    }

    fn train_len(&self) -> usize {
        self.train.y.len()
    }

    /// Mean cross-entropy of the batch (augmented when configured).
    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor> {
        let (x, y) = self.train.batch(indices)?;
        let x = self.augment.apply(&x, step)?;
        cross_entropy(
            &self.model.classify(&Input { modality: self.modality, data: x, mask: None })?,
            &y,
            None,
        )
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let Some(eval) = &self.eval else { return Ok(BTreeMap::new()) };
        Ok(Self::score(self.model, self.modality, eval, self.eval_batch)?.summary())
    }

    /// `encoder.*` (unless frozen) and `head.*`, by the names the checkpoints use.
    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        let encoder = format!("encoder.{}", self.modality);
        let mut vars = Vec::new();
        for (name, vm) in self.model.var_maps() {
            match name.as_str() {
                "head" => vars.extend(prefixed_vars("head", vm)?),
                n if n == encoder && self.train_encoder => {
                    vars.extend(prefixed_vars("encoder", vm)?)
                }
                _ => {}
            }
        }
        if let Some(suffix) = self.frozen_suffix {
            vars.retain(|(n, _)| !n.ends_with(suffix));
        }
        if !vars.iter().any(|(n, _)| n.starts_with("head")) {
            return Err(Error::config(
                "model.head",
                "the classify stage trains a head, which this model lacks",
            ));
        }
        Ok(vars)
    }
}
