//! Building a [`Pipeline`] from its configuration: fresh (optionally seeded) variables
//! for the components whose architecture it gives, loads for those it names, the
//! tokenizer and the placeholders' ids.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use braid_core::checkpoint::{Checkpoint, Gguf};
use braid_core::{Error, Modality, Result};
use braid_encoders::image::{Clip, ImageTower};
use braid_encoders::Encoder;
use braid_llm::{ChatTemplate, LanguageModel, Llama, Tokenizer, Weights};
use braid_nn::{LoraConfig, LoraSpec};
use braid_projectors::{ProjectorConfig, UpmConfig, UpmExperts, UpmProjector};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use crate::pipeline::Branch;
use crate::{EncoderSlot, Head, Pipeline, PipelineConfig, Prompter};

/// New variable maps, each drawn from its own seed (`seed`, `seed + 1`, ... in build
/// order) when seeded, from candle's generator otherwise.
struct Fresh<'a> {
    device: &'a Device,
    seed: Option<u64>,
    next: u64,
}

impl Fresh<'_> {
    fn vars(&mut self) -> (VarMap, VarBuilder<'static>) {
        let vars = VarMap::new();
        let vb = match self.seed {
            Some(s) => braid_nn::init::seeded_var_builder(
                &vars,
                s.wrapping_add(self.next),
                DType::F32,
                self.device,
            ),
            None => VarBuilder::from_varmap(&vars, DType::F32, self.device),
        };
        self.next += 1;
        (vars, vb)
    }
}

impl Branch {
    fn new(
        i: usize,
        slot: &EncoderSlot,
        token_id: Option<u32>,
        llm_dim: Option<usize>,
        upm: Option<&Arc<UpmExperts>>,
        base: &Path,
        fresh: &mut Fresh,
    ) -> Result<Self> {
        let (encoder, encoder_vars): (Box<dyn Encoder>, _) = match (&slot.encoder, &slot.model) {
            (Some(cfg), _) => {
                let (vars, vb) = fresh.vars();
                (cfg.build(vb)?, Some(vars))
            }
            (None, Some(model)) if slot.modality == Modality::Image => {
                let path = braid_hub::resolve_field(model, base, &format!("encoders[{i}].model"))?;
                let (clip, _) = Clip::load(&path, fresh.device)?;
                let vit = clip.vision().clone().with_feature_layer(-2)?;
                (Box::new(ImageTower { vit, drop_cls: true, pool: 1 }), None)
            }
            _ => {
                return Err(Error::config(
                    format!("encoders[{i}].encoder"),
                    format!("a `{}` slot needs its architecture ([encoders.encoder]) or, for images, a CLIP folder (`model`)", slot.modality),
                ))
            }
        };
        // Only a language model reads projected tokens.
        let projector = match llm_dim {
            Some(d) => {
                let (vars, vb) = fresh.vars();
                let e = encoder.output_dim();
                let p: Box<dyn braid_projectors::InputProjector> = match (&slot.projector, upm) {
                    (Some(ProjectorConfig::Upm(c)), Some(experts)) => {
                        Box::new(UpmProjector::with_experts(experts.clone(), c, e, d, vb)?)
                    }
                    (p, _) => p.clone().unwrap_or_default().build(e, d, vb)?,
                };
                Some((p, vars))
            }
            None => None,
        };
        Ok(Self { modality: slot.modality, token_id, encoder, projector, encoder_vars })
    }
}

impl Pipeline {
    /// Builds every component: those with an architecture in `cfg` get fresh trainable
    /// variables, the others are loaded from what their slot names (registered names, or
    /// paths relative to `base`, the directory the configuration belongs to).
    pub fn init(cfg: &PipelineConfig, base: &Path, device: &Device) -> Result<Self> {
        Self::build(cfg, base, device, &Build::default())
    }

    /// [`Self::init`] with every fresh variable drawn from `seed` (the same seed and
    /// configuration give the same initial model).
    pub fn init_seeded(
        cfg: &PipelineConfig,
        base: &Path,
        device: &Device,
        seed: u64,
    ) -> Result<Self> {
        Self::build(cfg, base, device, &Build { seed: Some(seed), frozen_lora: None })
    }

    pub(crate) fn build(
        cfg: &PipelineConfig,
        base: &Path,
        device: &Device,
        how: &Build,
    ) -> Result<Self> {
        let seed = how.seed;
        cfg.validate()?;
        for (i, slot) in cfg.encoders.iter().enumerate() {
            if let Some(p) = &slot.preprocess {
                p.validate().map_err(|e| {
                    Error::config(format!("encoders[{i}].preprocess"), e.to_string())
                })?;
            }
        }
        let mut fresh = Fresh { device, seed, next: 0 };
        let (llm, llm_vars, lora_vars, llm_path) = match &cfg.llm {
            Some(name) => {
                let b = match (&how.frozen_lora, &cfg.llm_config) {
                    (Some(lora), None) => frozen_llm(cfg, name, base, device, lora.as_deref())?,
                    _ => build_llm(cfg, name, base, &mut fresh)?,
                };
                (Some(b.llm), b.vars, b.lora, b.path)
            }
            None => (None, None, None, None),
        };
        let tokenizer_path = match &cfg.tokenizer {
            Some(t) => Some(braid_hub::resolve_field(t, base, "tokenizer")?),
            None => llm_path,
        };
        let prompter = tokenizer_path.map(|p| prompter(cfg, &p)).transpose()?;
        let llm_dim = llm.as_ref().map(|l| l.hidden_size());
        let upm = match (llm_dim, shared_upm(cfg)?) {
            (Some(_), Some(c)) => {
                let (vars, vb) = fresh.vars();
                Some((Arc::new(UpmExperts::new(c, vb)?), vars))
            }
            _ => None,
        };
        let branches = cfg
            .encoders
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let id =
                    if llm.is_some() { Some(token_id(i, slot, prompter.as_ref())?) } else { None };
                Branch::new(i, slot, id, llm_dim, upm.as_ref().map(|(e, _)| e), base, &mut fresh)
            })
            .collect::<Result<Vec<_>>>()?;
        let head = match (&cfg.head, branches.first()) {
            (Some(h), Some(b)) => {
                let (vars, vb) = fresh.vars();
                Some((Head::new(h, b.encoder.output_dim(), vb)?, vars))
            }
            _ => None,
        };
        let fusion = match &cfg.fusion {
            Some(f) => {
                let (vars, vb) = fresh.vars();
                Some((braid_fusion::FusionClassifier::new(f, vb, device)?, vars))
            }
            None => None,
        };
        let generator = cfg
            .generator
            .as_ref()
            .map(|g| {
                let dir = braid_hub::resolve_field(&g.path, base, "generator.path")?;
                braid_generators::diffusion::StableDiffusion::from_folder(&dir, device)
            })
            .transpose()?;
        Ok(Self {
            cfg: cfg.clone(),
            base: base.to_path_buf(),
            generator,
            branches,
            upm,
            llm,
            llm_vars,
            lora_vars,
            head,
            fusion,
            prompter,
            device: device.clone(),
        })
    }
}

/// The settings of the experts the `upm` slots share: the first such slot's, which every
/// other must match (an error names the slot that differs).
fn shared_upm(cfg: &PipelineConfig) -> Result<Option<&UpmConfig>> {
    let mut first: Option<&UpmConfig> = None;
    for (i, slot) in cfg.encoders.iter().enumerate() {
        let Some(ProjectorConfig::Upm(c)) = &slot.projector else { continue };
        match first {
            Some(f) if !f.same_experts(c) => {
                return Err(Error::config(
                    format!("encoders[{i}].projector"),
                    "the UPM's experts are shared: `experts`, `layers`, `width`, `heads`, `ffn_multiple_of` and `norm_eps` must match the first upm slot's",
                ))
            }
            Some(_) => {}
            None => first = Some(c),
        }
    }
    Ok(first)
}

/// How to build: the seed of fresh variables, and whether the language model is frozen
/// (quantized weights kept quantized, fused kernels) with its LoRA from this file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Build {
    pub(crate) seed: Option<u64>,
    /// `Some(lora file)`: a frozen language model (`Some(None)`: without LoRA).
    pub(crate) frozen_lora: Option<Option<std::path::PathBuf>>,
}

/// The language model frozen for inference, its LoRA (if the configuration has one) read
/// from `lora_file` and applied in the frozen layers.
fn frozen_llm(
    cfg: &PipelineConfig,
    name: &str,
    base: &Path,
    device: &Device,
    lora_file: Option<&Path>,
) -> Result<BuiltLlm> {
    let path = braid_hub::resolve_field(name, base, "llm")?;
    let llm = match (&cfg.lora, lora_file) {
        (Some(l), Some(file)) => {
            let ckpt = Checkpoint::open(file)?;
            let tensors = ckpt
                .names()
                .into_iter()
                .map(|n| Ok((n.clone(), ckpt.tensor(&n, DType::F32, device)?)))
                .collect::<Result<HashMap<_, _>>>()?;
            let targets: Vec<&str> = l.targets.iter().map(String::as_str).collect();
            Llama::load_frozen_with_lora(
                &path,
                device,
                LoraConfig { rank: l.rank, alpha: l.alpha },
                &targets,
                &tensors,
            )
            .map_err(|e| Error::format(file, e.to_string()))?
            .0
        }
        (Some(_), None) => {
            return Err(Error::config(
                "lora",
                "a frozen model with LoRA needs its lora.safetensors",
            ))
        }
        (None, _) => Llama::load(&path, Weights::Frozen { dequantize: false }, device)?.0,
    };
    Ok(BuiltLlm { llm, vars: None, lora: None, path: Some(path) })
}

/// A language model as built, with what it was built from.
struct BuiltLlm {
    llm: Llama,
    /// Its own variables (fresh from `llm_config`).
    vars: Option<VarMap>,
    /// Its LoRA's variables.
    lora: Option<VarMap>,
    /// The file or folder it was loaded from.
    path: Option<std::path::PathBuf>,
}

/// The language model with its LoRA: fresh when `llm_config` gives its architecture,
/// loaded from what `name` names otherwise.
fn build_llm(cfg: &PipelineConfig, name: &str, base: &Path, fresh: &mut Fresh) -> Result<BuiltLlm> {
    let device = fresh.device;
    let path = if cfg.llm_config.is_some() {
        None
    } else {
        Some(braid_hub::resolve_field(name, base, "llm")?)
    };
    let (llm_vars, llm_vb) = match cfg.llm_config {
        Some(_) => {
            let (v, vb) = fresh.vars();
            (Some(v), Some(vb))
        }
        None => (None, None),
    };
    let lora = match &cfg.lora {
        Some(l) => {
            let (vars, vb) = fresh.vars();
            Some((l, vars, vb))
        }
        None => None,
    };
    let llm = match (&cfg.llm_config, llm_vb, &path, &lora) {
        (Some(c), Some(vb), _, None) => Llama::new(c, vb)?,
        (Some(c), Some(vb), _, Some((l, _, lvb))) => {
            let targets: Vec<&str> = l.targets.iter().map(String::as_str).collect();
            Llama::with_lora(
                c,
                vb,
                &LoraSpec::new(LoraConfig { rank: l.rank, alpha: l.alpha }, &targets, lvb.clone()),
            )?
        }
        (None, _, Some(p), None) => Llama::load(p, Weights::Trainable(DType::F32), device)?.0,
        (None, _, Some(p), Some((l, vars, _))) => {
            let targets: Vec<&str> = l.targets.iter().map(String::as_str).collect();
            Llama::load_with_lora(
                p,
                DType::F32,
                device,
                LoraConfig { rank: l.rank, alpha: l.alpha },
                &targets,
                vars,
            )?
            .0
        }
        _ => return Err(Error::config("llm", "names no language model")),
    };
    Ok(BuiltLlm { llm, vars: llm_vars, lora: lora.map(|(_, v, _)| v), path })
}

/// The tokenizer (GGUF metadata or a folder), its template and the slots' placeholders.
fn prompter(cfg: &PipelineConfig, path: &Path) -> Result<Prompter> {
    let tokenizer = if path.is_file() {
        Tokenizer::from_gguf(&Gguf::open(path)?)?
    } else {
        Tokenizer::from_folder(path)?
    };
    let template = ChatTemplate::from_config(tokenizer.config())?;
    let placeholders: Vec<(Modality, String)> =
        cfg.encoders.iter().map(|s| (s.modality, s.placeholder_text())).collect();
    Prompter::new(tokenizer, template, &placeholders, cfg.prompt.system.clone())
}

/// Slot `i`'s placeholder id: the prompter's (checked against an explicit `token_id`), or
/// the explicit one for a model without a tokenizer.
fn token_id(i: usize, slot: &EncoderSlot, prompter: Option<&Prompter>) -> Result<u32> {
    let field = format!("encoders[{i}].token_id");
    match (prompter.and_then(|p| p.placeholder_id(slot.modality)), slot.token_id) {
        (Some(found), Some(given)) if found != given => Err(Error::config(
            field,
            format!(
                "{given}, but the tokenizer gives `{}` the id {found}",
                slot.placeholder_text()
            ),
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(Error::config(
            field,
            "needed to find the placeholders in a prompt (this model has no tokenizer)",
        )),
    }
}
