//! The `fuse` stage as a [`Task`]: the fusion classifier's own loss (cross-entropy plus
//! whatever its method adds) on batches of every input, with modality dropout; the
//! fusion layers train, and the encoders unless frozen.

use std::collections::BTreeMap;

use braid_core::{Error, Result};
use braid_pipeline::Pipeline;
use candle_core::{Tensor, Var};

use crate::classify::ClassMetrics;
use crate::optim::prefixed_vars;
use crate::Task;

/// In-memory examples: one tensor per input `[n, ...shape]` and the labels.
#[derive(Debug, Clone)]
pub struct FusionExamples {
    /// Inputs in the model's order.
    pub inputs: Vec<Tensor>,
    /// Class per example.
    pub labels: Vec<usize>,
}

impl FusionExamples {
    /// The examples at `idx`: inputs and labels `[len]`.
    pub fn batch(&self, idx: &[usize]) -> Result<(Vec<Tensor>, Tensor)> {
        let ids: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let dev =
            self.inputs.first().map(|t| t.device().clone()).unwrap_or(candle_core::Device::Cpu);
        let sel = Tensor::new(ids.as_slice(), &dev)?;
        let inputs =
            self.inputs.iter().map(|x| Ok(x.index_select(&sel, 0)?)).collect::<Result<_>>()?;
        let labels: Vec<u32> = idx.iter().map(|&i| self.labels[i] as u32).collect();
        Ok((inputs, Tensor::new(labels.as_slice(), &dev)?))
    }
}

/// Training a fusion classifier.
pub struct FuseTask<'a> {
    /// The model (a pipeline holding a fusion classifier).
    pub model: &'a Pipeline,
    /// Training examples.
    pub train: FusionExamples,
    /// Held-out examples.
    pub eval: Option<FusionExamples>,
    /// Chance that a batch loses one input.
    pub modality_dropout: f64,
    /// Train the encoders too.
    pub train_encoders: bool,
    /// Examples per forward pass when evaluating.
    pub eval_batch: usize,
}

/// splitmix64: a step's own random numbers, so a resumed run draws the same ones.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FuseTask<'_> {
    /// The input a step's batch loses, if any.
    fn dropped(&self, step: usize, inputs: usize) -> Option<usize> {
        if inputs < 2 || self.modality_dropout <= 0.0 {
            return None;
        }
        let h = mix(step as u64);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        (u < self.modality_dropout).then(|| (mix(h) % inputs as u64) as usize)
    }

    /// Predicted class per example; `inputs` holds `None` for a missing input.
    pub fn predict(
        model: &Pipeline,
        inputs: &[Option<Tensor>],
        batch: usize,
    ) -> Result<Vec<usize>> {
        let fusion = model
            .fusion()
            .ok_or_else(|| Error::config("fusion", "the model is not a fusion classifier"))?;
        let n = match inputs.iter().flatten().next() {
            Some(t) => t.dim(0)?,
            None => return Err(Error::Invalid("every input is missing".into())),
        };
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(batch.max(1)) {
            let len = batch.min(n - start);
            let xb: Vec<Option<Tensor>> = inputs
                .iter()
                .map(|x| x.as_ref().map(|x| x.narrow(0, start, len)).transpose())
                .collect::<candle_core::Result<_>>()?;
            let pred = fusion.forward(&xb)?.detach().argmax(1)?.to_vec1::<u32>()?;
            out.extend(pred.into_iter().map(|p| p as usize));
        }
        Ok(out)
    }

    /// Scores `examples` with `inputs` standing in for its inputs (corrupted or dropped).
    pub fn score(
        model: &Pipeline,
        inputs: &[Option<Tensor>],
        labels: &[usize],
        batch: usize,
    ) -> Result<ClassMetrics> {
        let classes = model.classes().map(<[String]>::len).unwrap_or(0);
        let pred = Self::predict(model, inputs, batch)?;
        Ok(ClassMetrics::new(&pred, labels, classes))
    }
}

impl Task for FuseTask<'_> {
    fn unsplittable(&self) -> Option<String> {
        let method = &self.model.fusion()?.config().method;
        matches!(
            method,
            braid_fusion::FusionMethod::Shared {
                objective: braid_fusion::SharedObjective::Contrastive,
                ..
            }
        )
        .then(|| "the shared contrastive objective compares examples within a batch".into())
    }

    fn train_len(&self) -> usize {
        self.train.labels.len()
    }

    fn loss(&self, indices: &[usize], step: usize) -> Result<Tensor> {
        let fusion = self
            .model
            .fusion()
            .ok_or_else(|| Error::config("fusion", "the model is not a fusion classifier"))?;
        let (x, y) = self.train.batch(indices)?;
        let drop = self.dropped(step, x.len());
        let x: Vec<Option<Tensor>> =
            x.into_iter().enumerate().map(|(i, t)| (Some(i) != drop).then_some(t)).collect();
        fusion.loss(&x, &y)
    }

    fn evaluate(&self) -> Result<BTreeMap<String, f64>> {
        let Some(eval) = &self.eval else { return Ok(BTreeMap::new()) };
        let inputs: Vec<Option<Tensor>> = eval.inputs.iter().cloned().map(Some).collect();
        Ok(Self::score(self.model, &inputs, &eval.labels, self.eval_batch)?.summary())
    }

    /// `fusion.*`, without `fusion.encoders.*` when the encoders are frozen.
    fn trainable(&self) -> Result<Vec<(String, Var)>> {
        let mut vars = Vec::new();
        for (name, vm) in self.model.var_maps() {
            if name == "fusion" {
                vars.extend(prefixed_vars("fusion", vm)?);
            }
        }
        if vars.is_empty() {
            return Err(Error::config(
                "model",
                "the fuse stage trains a fusion classifier, which this model lacks",
            ));
        }
        let frozen = format!("fusion.{}", braid_fusion::ENCODER_PREFIX);
        if !self.train_encoders {
            vars.retain(|(n, _)| !n.starts_with(&frozen));
        }
        Ok(vars)
    }
}
