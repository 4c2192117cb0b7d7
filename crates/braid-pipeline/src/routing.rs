//! How a routed projector (the UPM) spreads each modality over its experts: the mean
//! routing weight per expert over every item of a conversation dataset, per modality, as
//! OneLLM's analysis of its routers (Han et al. 2024, Fig. 5).

use braid_core::{Error, Modality, Result};
use braid_data::conversation::ConversationDataset;

use crate::Pipeline;

/// One modality's mean routing weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// The modality.
    pub modality: Modality,
    /// Mean weight per expert (sums to one).
    pub weights: Vec<f64>,
    /// Items averaged.
    pub items: usize,
}

/// Mean routing weight per expert, per modality, over the media of the first `limit`
/// samples of `data` (0: all). Modalities whose projector does not route are left out;
/// a model with no routed projector is an error.
pub fn routing_by_modality(
    pipeline: &Pipeline,
    data: &ConversationDataset,
    limit: usize,
) -> Result<Vec<Routing>> {
    let n = if limit == 0 { data.len() } else { limit.min(data.len()) };
    let mut out: Vec<Routing> = Vec::new();
    for sample in data.iter().take(n) {
        for media in &sample.media {
            let input = pipeline
                .load_input(media.modality, &media.path)
                .map_err(|e| Error::Invalid(format!("sample {:?}: {e}", sample.id)))?;
            let Some(w) = pipeline.routing_weights(&input)? else { continue };
            // [1, m, experts] -> the mean over output tokens
            let mean = w.mean(1)?.squeeze(0)?.to_dtype(candle_core::DType::F64)?;
            let mean = mean.to_vec1::<f64>()?;
            match out.iter_mut().find(|r| r.modality == media.modality) {
                Some(r) => {
                    r.weights.iter_mut().zip(&mean).for_each(|(a, b)| *a += b);
                    r.items += 1;
                }
                None => out.push(Routing { modality: media.modality, weights: mean, items: 1 }),
            }
        }
    }
    if out.is_empty() {
        return Err(Error::config(
            "projector",
            "no item of the data went through a routed projector (a `upm` slot)",
        ));
    }
    for r in &mut out {
        r.weights.iter_mut().for_each(|w| *w /= r.items as f64);
    }
    Ok(out)
}
