//! A `contrastive` recipe that trains Braid's own vision encoder: a small CLIP-style ViT
//! learns a shared representation with a frozen text tower (CLIP: Radford et al. 2021,
//! "Learning Transferable Visual Models From Natural Language Supervision"; with the text
//! tower locked as in LiT, Zhai et al. 2022). Each easy-VQA training image is paired with
//! the all-MiniLM-L6-v2 embedding of its caption ("a blue rectangle"); images sharing a
//! caption are positives of each other (multi-positive InfoNCE, [`ContrastiveTask`]).
//! Evaluation is zero-shot: an image's caption is the nearest of the 24 possible ones.
//!
//! ```toml
//! stage = "contrastive"
//! out_dir = "runs/easyvqa-vision"
//! [data]            # see `VisionData`
//! path = "easy-vqa"
//! [model]           # see `VisionModelSpec`
//! text = "minilm"
//! [model.vit]       # see `braid_encoders::image::VitConfig`
//! hidden_size = 96
//! [train]           # see `TrainConfig`
//! ```
//!
//! The model directory (`out_dir/model/`): `pipeline.toml` ([`VisionModelFile`]: the image
//! slot and `[contrastive]`), `encoder.image.safetensors` (the ViT, names as [`Vit::new`]
//! reads them), `contrastive.safetensors` (`visual_projection.weight`, and
//! `text_projection.weight` when `embed_dim` is set), `recipe.toml`, `eval.json`.

mod model;
mod run;

use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_encoders::image::VitConfig;
use serde::{Deserialize, Deserializer, Serialize};

pub use model::{VisionModel, VisionModelFile, ENCODER_FILE};
pub use run::{evaluate_vision, train_vision, VisionReport};

use crate::TrainConfig;

/// A vision-encoder run, as written in `recipes/easyvqa/vision.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionRecipe {
    /// Run directory (checkpoints, metrics, plots; the trained model in `model/`).
    pub out_dir: PathBuf,
    /// The images.
    pub data: VisionData,
    /// The towers.
    pub model: VisionModelSpec,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainConfig,
}

/// Where easy-VQA is and how much of it to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionData {
    /// The easy-VQA folder (`answers.txt`, `train/`, `test/`); a registered dataset name
    /// (`easy-vqa`) is resolved to its fetched folder by the caller ([`VisionRecipe::resolve`]).
    pub path: PathBuf,
    /// Use only the first this many captioned images of each split (smoke runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_images: Option<usize>,
    /// Show each training image under a random one of the square's 8 symmetries (flips,
    /// quarter turns), which keep its caption: the ViT otherwise overfits the 3,6k images.
    #[serde(default)]
    pub augment: bool,
}

/// The image tower (trained) and the text tower (frozen).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionModelSpec {
    /// The ViT; unknown fields are errors.
    #[serde(deserialize_with = "strict_vit")]
    pub vit: VitConfig,
    /// The sentence-transformers folder of the frozen text tower (a registered name such as
    /// `minilm` is resolved by the caller).
    pub text: PathBuf,
    /// Width of the shared space. Unset: the ViT's class token is projected straight into
    /// the text model's space and the caption embeddings stay as MiniLM gives them; set:
    /// both towers get a trained linear projection to this width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_dim: Option<usize>,
}

/// `VitConfig` has serde defaults but accepts unknown keys; a recipe must not.
fn strict_vit<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<VitConfig, D::Error> {
    use serde::de::Error as _;
    let table = toml::Table::deserialize(d)?;
    let known = toml::Table::try_from(VitConfig::default()).map_err(D::Error::custom)?;
    if let Some(k) = table.keys().find(|k| !known.contains_key(*k)) {
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        return Err(D::Error::custom(format!(
            "unknown field `{k}` in [model.vit], expected one of {}",
            names.join(", ")
        )));
    }
    toml::Value::Table(table).try_into().map_err(D::Error::custom)
}

impl VisionRecipe {
    /// Checks what can be checked before training, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let vit = &self.model.vit;
        if vit.patch_size == 0 || vit.image_size % vit.patch_size != 0 {
            return Err(Error::config(
                "model.vit.patch_size",
                format!("{} must divide image_size {}", vit.patch_size, vit.image_size),
            ));
        }
        if vit.num_attention_heads == 0 || vit.hidden_size % vit.num_attention_heads != 0 {
            return Err(Error::config(
                "model.vit.num_attention_heads",
                format!("{} must divide hidden_size {}", vit.num_attention_heads, vit.hidden_size),
            ));
        }
        if vit.num_channels != 3 {
            return Err(Error::config("model.vit.num_channels", "easy-VQA images are RGB: 3"));
        }
        if self.model.embed_dim == Some(0) {
            return Err(Error::config("model.embed_dim", "must be at least 1"));
        }
        if self.data.max_images == Some(0) {
            return Err(Error::config("data.max_images", "must be at least 1"));
        }
        for (field, p, what) in [
            ("data.path", &self.data.path, "answers.txt"),
            ("model.text", &self.model.text, "config.json"),
        ] {
            if !p.join(what).is_file() {
                return Err(Error::config(
                    field,
                    format!("{} has no {what} (fetch it with `braid fetch`)", p.display()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::super::Recipe;
    use super::*;
    use std::path::Path;

    const GOOD: &str = "stage = \"contrastive\"\nout_dir = \"runs/x\"\n[data]\npath = \"/nonexistent/easy-vqa\"\n[model]\ntext = \"/nonexistent/minilm\"\n[model.vit]\nhidden_size = 48\n";

    fn err(text: &str) -> String {
        match Recipe::parse(text, Path::new("r.toml")) {
            Ok(r) => r.validate().unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unknown_fields_are_errors_naming_them() {
        assert!(err(&GOOD.replace("hidden_size = 48", "hidden_size = 48\nhiden_layers = 3"))
            .contains("hiden_layers"));
        assert!(err(&GOOD.replace("[model]\n", "[model]\nembed_dimm = 4\n")).contains("embed_dimm"));
        assert!(err(&GOOD.replace("[data]\n", "[data]\nmax_image = 4\n")).contains("max_image"));
        assert!(err(&format!("{GOOD}[train]\nlearning_rate = 1.0\n")).contains("learning_rate"));
    }

    #[test]
    fn bad_values_name_the_field() {
        assert!(err(&format!("{GOOD}patch_size = 10\n")).contains("model.vit.patch_size"));
        assert!(
            err(&GOOD.replace("[model]\n", "[model]\nembed_dim = 0\n")).contains("model.embed_dim")
        );
        let e = err(GOOD);
        assert!(e.contains("data.path") && e.contains("/nonexistent/easy-vqa"), "{e}");
    }

    #[test]
    fn a_recipe_round_trips_through_toml() {
        let r = Recipe::parse(GOOD, Path::new("r.toml")).unwrap();
        let Recipe::Contrastive(v) = &r else { panic!("{r:?}") };
        assert_eq!(v.model.vit.hidden_size, 48);
        assert_eq!(v.model.vit.num_hidden_layers, VitConfig::default().num_hidden_layers);
        assert_eq!(Recipe::parse(&r.to_toml().unwrap(), Path::new("again")).unwrap(), r);
    }
}
