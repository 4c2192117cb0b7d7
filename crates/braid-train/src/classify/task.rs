//! The `classify` stage as a [`Task`]: cross-entropy of a [`Classifier`] on in-memory
//! examples; the encoder's and the head's variables train (or the head's alone, for a
//! linear probe), nothing else exists to change.

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_nn::cross_entropy;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::{Augment, ClassMetrics, Classifier};
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
    /// The model.
    pub model: &'a Classifier,
    /// The encoder's variables (`None`: the encoder is frozen, a linear probe).
    pub encoder_vars: Option<&'a VarMap>,
    /// The head's variables.
    pub head_vars: &'a VarMap,
    /// Training examples.
    pub train: Examples,
    /// Held-out examples.
    pub eval: Option<Examples>,
    /// Training-time augmentation.
    pub augment: Augment,
    /// Examples per forward pass when evaluating.
    pub eval_batch: usize,
}

impl ClassifyTask<'_> {
    /// Predicted class per example of `x`, in batches.
    pub fn predict(model: &Classifier, x: &Tensor, batch: usize) -> Result<Vec<usize>> {
        let n = x.dim(0)?;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(batch.max(1)) {
            let xb = x.narrow(0, start, batch.min(n - start))?;
            let pred = model.logits(&xb, None)?.detach().argmax(1)?.to_vec1::<u32>()?;
            out.extend(pred.into_iter().map(|p| p as usize));
        }
        Ok(out)
    }

    /// Scores the model on `examples`.
    pub fn score(model: &Classifier, examples: &Examples, batch: usize) -> Result<ClassMetrics> {
        let pred = Self::predict(model, &examples.x, batch)?;
        Ok(ClassMetrics::new(&pred, &examples.y, model.classes.len()))
    }
}

impl Task for ClassifyTask<'_> {
    fn train_len(&self) -> usize {
        self.train.y.len()
    }

    /// Mean cross-entropy of the batch (augmented when configured).
    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor> {
        let (x, y) = self.train.batch(indices)?;
        let x = self.augment.apply(&x, step)?;
        cross_entropy(&self.model.logits(&x, None)?, &y, None)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let Some(eval) = &self.eval else { return Ok(BTreeMap::new()) };
        Ok(Self::score(self.model, eval, self.eval_batch)?.summary())
    }

    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        let mut vars = match self.encoder_vars {
            Some(vm) => prefixed_vars("encoder", vm)?,
            None => Vec::new(),
        };
        vars.extend(prefixed_vars("head", self.head_vars)?);
        Ok(vars)
    }
}
