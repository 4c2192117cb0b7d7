//! Multimodal Pathway for a `classify` recipe's patch transformer (Zhang et al. 2024;
//! `AILab-CVC/M2PT`, `multimodal_pathway.py`): every attention and MLP linear of the IMU
//! transformer becomes `W + λ W_aux`, W_aux the same linear of a transformer of the same
//! widths trained on another modality (the easy-VQA ViT, an audio spectrogram
//! transformer), λ learnt from 0; after training the pathway is merged into plain weights,
//! so the saved model is an ordinary patch transformer with bit-identical logits.
//!
//! ```toml
//! [model.pathway]
//! from = "models/easyvqa"        # a model directory
//! component = "encoder.image"    # its safetensors file (without the extension)
//! prefix = "encoder.layers"      # the auxiliary transformer's layers in that file
//! layers = [0, 1]                # the auxiliary layer of each of ours (default 0, 1, ...)
//! train_aux = false              # W_aux frozen (M2PT's default trains it)
//! merge = true                   # save the merged model (default)
//! ```

use std::path::PathBuf;

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Result};
use braid_encoders::EncoderConfig;
use braid_pipeline::{Pipeline, PipelineConfig};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// Where the auxiliary weights come from, and what trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathwaySource {
    /// A model directory holding the auxiliary transformer.
    pub from: PathBuf,
    /// Its weights file, without `.safetensors` (`encoder.image`).
    pub component: String,
    /// The auxiliary transformer's layers in that file (`encoder.layers`).
    pub prefix: String,
    /// The auxiliary layer each of ours takes its weights from (default: the same index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<usize>,
    /// Train W_aux as well as λ.
    #[serde(default)]
    pub train_aux: bool,
    /// Fold the pathway into plain weights in the saved model.
    #[serde(default = "yes")]
    pub merge: bool,
}

fn yes() -> bool {
    true
}

/// Suffix of an auxiliary weight's variable name.
pub const AUX_SUFFIX: &str = ".pathway.weight";
/// Suffix of a λ's variable name.
pub const SCALE_SUFFIX: &str = ".pathway.scale";

/// The encoder with its transformer's pathway switched on (or off).
pub fn with_pathway(encoder: &EncoderConfig, on: bool) -> Result<EncoderConfig> {
    match encoder {
        EncoderConfig::ImuPatch(c) => {
            let mut c = *c;
            c.transformer.pathway = on;
            Ok(EncoderConfig::ImuPatch(c))
        }
        _ => Err(Error::config(
            "model.pathway",
            "Multimodal Pathway applies to the `patch` (IMU patch transformer) encoder",
        )),
    }
}

/// Fills every `….pathway.weight` of `component` (a var map of `model`) from the source
/// file; a missing tensor or one of another shape (another width) is an error naming it.
pub fn fill_aux(model: &Pipeline, component: &str, src: &PathwaySource) -> Result<()> {
    let file = src.from.join(format!("{}.safetensors", src.component));
    let ckpt = Checkpoint::open(&file)?;
    let vars = model
        .var_maps()
        .into_iter()
        .find(|(n, _)| n == component)
        .map(|(_, v)| v.clone())
        .ok_or_else(|| Error::Invalid(format!("the model has no `{component}`")))?;
    // In name order, so that the first mismatch reported is always the same one.
    let data: std::collections::BTreeMap<String, candle_core::Var> =
        crate::optim::named_vars(&vars)?.into_iter().collect();
    let mut filled = 0;
    for (name, var) in &data {
        let Some(path) = name.strip_suffix(AUX_SUFFIX) else { continue };
        // `transformer.layers.I.REST` -> `PREFIX.J.REST.weight`
        let (layer, rest) = path
            .strip_prefix("transformer.layers.")
            .and_then(|p| p.split_once('.'))
            .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)))
            .ok_or_else(|| Error::Invalid(format!("unexpected pathway variable `{name}`")))?;
        let from_layer = if src.layers.is_empty() {
            layer
        } else {
            *src.layers.get(layer).ok_or_else(|| {
                Error::config(
                    "model.pathway.layers",
                    format!(
                        "names {} auxiliary layers; the transformer has more",
                        src.layers.len()
                    ),
                )
            })?
        };
        let key = format!("{}.{from_layer}.{rest}.weight", src.prefix);
        let t = ckpt
            .tensor(&key, DType::F32, &Device::Cpu)
            .map_err(|e| Error::config("model.pathway", format!("{}: {e}", file.display())))?;
        if t.dims() != var.dims() {
            return Err(Error::config(
                "model.pathway",
                format!(
                    "auxiliary weights of another width: `{key}` in {} is {:?}, the IMU \
                     transformer's `{rest}` is {:?}",
                    file.display(),
                    t.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&t)?;
        filled += 1;
    }
    if filled == 0 {
        return Err(Error::config("model.pathway", "the encoder has no pathway linear"));
    }
    Ok(())
}

/// The trained model with every pathway folded into its weights (`W + λ W_aux`, the very
/// tensor the pathway linear computes) and the pathway switched off in its configuration.
pub fn merge(model: &Pipeline, cfg: &PipelineConfig) -> Result<Pipeline> {
    let mut merged_cfg = cfg.clone();
    for slot in &mut merged_cfg.encoders {
        if let Some(enc) = &slot.encoder {
            if let Ok(plain) = with_pathway(enc, false) {
                slot.encoder = Some(plain);
            }
        }
    }
    let merged = Pipeline::init_seeded(&merged_cfg, std::path::Path::new("."), &Device::Cpu, 0)?;
    let lock = crate::optim::named_vars;
    let trained: Vec<(String, std::collections::HashMap<String, candle_core::Var>)> =
        model.var_maps().into_iter().map(|(n, v)| Ok((n, lock(v)?))).collect::<Result<_>>()?;
    for (component, vars) in merged.var_maps() {
        let from = trained
            .iter()
            .find(|(n, _)| *n == component)
            .map(|(_, m)| m)
            .ok_or_else(|| Error::Invalid(format!("merging: no trained `{component}`")))?;
        for (name, var) in lock(vars)? {
            let src = from.get(&name).ok_or_else(|| {
                Error::Invalid(format!("merging: no trained `{component}.{name}`"))
            })?;
            let pathway = name.strip_suffix(".weight").and_then(|base| {
                Some((
                    from.get(&format!("{base}{AUX_SUFFIX}"))?,
                    from.get(&format!("{base}{SCALE_SUFFIX}"))?,
                ))
            });
            let value = match pathway {
                Some((aux, scale)) => braid_nn::pathway::merged_weight(
                    src.as_tensor(),
                    aux.as_tensor(),
                    scale.as_tensor(),
                )?
                .detach(),
                None => src.as_tensor().detach(),
            };
            var.set(&value)?;
        }
    }
    Ok(merged)
}
