//! A trained model as a directory: `pipeline.toml` plus one safetensors file per
//! component with its own variables (`llm.safetensors`, `lora.safetensors`,
//! `encoder.<modality>.safetensors`, `projector.<modality>.safetensors`). Components
//! without stored weights (a frozen base LLM, a CLIP folder) are named in `pipeline.toml`
//! by registered name or by a path relative to the directory. Everything a command needs
//! to run the model is in `pipeline.toml`; any other file (the recipe it was trained with,
//! evaluation reports, plots) is a record, never read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
    /// atomic swap). A base model named by path is written relative to `dir` (see
    /// [`rebased`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let toml_path = dir.join(PIPELINE_FILE);
        let cfg = rebased(&self.cfg, &self.base, dir);
        std::fs::write(&toml_path, cfg.to_toml()?).map_err(|e| Error::io(&toml_path, e))?;
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

/// `cfg` as a directory `dir` keeps it: every model named by path (the language model, the
/// tokenizer, an encoder) rewritten from `base`, which its relative paths start from, to a
/// path relative to `dir`, so that the model directory moved together with its base models
/// still opens. Registered names and `hf:` names stay as written, and so does a path that
/// shares nothing but the root with `dir` (`/tmp/run/model` naming `/work/llm.gguf` keeps
/// the absolute path) or that names nothing on disk.
pub(crate) fn rebased(cfg: &PipelineConfig, base: &Path, dir: &Path) -> PipelineConfig {
    let rebase = |name: &mut String| {
        if name.starts_with("hf:") || braid_hub::find(name).is_ok() {
            return;
        }
        let path = Path::new(name.as_str());
        let full = if path.is_absolute() { path.to_path_buf() } else { base.join(path) };
        let (Ok(target), Ok(from)) = (full.canonicalize(), dir.canonicalize()) else { return };
        if let Some(rel) = relative(&target, &from) {
            *name = rel.to_string_lossy().into_owned();
        }
    };
    let mut out = cfg.clone();
    out.llm.iter_mut().for_each(rebase);
    out.tokenizer.iter_mut().for_each(rebase);
    out.encoders.iter_mut().filter_map(|e| e.model.as_mut()).for_each(rebase);
    out.generator.iter_mut().for_each(|g| rebase(&mut g.path));
    out
}

/// `target` as a path from the directory `from` (both absolute and canonical), or `None`
/// when they share no component below the root.
pub fn relative(target: &Path, from: &Path) -> Option<PathBuf> {
    let (t, f): (Vec<_>, Vec<_>) = (target.components().collect(), from.components().collect());
    let shared = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    if shared <= 1 {
        return None;
    }
    let mut out: PathBuf = f[shared..].iter().map(|_| "..").collect();
    out.extend(&t[shared..]);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_from_a_model_directory() {
        let rel = |t: &str, f: &str| relative(Path::new(t), Path::new(f));
        assert_eq!(rel("/a/b/c/x.gguf", "/a/b/run/model"), Some(PathBuf::from("../../c/x.gguf")));
        assert_eq!(rel("/a/b/run/model/x", "/a/b/run/model"), Some(PathBuf::from("x")));
        assert_eq!(rel("/a/b", "/a/b"), Some(PathBuf::from(".")));
        assert_eq!(rel("/work/x.gguf", "/tmp/run/model"), None, "nothing shared but the root");
    }

    /// An absolute path to the language model was written as it was: the model directory
    /// moved with its base model no longer opened.
    #[test]
    fn a_base_model_named_by_path_is_kept_relative_to_the_model_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("llm")).unwrap();
        std::fs::write(tmp.path().join("llm/m.gguf"), b"").unwrap();
        let model = tmp.path().join("run/model");
        std::fs::create_dir_all(&model).unwrap();
        let mut cfg = PipelineConfig {
            llm: Some(tmp.path().join("llm/m.gguf").display().to_string()),
            tokenizer: Some("smollm2".into()),
            ..Default::default()
        };
        let saved = rebased(&cfg, Path::new("."), &model);
        assert_eq!(saved.llm.as_deref(), Some("../../llm/m.gguf"));
        assert_eq!(saved.tokenizer.as_deref(), Some("smollm2"), "a registered name stays");
        // Relative to the directory the configuration came from.
        cfg.llm = Some("../llm/m.gguf".into());
        let again = rebased(&cfg, &tmp.path().join("run"), &model);
        assert_eq!(again.llm.as_deref(), Some("../../llm/m.gguf"));
        cfg.llm = Some("hf:org/model".into());
        assert_eq!(rebased(&cfg, Path::new("."), &model).llm.as_deref(), Some("hf:org/model"));
    }
}
