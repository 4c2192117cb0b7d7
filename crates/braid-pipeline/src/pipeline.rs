//! [`Pipeline`]: encoders (1) + input projectors (2) + language model (3) from one
//! [`PipelineConfig`]. A prompt's placeholder ids (one per item, as the original LLaVA
//! code's `IMAGE_TOKEN_INDEX`) are replaced by that item's projected tokens, so an image
//! of 576 tokens takes one id in the prompt. References: LLaVA
//! `llava/model/llava_arch.py` `prepare_inputs_labels_for_multimodal`; transformers
//! `models/llava/modeling_llava.py` (which instead expects the ids pre-expanded, see
//! [`crate::Llava`]).

use std::path::Path;

use braid_core::checkpoint::Gguf;
use braid_core::{Error, Features, Modality, Result};
use braid_encoders::image::Clip;
use braid_encoders::Encoder;
use braid_llm::{ChatTemplate, LanguageModel, Llama, LmOutput, Tokenizer, Weights};
use braid_nn::{LoraConfig, LoraSpec};
use braid_projectors::InputProjector;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};

use crate::encoder_config::ImageTower;
use crate::{EncoderSlot, PipelineConfig, Prompter};

/// One item for a placeholder: an image, a clip of audio, an IMU window.
#[derive(Debug, Clone)]
pub struct Input {
    /// Whose placeholder it fills.
    pub modality: Modality,
    /// The encoder's input for one item, batch 1 (see `braid_encoders::Encoder`).
    pub data: Tensor,
    /// Its padding mask, if any.
    pub mask: Option<Tensor>,
}

/// One modality's encoder and projector, each with its own variables (freezing is
/// structural: a training stage picks the maps it optimises).
pub(crate) struct Branch {
    pub(crate) modality: Modality,
    pub(crate) token_id: u32,
    pub(crate) encoder: Box<dyn Encoder>,
    pub(crate) projector: Box<dyn InputProjector>,
    /// `None` for an encoder loaded frozen from the folder its slot names.
    pub(crate) encoder_vars: Option<VarMap>,
    pub(crate) projector_vars: VarMap,
}

/// Encoders + projectors + language model.
pub struct Pipeline {
    pub(crate) cfg: PipelineConfig,
    pub(crate) branches: Vec<Branch>,
    pub(crate) llm: Llama,
    /// `None` for a language model loaded frozen from the folder `llm` names.
    pub(crate) llm_vars: Option<VarMap>,
    /// LoRA on the language model, when configured.
    pub(crate) lora_vars: Option<VarMap>,
    /// Prompts in the model's template; `None` for a model without a tokenizer.
    pub(crate) prompter: Option<Prompter>,
    pub(crate) device: Device,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

fn fresh(device: &Device) -> (VarMap, VarBuilder<'static>) {
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
    (vars, vb)
}

impl Branch {
    fn new(i: usize, slot: &EncoderSlot, token_id: u32, llm_dim: usize, base: &Path, device: &Device) -> Result<Self> {
        let (encoder, encoder_vars): (Box<dyn Encoder>, _) = match (&slot.encoder, &slot.model) {
            (Some(cfg), _) => {
                let (vars, vb) = fresh(device);
                (cfg.build(vb)?, Some(vars))
            }
            (None, Some(model)) if slot.modality == Modality::Image => {
                let path = braid_hub::resolve_field(model, base, &format!("encoders[{i}].model"))?;
                let (clip, _) = Clip::load(&path, device)?;
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
        let (projector_vars, vb) = fresh(device);
        let projector = slot.projector.build(encoder.output_dim(), llm_dim, vb)?;
        Ok(Self { modality: slot.modality, token_id, encoder, projector, encoder_vars, projector_vars })
    }

    /// input: one item, batch 1 -> projected tokens [m, d_llm]
    fn tokens(&self, input: &Input) -> Result<Tensor> {
        let f = self.encoder.encode(&input.data, input.mask.as_ref())?;
        let p = self.projector.project(&Features::new(f.tokens, f.mask)?)?;
        Ok(p.tokens.squeeze(0)?)
    }
}

impl Pipeline {
    /// Builds every component: those with an architecture in `cfg` get fresh trainable
    /// variables, the others are loaded from what their slot names (registered names, or
    /// paths relative to `base`, the directory the configuration belongs to).
    pub fn init(cfg: &PipelineConfig, base: &Path, device: &Device) -> Result<Self> {
        cfg.validate()?;
        for (i, slot) in cfg.encoders.iter().enumerate() {
            if let Some(p) = &slot.preprocess {
                p.validate().map_err(|e| Error::config(format!("encoders[{i}].preprocess"), e.to_string()))?;
            }
        }
        let lora_vars = cfg.lora.as_ref().map(|_| VarMap::new());
        let llm_path = if cfg.llm_config.is_some() { None } else { Some(braid_hub::resolve_field(&cfg.llm, base, "llm")?) };
        let lora = cfg.lora.as_ref().zip(lora_vars.as_ref()).map(|(l, vars)| {
            let targets: Vec<&str> = l.targets.iter().map(String::as_str).collect();
            let spec_vb = VarBuilder::from_varmap(vars, DType::F32, device);
            (LoraConfig { rank: l.rank, alpha: l.alpha }, targets, spec_vb)
        });
        let (llm, llm_vars) = match (&cfg.llm_config, &llm_path, lora) {
            (Some(c), _, None) => {
                let (vars, vb) = fresh(device);
                (Llama::new(c, vb)?, Some(vars))
            }
            (Some(c), _, Some((lc, targets, lvb))) => {
                let (vars, vb) = fresh(device);
                (Llama::with_lora(c, vb, &LoraSpec::new(lc, &targets, lvb))?, Some(vars))
            }
            (None, Some(path), None) => (Llama::load(path, Weights::Trainable(DType::F32), device)?.0, None),
            (None, Some(path), Some((lc, targets, _))) => {
                let vars = lora_vars.as_ref().ok_or_else(|| Error::Invalid("lora variables".into()))?;
                (Llama::load_with_lora(path, DType::F32, device, lc, &targets, vars)?.0, None)
            }
            (None, None, _) => return Err(Error::config("llm", "names no language model")),
        };
        let tokenizer_path = match &cfg.tokenizer {
            Some(t) => Some(braid_hub::resolve_field(t, base, "tokenizer")?),
            None => llm_path,
        };
        let prompter = tokenizer_path.map(|p| prompter(cfg, &p)).transpose()?;
        let branches = cfg
            .encoders
            .iter()
            .enumerate()
            .map(|(i, slot)| {
                let id = token_id(i, slot, prompter.as_ref())?;
                Branch::new(i, slot, id, llm.hidden_size(), base, device)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { cfg: cfg.clone(), branches, llm, llm_vars, lora_vars, prompter, device: device.clone() })
    }

    /// The prompt builder (tokenizer, template, placeholders, system turn).
    pub fn prompter(&self) -> Result<&Prompter> {
        self.prompter.as_ref().ok_or_else(|| Error::config("tokenizer", "this model has no tokenizer: name one (a folder with tokenizer.json or a GGUF file)"))
    }

    /// Reads the file `path` of `modality` with its slot's preprocessing -> one input.
    pub fn load_input(&self, modality: Modality, path: &Path) -> Result<Input> {
        let slot = self.cfg.slot(modality).ok_or_else(|| self.no_branch(modality))?;
        let pre = slot.preprocess.as_ref().ok_or_else(|| {
            Error::config(format!("encoders.{modality}.preprocess"), "this model does not say how to read its inputs")
        })?;
        pre.load(path, &self.device)
    }

    /// The device its tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// The language model (for decoding with a cache after [`Self::embed_prompt`]).
    pub fn llm(&self) -> &Llama {
        &self.llm
    }

    /// Every trainable variable map by component name (`llm`, `encoder.image`,
    /// `projector.image`, ...), as saved in the model directory.
    pub fn var_maps(&self) -> Vec<(String, &VarMap)> {
        let mut maps: Vec<(String, &VarMap)> = self.llm_vars.iter().map(|v| ("llm".to_string(), v)).collect();
        maps.extend(self.lora_vars.iter().map(|v| ("lora".to_string(), v)));
        for b in &self.branches {
            if let Some(v) = &b.encoder_vars {
                maps.push((format!("encoder.{}", b.modality), v));
            }
            maps.push((format!("projector.{}", b.modality), &b.projector_vars));
        }
        maps
    }

    fn no_branch(&self, modality: Modality) -> Error {
        let have: Vec<String> = self.branches.iter().map(|b| b.modality.to_string()).collect();
        Error::Invalid(format!(
            "an {modality} input was given but this model has no {modality} encoder (it has: {})",
            if have.is_empty() { "none".to_string() } else { have.join(", ") }
        ))
    }

    fn branch(&self, modality: Modality) -> Result<&Branch> {
        self.branches.iter().find(|b| b.modality == modality).ok_or_else(|| self.no_branch(modality))
    }

    /// Text embeddings with each placeholder id replaced by the projected tokens of the
    /// next input of its modality. Errors when an input has no encoder or when a
    /// modality's placeholders and inputs differ in number (naming both counts).
    ///
    /// ids: one prompt's token ids (t of them) -> [1, t - placeholders + projected, d_llm]
    pub fn embed_prompt(&self, ids: &[u32], inputs: &[Input]) -> Result<Tensor> {
        Ok(self.embed_labelled(ids, None, inputs)?.0)
    }

    /// As [`Self::embed_prompt`], also expanding per-id `labels` (for a loss) to the
    /// spliced sequence: a placeholder's projected tokens get -100 (never predicted).
    ///
    /// ids, labels: t each -> ([1, t', d_llm], t' labels; empty when `labels` is `None`)
    pub fn embed_labelled(&self, ids: &[u32], labels: Option<&[i64]>, inputs: &[Input]) -> Result<(Tensor, Vec<i64>)> {
        if let Some(l) = labels.filter(|l| l.len() != ids.len()) {
            return Err(Error::shape("labels (one per prompt id)", &[ids.len()], &[l.len()]));
        }
        for input in inputs {
            self.branch(input.modality)?;
        }
        for b in &self.branches {
            let slots = ids.iter().filter(|&&id| id == b.token_id).count();
            let given = inputs.iter().filter(|x| x.modality == b.modality).count();
            if slots != given {
                return Err(Error::Invalid(format!(
                    "the prompt has {slots} {m} placeholders but {given} {m} inputs were given",
                    m = b.modality
                )));
            }
        }
        let text = self.llm.embed_tokens(&Tensor::new(ids, &self.device)?.unsqueeze(0)?)?.squeeze(0)?;
        let mut used = vec![0usize; self.branches.len()];
        let (mut parts, mut run_start, mut out_labels) = (Vec::new(), 0, Vec::new());
        let keep_labels = |from: usize, to: usize, out: &mut Vec<i64>| {
            if let Some(l) = labels {
                out.extend_from_slice(&l[from..to]);
            }
        };
        for (i, id) in ids.iter().enumerate() {
            let Some(k) = self.branches.iter().position(|b| b.token_id == *id) else { continue };
            if i > run_start {
                parts.push(text.narrow(0, run_start, i - run_start)?);
                keep_labels(run_start, i, &mut out_labels);
            }
            run_start = i + 1;
            let b = &self.branches[k];
            let input = inputs.iter().filter(|x| x.modality == b.modality).nth(used[k]);
            used[k] += 1;
            let input = input.ok_or_else(|| Error::Invalid("a placeholder without an input".into()))?;
            let tokens = b.tokens(input)?.to_dtype(text.dtype())?;
            if labels.is_some() {
                out_labels.extend(std::iter::repeat_n(-100, tokens.dim(0)?));
            }
            parts.push(tokens);
        }
        if ids.len() > run_start {
            parts.push(text.narrow(0, run_start, ids.len() - run_start)?);
            keep_labels(run_start, ids.len(), &mut out_labels);
        }
        Ok((Tensor::cat(&parts, 0)?.unsqueeze(0)?, out_labels))
    }

    /// ids: one prompt (t ids) -> [`LmOutput`] over the spliced sequence, `[1, t', vocab]`.
    pub fn forward(&self, ids: &[u32], inputs: &[Input]) -> Result<LmOutput> {
        let embeds = self.embed_prompt(ids, inputs)?;
        self.llm.forward_embeds(&embeds, None, None)
    }
}

/// The tokenizer (GGUF metadata or a folder), its template and the slots' placeholders.
fn prompter(cfg: &PipelineConfig, path: &Path) -> Result<Prompter> {
    let tokenizer = if path.is_file() { Tokenizer::from_gguf(&Gguf::open(path)?)? } else { Tokenizer::from_folder(path)? };
    let template = ChatTemplate::from_config(tokenizer.config())?;
    let placeholders: Vec<(Modality, String)> = cfg.encoders.iter().map(|s| (s.modality, s.placeholder_text())).collect();
    Prompter::new(tokenizer, template, &placeholders, cfg.prompt.system.clone())
}

/// Slot `i`'s placeholder id: the prompter's (checked against an explicit `token_id`), or
/// the explicit one for a model without a tokenizer.
fn token_id(i: usize, slot: &EncoderSlot, prompter: Option<&Prompter>) -> Result<u32> {
    let field = format!("encoders[{i}].token_id");
    match (prompter.and_then(|p| p.placeholder_id(slot.modality)), slot.token_id) {
        (Some(found), Some(given)) if found != given => Err(Error::config(
            field,
            format!("{given}, but the tokenizer gives `{}` the id {found}", slot.placeholder_text()),
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(Error::config(field, "needed to find the placeholders in a prompt (this model has no tokenizer)")),
    }
}

