//! `LlavaConfig`: the fields of a Hugging Face LLaVA `config.json`
//! (transformers `models/llava/configuration_llava.py`), and the remap table from the
//! checkpoint layouts transformers has written to the module tree of [`super::Llava`].

use std::path::Path;

use braid_core::checkpoint::RemapTable;
use braid_core::{Error, Result};
use braid_encoders::image::VitConfig;
use braid_llm::LlamaConfig;
use braid_nn::Activation;
use serde::{Deserialize, Serialize};

/// A LLaVA-1.5 model: CLIP vision tower, two-layer MLP projector, LLaMA decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlavaConfig {
    /// The CLIP vision tower.
    pub vision_config: VitConfig,
    /// The language model.
    pub text_config: LlamaConfig,
    /// The id of `<image>`; the processor repeats it once per image token.
    #[serde(default = "default_image_token", alias = "image_token_id")]
    pub image_token_index: u32,
    /// Activation between the projector's layers.
    #[serde(default = "default_act")]
    pub projector_hidden_act: Activation,
    /// Which hidden state of the vision tower feeds the projector (-2 in LLaVA-1.5).
    #[serde(default = "default_layer")]
    pub vision_feature_layer: isize,
    /// "default" drops the class token, "full" keeps it.
    #[serde(default = "default_strategy")]
    pub vision_feature_select_strategy: String,
    /// Biases on the projector's layers.
    #[serde(default = "default_true")]
    pub multimodal_projector_bias: bool,
}

fn default_image_token() -> u32 {
    32000
}
fn default_act() -> Activation {
    Activation::Gelu
}
fn default_layer() -> isize {
    -2
}
fn default_strategy() -> String {
    "default".into()
}
fn default_true() -> bool {
    true
}

impl LlavaConfig {
    /// Reads a Hugging Face LLaVA `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        fill_text_defaults(&mut json);
        let cfg: Self =
            serde_json::from_value(json).map_err(|e| Error::format(path, e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the choices serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.text_config.validate()?;
        if !["default", "full"].contains(&self.vision_feature_select_strategy.as_str()) {
            return Err(Error::unknown(
                "vision_feature_select_strategy",
                &self.vision_feature_select_strategy,
                ["default", "full"],
            ));
        }
        Ok(())
    }

    /// Whether the class token is dropped from the vision features.
    pub fn drops_cls(&self) -> bool {
        self.vision_feature_select_strategy == "default"
    }

    /// Image tokens per image: one per patch, plus the class token under "full".
    pub fn tokens_per_image(&self) -> usize {
        let side = self.vision_config.image_size / self.vision_config.patch_size.max(1);
        side * side + usize::from(!self.drops_cls())
    }
}

/// transformers `LlamaConfig` defaults (LLaMA-7B), which llava-hf configs rely on: their
/// `text_config` names only what differs (`vocab_size`, `max_position_embeddings`, ...).
const LLAMA_DEFAULTS: [(&str, u64); 5] = [
    ("vocab_size", 32000),
    ("hidden_size", 4096),
    ("intermediate_size", 11008),
    ("num_hidden_layers", 32),
    ("num_attention_heads", 32),
];

fn fill_text_defaults(json: &mut serde_json::Value) {
    let Some(text) = json.get_mut("text_config").and_then(|t| t.as_object_mut()) else { return };
    for (key, value) in LLAMA_DEFAULTS {
        text.entry(key).or_insert(value.into());
    }
}

/// Checkpoint-name prefixes -> module prefixes of [`super::Llava`]: the transformers 4 /
/// llava-hf layout (`vision_tower.vision_model.*`, `language_model.model.*`), transformers
/// 5's in-memory layout (`model.vision_tower.*`, `model.language_model.*`, `lm_head.*`)
/// and the layout transformers 5.24 saves (`vision_tower.*`, `language_model.model.*`).
const PREFIXES: [(&str, &str); 6] = [
    ("model.vision_tower.vision_model.", "vision_tower."),
    ("model.vision_tower.", "vision_tower."),
    ("vision_tower.vision_model.", "vision_tower."),
    ("model.multi_modal_projector.", "multi_modal_projector."),
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
];

/// A remap table renaming each of `names` (a checkpoint's tensors) by the first prefix
/// rule that matches; names already in the module layout keep themselves.
pub fn llava_remap<S: AsRef<str>>(names: &[S]) -> RemapTable {
    names.iter().fold(RemapTable::new(), |table, name| {
        let name = name.as_ref();
        match PREFIXES.iter().find(|(from, _)| name.starts_with(from)) {
            Some((from, to)) => table.rule(name, &format!("{to}{}", &name[from.len()..])),
            None => table,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_hf_text_config_takes_llama_defaults() {
        let mut json = serde_json::json!({
            "vision_config": {"hidden_size": 1024, "image_size": 336, "patch_size": 14},
            "text_config": {"model_type": "llama", "vocab_size": 32064},
        });
        fill_text_defaults(&mut json);
        let cfg: LlavaConfig = serde_json::from_value(json).unwrap();
        assert_eq!((cfg.text_config.vocab_size, cfg.text_config.hidden_size), (32064, 4096));
        assert_eq!((cfg.image_token_index, cfg.tokens_per_image()), (32000, 576));
    }

    #[test]
    fn remaps_every_layout_to_the_module_tree() {
        let names = [
            "model.vision_tower.vision_model.embeddings.class_embedding",
            "model.language_model.layers.0.mlp.up_proj.weight",
            "lm_head.weight",
            "vision_tower.pre_layrnorm.weight",
        ];
        let table = llava_remap(&names);
        let to = |n: &str| table.map(n).map(|(t, _)| t);
        assert_eq!(to(names[0]).as_deref(), Some("vision_tower.embeddings.class_embedding"));
        assert_eq!(
            to(names[1]).as_deref(),
            Some("language_model.model.layers.0.mlp.up_proj.weight")
        );
        assert_eq!(to(names[2]).as_deref(), Some("language_model.lm_head.weight"));
        assert_eq!(to(names[3]), None);
    }
}
