//! A trained model as a directory: `pipeline.toml` plus one safetensors file per
//! component with its own variables (`llm.safetensors`, `lora.safetensors`,
//! `encoder.<modality>.safetensors`, `projector.<modality>.safetensors`). Components
//! without stored weights (a frozen base LLM, a CLIP folder) are named in `pipeline.toml`
//! by registered name or by a path relative to the directory. Everything a command needs
//! to run the model is in `pipeline.toml`; any other file (the recipe it was trained with,
//! evaluation reports, plots) is a record, never read.

use std::collections::BTreeSet;
use std::path::Path;

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Result};
use braid_llm::Weights;
use candle_core::Device;
use candle_nn::VarMap;

use crate::{Pipeline, PipelineConfig};

/// The configuration file of a model directory.
pub const PIPELINE_FILE: &str = "pipeline.toml";

impl Pipeline {
    /// Writes `dir/pipeline.toml` and one safetensors file per trainable component
    /// (into an existing or new directory; see [`braid_core::fsx::replace_dir`] for an
    /// atomic swap).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let toml_path = dir.join(PIPELINE_FILE);
        std::fs::write(&toml_path, self.cfg.to_toml()?).map_err(|e| Error::io(&toml_path, e))?;
        for (name, vars) in self.var_maps() {
            vars.save(dir.join(format!("{name}.safetensors")))?;
        }
        Ok(())
    }

    /// Opens a model directory written by [`Self::save`]: the one entry point of every
    /// command that runs a Braid model. Every component's file must hold exactly its
    /// variables (missing and unexpected tensors are named, with the file).
    ///
    /// `weights`: [`Weights::Frozen`] for inference (the language model's quantized
    /// weights stay quantized, fused kernels, LoRA applied beside them; what chat and
    /// evaluation use), [`Weights::Trainable`] for the differentiable f32 body (to
    /// continue training, export LoRA, or check the frozen numbers against).
    pub fn open(dir: &Path, weights: Weights, device: &Device) -> Result<Self> {
        let toml = dir.join(PIPELINE_FILE);
        if !toml.is_file() {
            return Err(Error::format(
                dir,
                format!("not a Braid model directory: no {PIPELINE_FILE}"),
            ));
        }
        let cfg = PipelineConfig::load(&toml)?;
        let frozen_lora = match weights {
            Weights::Frozen { .. } => Some(cfg.lora.as_ref().map(|_| dir.join("lora.safetensors"))),
            Weights::Trainable(_) => None,
        };
        let pipeline =
            Self::build(&cfg, dir, device, &crate::build::Build { seed: None, frozen_lora })?;
        for (name, vars) in pipeline.var_maps() {
            load_exact(vars, &dir.join(format!("{name}.safetensors")))?;
        }
        Ok(pipeline)
    }
}

/// Fills `vars` from `path`, failing unless the names agree both ways (shapes are checked
/// as each tensor is set).
fn load_exact(vars: &VarMap, path: &Path) -> Result<()> {
    let stored: BTreeSet<String> = Checkpoint::open(path)?.names().into_iter().collect();
    let wanted: BTreeSet<String> = vars
        .data()
        .lock()
        .map_err(|_| Error::Invalid("a variable map's lock is poisoned".into()))?
        .keys()
        .cloned()
        .collect();
    let missing: Vec<&String> = wanted.difference(&stored).collect();
    let unexpected: Vec<&String> = stored.difference(&wanted).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::Load {
            path: path.to_path_buf(),
            summary: format!("missing {missing:?}, unexpected {unexpected:?}"),
        });
    }
    let mut vars = vars.clone();
    vars.load(path)?;
    Ok(())
}
