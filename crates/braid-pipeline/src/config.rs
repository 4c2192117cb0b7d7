//! `pipeline.toml`: what a trained multimodal model directory is made of.

use std::path::Path;

use braid_core::{Error, Modality, Result};
use braid_llm::LlamaConfig;
use braid_projectors::ProjectorConfig;
use serde::{Deserialize, Serialize};

use braid_encoders::EncoderConfig;

use crate::{ContrastiveConfig, HeadConfig, Preprocess};

/// One modality's encoder and where its weights are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSlot {
    /// The modality whose placeholder (`<image>`) its tokens replace.
    pub modality: Modality,
    /// Registered name or path (relative to the model directory) of a pretrained encoder
    /// folder to load frozen (a Hugging Face CLIP folder) when `encoder` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The placeholder's text in a rendered prompt: a special token of the tokenizer
    /// (`<image>` for LLaVA checkpoints; `<empty_output>` for SmolLM2, whose vocabulary
    /// has no `<image>`). Conversations write the generic `<image>` / `<audio>` / `<imu>`;
    /// the prompt builder swaps in this text. Default: the generic placeholder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeholder: Option<String>,
    /// The placeholder's id (for models without a tokenizer; otherwise found from
    /// `placeholder`, and checked against it when both are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<u32>,
    /// The encoder's architecture; present when its weights are stored in the pipeline
    /// directory (`encoder.<modality>.safetensors`).
    #[serde(default)]
    pub encoder: Option<EncoderConfig>,
    /// How a file of this modality becomes the encoder's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preprocess: Option<Preprocess>,
    /// The projector from this encoder to the language model
    /// (`projector.<modality>.safetensors`; absent: the default MLP when the model has a
    /// language model, none for a classifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projector: Option<ProjectorConfig>,
}

impl EncoderSlot {
    /// The placeholder text of this slot's modality (see [`Self::placeholder`]).
    pub fn placeholder_text(&self) -> String {
        self.placeholder.clone().unwrap_or_else(|| generic_placeholder(self.modality))
    }
}

/// The placeholder conversations write for a modality: `<image>`, `<audio>`, `<imu>`, ...
pub fn generic_placeholder(modality: Modality) -> String {
    format!("<{modality}>")
}

/// How prompts are built: the system turn and where the chat template comes from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptConfig {
    /// A system turn opening every conversation that has none (`""`: an empty system
    /// turn instead of the template's default prompt; absent: the template's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// A multimodal model: encoders, projector and language model, and everything needed to
/// run it (preprocessing, prompt, tokenizer). Names are registered names (`braid fetch`)
/// or paths relative to the model directory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Encoders, one per modality.
    #[serde(default)]
    pub encoders: Vec<EncoderSlot>,
    /// Registered name or path of the language model (a GGUF file or a Hugging Face
    /// folder) when `llm_config` is absent; informational otherwise. Absent for a
    /// classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<String>,
    /// The language model's architecture; present when its weights are stored in the
    /// pipeline directory (`llm.safetensors`).
    #[serde(default)]
    pub llm_config: Option<LlamaConfig>,
    /// LoRA on the language model (`lora.safetensors`): trained by the `instruct` stage.
    #[serde(default)]
    pub lora: Option<LoraSettings>,
    /// Where the tokenizer and chat template come from: a folder with `tokenizer.json`
    /// or a GGUF file (registered name or path). Default: the language model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// How prompts are built.
    #[serde(default)]
    pub prompt: PromptConfig,
    /// A classification head over the (one) encoder's pooled tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadConfig>,
    /// Projections into a space shared with a text tower (a contrastive run's image
    /// encoder; used by zero-shot evaluation, not by the pipeline's own forward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrastive: Option<ContrastiveConfig>,
    /// A fusion classifier over several named inputs, each with its own encoder
    /// (`fusion.safetensors`); such a model has no `encoders`, language model or `head`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<braid_fusion::FusionConfig>,
    /// A generator (part 5): a Stable Diffusion folder in diffusers' layout, loaded frozen
    /// from its own files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSlot>,
}

/// Where a model's generator lies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSlot {
    /// The diffusers folder (`model_index.json`, `unet/`, ...), relative to the model
    /// directory.
    pub path: String,
}

/// LoRA on the language model's projections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank `r`.
    pub rank: usize,
    /// Scale numerator (`alpha / r`).
    pub alpha: f64,
    /// Projection names (PEFT's `target_modules`).
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    /// r = 8, alpha = 16 on every projection of the decoder: the seven of LLaMA and, for
    /// GLM, its stacked `gate_up_proj` (a name a model lacks matches nothing, as in PEFT).
    fn default() -> Self {
        let (llama, glm) = (braid_nn::LoraSpec::LLAMA_ALL, braid_nn::LoraSpec::GLM_ALL);
        let mut targets: Vec<String> = llama.iter().map(|t| t.to_string()).collect();
        targets.extend(glm.iter().filter(|t| !llama.contains(t)).map(|t| t.to_string()));
        Self { rank: 8, alpha: 16.0, targets }
    }
}

impl PipelineConfig {
    /// The slot of `modality`, if the model has one.
    pub fn slot(&self, modality: Modality) -> Option<&EncoderSlot> {
        self.encoders.iter().find(|s| s.modality == modality)
    }

    /// Writes `pipeline.toml` text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Invalid(format!("pipeline.toml: {e}")))
    }

    /// Reads and validates a `pipeline.toml`; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: Self =
            toml::from_str(&text).map_err(|e| Error::format(path, e.message().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot: no modality twice, a language model or a head.
    pub fn validate(&self) -> Result<()> {
        if let Some(f) = &self.fusion {
            if !self.encoders.is_empty() || self.llm.is_some() || self.head.is_some() {
                return Err(Error::config(
                    "fusion",
                    "a fusion model holds its own encoders and classes: it has no `encoders`, `llm` or `head`",
                ));
            }
            return f.validate("fusion");
        }
        match (&self.llm, &self.head) {
            (Some(l), _) if l.trim().is_empty() => {
                return Err(Error::config("llm", "must name a language model"))
            }
            (None, None) if self.encoders.is_empty() && self.generator.is_none() => {
                return Err(Error::config(
                    "llm",
                    "a model needs encoders, a language model (`llm`) or both",
                ))
            }
            (_, Some(_)) if self.encoders.len() != 1 => {
                return Err(Error::config(
                    "head",
                    format!(
                        "a head reads exactly one encoder; this model has {}",
                        self.encoders.len()
                    ),
                ))
            }
            _ => {}
        }
        for (i, slot) in self.encoders.iter().enumerate() {
            if self.encoders[..i].iter().any(|s| s.modality == slot.modality) {
                return Err(Error::config(
                    format!("encoders[{i}].modality"),
                    format!("`{}` has two encoders", slot.modality),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn loads_and_rejects_unknown_fields() {
        let f = write("llm = \"smollm2\"\n[[encoders]]\nmodality = \"image\"\nmodel = \"clip\"\n");
        let cfg = PipelineConfig::load(f.path()).unwrap();
        assert_eq!(cfg.encoders[0].modality, Modality::Image);
        assert_eq!(cfg.encoders[0].placeholder_text(), "<image>");
        assert_eq!(PipelineConfig::load(write(&cfg.to_toml().unwrap()).path()).unwrap(), cfg);
        let f = write("llm = \"smollm2\"\nprojecter = \"mlp\"\n");
        let err = PipelineConfig::load(f.path()).unwrap_err().to_string();
        assert!(err.contains("projecter"), "{err}");
        let f = write("llm = \"x\"\n[[encoders]]\nmodality = \"imu\"\nmodel = \"a\"\n[[encoders]]\nmodality = \"imu\"\nmodel = \"b\"\n");
        let err = PipelineConfig::load(f.path()).unwrap_err().to_string();
        assert!(err.contains("encoders[1].modality"), "{err}");
    }

    #[test]
    fn unknown_projector_kind_lists_the_kinds() {
        let f = write("llm = \"x\"\n[[encoders]]\nmodality = \"image\"\nmodel = \"a\"\n[encoders.projector]\ntype = \"perceiver\"\n");
        let err = PipelineConfig::load(f.path()).unwrap_err().to_string();
        assert!(err.contains("perceiver"), "{err}");
        for kind in ProjectorConfig::KINDS {
            assert!(err.contains(kind), "{kind} missing from: {err}");
        }
    }
}
