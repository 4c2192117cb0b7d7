//! The fusion contract.

use braid_core::{Error, Features, Result};
use braid_nn::cross_entropy;
use candle_core::Tensor;

/// Several modalities' features -> class logits.
pub trait FusionModel: Send + Sync {
    /// Number of modalities it fuses, in a fixed order.
    fn num_modalities(&self) -> usize;

    /// Number of classes.
    fn num_classes(&self) -> usize;

    /// inputs: one entry per modality, `None` where a modality is missing (the model
    /// imputes or skips it) -> logits `[batch, num_classes]`.
    fn forward(&self, inputs: &[Option<Features>]) -> Result<Tensor>;

    /// The training loss of a batch with every modality present: cross-entropy of
    /// [`Self::forward`] unless the method adds its own terms (reconstruction, members'
    /// losses, an alignment objective). `raw`: the standardised inputs the features came
    /// from; labels: `[batch]` class indices.
    fn loss(&self, inputs: &[Option<Features>], raw: &[Tensor], labels: &Tensor) -> Result<Tensor> {
        let _ = raw;
        cross_entropy(&self.forward(inputs)?, labels, None)
    }
}

/// Each input's tokens mean-pooled over positions (masked when a mask is given):
/// `[batch, n, d]` -> `[batch, d]`; `None` stays `None`.
pub fn pooled(inputs: &[Option<Features>]) -> Result<Vec<Option<Tensor>>> {
    inputs
        .iter()
        .map(|f| {
            f.as_ref()
                .map(|f| match &f.mask {
                    Some(m) => braid_nn::mean_pool(&f.tokens, m),
                    None => Ok(f.tokens.mean(1)?),
                })
                .transpose()
        })
        .collect()
}

/// The batch size of the first present input, or an error when every input is missing.
pub fn batch_of(inputs: &[Option<Tensor>]) -> Result<(usize, candle_core::Device)> {
    inputs
        .iter()
        .flatten()
        .next()
        .map(|t| Ok((t.dim(0)?, t.device().clone())))
        .unwrap_or_else(|| Err(Error::Invalid("every input of the fusion model is missing".into())))
}

/// `x`, or zeros `[batch, dim]` where it is missing.
pub fn or_zeros(
    x: &Option<Tensor>,
    batch: usize,
    dim: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    match x {
        Some(t) => Ok(t.clone()),
        None => Ok(Tensor::zeros((batch, dim), candle_core::DType::F32, device)?),
    }
}

/// Each input's pooled features, zeros `[batch, dims[i]]` where an input is missing: what
/// the methods that need every input read.
pub fn pooled_or_zeros(inputs: &[Option<Features>], dims: &[usize]) -> Result<Vec<Tensor>> {
    let z = pooled(inputs)?;
    let (b, dev) = batch_of(&z)?;
    z.iter().zip(dims).map(|(z, &d)| or_zeros(z, b, d, &dev)).collect()
}

/// The sum of `terms` (scalars), or an error when there is none.
pub fn sum_terms(terms: &[Tensor]) -> Result<Tensor> {
    if terms.is_empty() {
        return Err(Error::Invalid("every input is missing".into()));
    }
    Ok(Tensor::stack(terms, 0)?.sum_all()?)
}
