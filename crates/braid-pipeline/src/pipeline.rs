//! [`Pipeline`]: encoders (1) + input projectors (2) + language model (3) from one
//! [`PipelineConfig`]. A prompt's placeholder ids (one per item, as the original LLaVA
//! code's `IMAGE_TOKEN_INDEX`) are replaced by that item's projected tokens, so an image
//! of 576 tokens takes one id in the prompt. References: LLaVA
//! `llava/model/llava_arch.py` `prepare_inputs_labels_for_multimodal`; transformers
//! `models/llava/modeling_llava.py` (which instead expects the ids pre-expanded, see
//! [`crate::Llava`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use braid_core::{Error, Features, Modality, Result};
use braid_encoders::Encoder;
use braid_llm::{LanguageModel, Llama, LmOutput};
use braid_projectors::{InputProjector, UpmExperts};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::{Head, PipelineConfig, Prompter};

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
    /// The placeholder's id (models with a language model).
    pub(crate) token_id: Option<u32>,
    pub(crate) encoder: Box<dyn Encoder>,
    /// The projector into the language model, with its variables (models with one).
    pub(crate) projector: Option<(Box<dyn InputProjector>, VarMap)>,
    /// `None` for an encoder loaded frozen from the folder its slot names.
    pub(crate) encoder_vars: Option<VarMap>,
}

/// Encoders + projectors + language model, or encoders + a classification head.
pub struct Pipeline {
    pub(crate) cfg: PipelineConfig,
    /// The directory `cfg`'s relative paths start from (the model directory it was opened
    /// from, or the `base` it was built with).
    pub(crate) base: PathBuf,
    pub(crate) branches: Vec<Branch>,
    /// The UPM experts the slots with a `upm` projector share, with their variables
    /// (`projector.upm`).
    pub(crate) upm: Option<(Arc<UpmExperts>, VarMap)>,
    /// `None` for a classifier.
    pub(crate) llm: Option<Llama>,
    /// `None` for a language model loaded frozen from the folder `llm` names.
    pub(crate) llm_vars: Option<VarMap>,
    /// LoRA on the language model, when configured.
    pub(crate) lora_vars: Option<VarMap>,
    /// A classification head with its variables.
    pub(crate) head: Option<(Head, VarMap)>,
    /// A fusion classifier with its variables.
    pub(crate) fusion: Option<(braid_fusion::FusionClassifier, VarMap)>,
    /// The generator, loaded from the folder `generator.path` names.
    pub(crate) generator: Option<braid_generators::diffusion::StableDiffusion>,
    /// Prompts in the model's template; `None` for a model without a tokenizer.
    pub(crate) prompter: Option<Prompter>,
    pub(crate) device: Device,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Branch {
    fn projector(&self) -> Result<&dyn InputProjector> {
        match &self.projector {
            Some((p, _)) => Ok(p.as_ref()),
            None => Err(Error::Invalid(format!("the {} encoder has no projector", self.modality))),
        }
    }

    /// input: one item, batch 1 -> projected tokens [m, d_llm]
    fn tokens(&self, input: &Input) -> Result<Tensor> {
        let f = self.encoder.encode(&input.data, input.mask.as_ref())?;
        let p = self.projector()?.project(&Features::new(f.tokens, f.mask)?)?;
        Ok(p.tokens.squeeze(0)?)
    }
}

impl Pipeline {
    /// The prompt builder (tokenizer, template, placeholders, system turn).
    pub fn prompter(&self) -> Result<&Prompter> {
        self.prompter.as_ref().ok_or_else(|| Error::config("tokenizer", "this model has no tokenizer: name one (a folder with tokenizer.json or a GGUF file)"))
    }

    /// Reads the file `path` of `modality` with its slot's preprocessing -> one input.
    pub fn load_input(&self, modality: Modality, path: &Path) -> Result<Input> {
        self.preprocess(modality)?.load(path, &self.device)
    }

    /// An image held in memory (an upload) with its slot's preprocessing -> one input;
    /// `name` stands for it in errors.
    pub fn load_input_bytes(&self, modality: Modality, bytes: &[u8], name: &Path) -> Result<Input> {
        self.preprocess(modality)?.load_bytes(bytes, name, &self.device)
    }

    /// An IMU recording sent as rows of channel values (an upload), sampled at `rate_hz`
    /// when the sender says, with the IMU slot's preprocessing -> one input; `name` stands
    /// for it in errors.
    pub fn load_imu_rows(
        &self,
        rows: &[Vec<f32>],
        rate_hz: Option<f64>,
        name: &Path,
    ) -> Result<Input> {
        let crate::Preprocess::Imu(p) = self.preprocess(Modality::Imu)? else {
            return Err(Error::config("encoders.imu.preprocess", "is not an IMU preprocessing"));
        };
        let data = p.from_rows(rows, rate_hz, name, &self.device)?;
        Ok(Input { modality: Modality::Imu, data, mask: None })
    }

    fn preprocess(&self, modality: Modality) -> Result<&crate::Preprocess> {
        let slot = self.cfg.slot(modality).ok_or_else(|| self.no_branch(modality))?;
        slot.preprocess.as_ref().ok_or_else(|| {
            Error::config(
                format!("encoders.{modality}.preprocess"),
                "this model does not say how to read its inputs",
            )
        })
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
    pub fn llm(&self) -> Result<&Llama> {
        self.llm.as_ref().ok_or_else(|| {
            Error::config(
                "llm",
                "this model has no language model (it is a classifier: see [head])",
            )
        })
    }

    /// The classification head's class names, if the model is a classifier.
    pub fn classes(&self) -> Option<&[String]> {
        match (&self.head, &self.fusion) {
            (Some((h, _)), _) => Some(h.classes()),
            (None, Some((f, _))) => Some(&f.config().classes),
            _ => None,
        }
    }

    /// The generator, if the model has one.
    pub fn generator(&self) -> Option<&braid_generators::diffusion::StableDiffusion> {
        self.generator.as_ref()
    }

    /// The fusion classifier, if the model is one.
    pub fn fusion(&self) -> Option<&braid_fusion::FusionClassifier> {
        self.fusion.as_ref().map(|(f, _)| f)
    }

    /// The tokens of `input`'s encoder (no projector): what an encoder model embeds.
    ///
    /// input: a batch of the encoder's inputs -> tokens [batch, n, D] with their mask
    pub fn encode(&self, input: &Input) -> Result<Features> {
        self.branch(input.modality)?.encoder.encode(&input.data, input.mask.as_ref())
    }

    /// Logits of a classifier: the first encoder's tokens pooled through the head.
    ///
    /// input: a batch of the encoder's inputs -> [batch, classes]
    pub fn classify(&self, input: &Input) -> Result<Tensor> {
        let (head, _) = self
            .head
            .as_ref()
            .ok_or_else(|| Error::config("head", "this model has no classification head"))?;
        let f = self.branch(input.modality)?.encoder.encode(&input.data, input.mask.as_ref())?;
        head.logits(&f)
    }

    /// The projector's routing weights over its experts for `input` (a UPM slot), `None`
    /// for a projector that does not route.
    ///
    /// input: one item -> [1, m, experts]
    pub fn routing_weights(&self, input: &Input) -> Result<Option<Tensor>> {
        let b = self.branch(input.modality)?;
        let f = b.encoder.encode(&input.data, input.mask.as_ref())?;
        b.projector()?.routing_weights(&f)
    }

    /// Every trainable variable map by component name (`llm`, `encoder.image`,
    /// `projector.image`, `projector.upm` for shared experts, ...), as saved in the model
    /// directory.
    pub fn var_maps(&self) -> Vec<(String, &VarMap)> {
        let mut maps: Vec<(String, &VarMap)> =
            self.llm_vars.iter().map(|v| ("llm".to_string(), v)).collect();
        maps.extend(self.lora_vars.iter().map(|v| ("lora".to_string(), v)));
        for b in &self.branches {
            if let Some(v) = &b.encoder_vars {
                maps.push((format!("encoder.{}", b.modality), v));
            }
            if let Some((_, v)) = &b.projector {
                maps.push((format!("projector.{}", b.modality), v));
            }
        }
        maps.extend(self.upm.iter().map(|(_, v)| ("projector.upm".to_string(), v)));
        maps.extend(self.head.iter().map(|(_, v)| ("head".to_string(), v)));
        maps.extend(self.fusion.iter().map(|(_, v)| ("fusion".to_string(), v)));
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
        self.branches
            .iter()
            .find(|b| b.modality == modality)
            .ok_or_else(|| self.no_branch(modality))
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
    pub fn embed_labelled(
        &self,
        ids: &[u32],
        labels: Option<&[i64]>,
        inputs: &[Input],
    ) -> Result<(Tensor, Vec<i64>)> {
        if let Some(l) = labels.filter(|l| l.len() != ids.len()) {
            return Err(Error::shape("labels (one per prompt id)", &[ids.len()], &[l.len()]));
        }
        let llm = self.llm()?;
        for input in inputs {
            self.branch(input.modality)?;
        }
        for b in &self.branches {
            let slots = ids.iter().filter(|&&id| Some(id) == b.token_id).count();
            let given = inputs.iter().filter(|x| x.modality == b.modality).count();
            if slots != given {
                return Err(Error::Invalid(format!(
                    "the prompt has {slots} {m} placeholders but {given} {m} inputs were given",
                    m = b.modality
                )));
            }
        }
        // A placeholder's own embedding is never used (its id may lie past the vocabulary,
        // added to the tokenizer only): look up id 0 in its place.
        let lookup: Vec<u32> = ids
            .iter()
            .map(|&id| if self.branches.iter().any(|b| b.token_id == Some(id)) { 0 } else { id })
            .collect();
        let text = llm
            .embed_tokens(&Tensor::new(lookup.as_slice(), &self.device)?.unsqueeze(0)?)?
            .squeeze(0)?;
        let mut used = vec![0usize; self.branches.len()];
        let (mut parts, mut run_start, mut out_labels) = (Vec::new(), 0, Vec::new());
        let keep_labels = |from: usize, to: usize, out: &mut Vec<i64>| {
            if let Some(l) = labels {
                out.extend_from_slice(&l[from..to]);
            }
        };
        for (i, id) in ids.iter().enumerate() {
            let Some(k) = self.branches.iter().position(|b| b.token_id == Some(*id)) else {
                continue;
            };
            if i > run_start {
                parts.push(text.narrow(0, run_start, i - run_start)?);
                keep_labels(run_start, i, &mut out_labels);
            }
            run_start = i + 1;
            let b = &self.branches[k];
            let input = inputs.iter().filter(|x| x.modality == b.modality).nth(used[k]);
            used[k] += 1;
            let input =
                input.ok_or_else(|| Error::Invalid("a placeholder without an input".into()))?;
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
        self.llm()?.forward_embeds(&embeds, None, None)
    }
}
