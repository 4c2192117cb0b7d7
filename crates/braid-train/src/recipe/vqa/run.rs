//! Running an `align` or `instruct` recipe: the pipeline (trained ViT + projector +
//! SmolLM2 with optional LoRA), its training samples in the chat template, [`fit`], and
//! the model directory, which describes itself (preprocessing, placeholder, system turn,
//! base models by name) so that every command opens it with `Pipeline::open` alone.

use std::path::{Path, PathBuf};

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Modality, Result};
use braid_data::vqa::{AnswerType, EasyVqa, Split};
use braid_encoders::EncoderConfig;
use braid_pipeline::{evaluate_vqa, qa_messages, EncoderSlot, ImagePreprocess, Pipeline, PipelineConfig, Preprocess, PromptConfig, Sample};
use candle_core::Device;
use candle_nn::VarMap;

use super::VqaRecipe;
use crate::recipe::VisionModelFile;
use crate::stages::ConversationTask;
use crate::{fit, Component, RunOptions, RunSummary, Stage};

/// The user's request of the `align` stage.
pub const CAPTION_PROMPT: &str = "Describe the image.";

/// What a run produced.
#[derive(Debug, Clone)]
pub struct VqaRun {
    /// The model directory.
    pub model_dir: PathBuf,
    /// The loop's summary.
    pub summary: RunSummary,
}

/// The pipeline configuration a recipe describes: everything the trained model needs to
/// run, in its own `pipeline.toml`.
fn pipeline_config(recipe: &VqaRecipe, vision: &VisionModelFile) -> PipelineConfig {
    let f = &recipe.model.features;
    let encoder = EncoderConfig::Vit {
        vit: vision.vit.clone(),
        feature_layer: f.layer.unwrap_or(vision.feature_layer),
        drop_cls: !f.cls.unwrap_or(vision.select != "patch"),
        pool: f.pool.max(1),
    };
    let size = vision.vit.image_size as u32;
    let widen = |v: [f32; 3]| v.map(f64::from);
    let preprocess = ImagePreprocess::fixed(size, size, widen(vision.image_mean), widen(vision.image_std));
    let slot = EncoderSlot {
        modality: Modality::Image,
        model: None,
        placeholder: recipe.model.placeholder.clone(),
        token_id: None,
        encoder: Some(encoder),
        preprocess: Some(Preprocess::Image(preprocess)),
        projector: Some(recipe.model.projector.clone()),
    };
    PipelineConfig {
        encoders: vec![slot],
        llm: Some(recipe.model.llm.clone()),
        llm_config: None,
        lora: recipe.model.lora.clone(),
        tokenizer: None,
        prompt: PromptConfig { system: Some(recipe.model.system.clone()) },
        head: None,
    }
}

/// Sets every variable of `vars` that `path` holds (names must match; missing ones are
/// an error naming them).
fn fill(vars: &VarMap, path: &Path) -> Result<()> {
    let ckpt = Checkpoint::open(path)?;
    let data = vars.data().lock().map_err(|_| Error::Invalid("a variable map's lock is poisoned".into()))?;
    for (name, var) in data.iter() {
        let t = ckpt.tensor(name, var.dtype(), var.device()).map_err(|_| Error::format(path, format!("lacks `{name}`")))?;
        var.set(&t)?;
    }
    Ok(())
}

/// Trains the recipe's stage; writes `out_dir/model/`.
pub fn train_vqa(recipe: &VqaRecipe, resume: bool, progress: bool) -> Result<VqaRun> {
    recipe.validate()?;
    let device = Device::Cpu;
    let vision = VisionModelFile::read(&recipe.model.vision)?;
    let pipeline = Pipeline::init(&pipeline_config(recipe, &vision), Path::new("."), &device)?;
    let prompter = pipeline.prompter()?;
    // Every part the init directory has comes from there (its encoder may have been
    // fine-tuned); the encoder otherwise from the vision model.
    for (name, vars) in pipeline.var_maps() {
        let init = recipe.model.init.as_ref().map(|d| d.join(format!("{name}.safetensors"))).filter(|p| p.is_file());
        match (name.as_str(), init) {
            (_, Some(init)) => fill(vars, &init)?,
            ("encoder.image", None) => fill(vars, &recipe.model.vision.join("encoder.safetensors"))?,
            _ => {}
        }
    }
    let train = EasyVqa::open(&recipe.data.path, Split::Train)?;
    let mut ids = train.image_ids();
    if recipe.stage == Stage::Align {
        ids.retain(|&id| train.caption(id).is_some());
    }
    ids.drain(..recipe.data.skip_images.min(ids.len()));
    if recipe.data.max_images > 0 {
        ids.truncate(recipe.data.max_images);
    }
    // One sample per (image, run of its questions); align samples carry no questions.
    let mut items: Vec<(u32, std::ops::Range<usize>)> = Vec::new();
    for &id in &ids {
        let n = train.questions_of(id).len();
        match recipe.stage {
            Stage::Align => items.push((id, 0..n)),
            _ => {
                for r in conversations(n, recipe.data.turns) {
                    let copies = if recipe.data.present_repeat > 1 && names_own_attribute(&train, id, r.start) { recipe.data.present_repeat } else { 1 };
                    items.extend(std::iter::repeat_n((id, r), copies));
                }
            }
        }
    }
    if items.is_empty() {
        return Err(Error::config("data.skip_images", format!("no training images left after skipping {} (max_images {})", recipe.data.skip_images, recipe.data.max_images)));
    }
    let sample = |k: usize| -> Result<Sample> {
        let (id, range) = items[k].clone();
        let image = pipeline.load_input(Modality::Image, &train.image_path(id))?;
        let qs = train.questions_of(id);
        let caption = train.caption(id).unwrap_or_default();
        let turns: Vec<(&str, &str)> = match recipe.stage {
            Stage::Align => vec![(CAPTION_PROMPT, caption.as_str())],
            _ => qs[range].iter().map(|q| (q.question.as_str(), q.answer.as_str())).collect(),
        };
        prompter.sample(&qa_messages(&[Modality::Image], &turns, None), vec![image])
    };
    let evaluate = || -> Result<std::collections::BTreeMap<String, f64>> {
        if recipe.data.eval_images == 0 {
            return Ok(Default::default());
        }
        Ok(evaluate_vqa(&pipeline, &recipe.data.path, recipe.data.eval_images, false)?.summary())
    };
    let extra = if recipe.model.train_encoder { vec![Component::Encoder] } else { Vec::new() };
    let task = ConversationTask { pipeline: &pipeline, stage: recipe.stage, extra, samples: Box::new(sample), len: items.len(), evaluate: Some(Box::new(evaluate)) };
    let run = RunOptions { dir: recipe.out_dir.clone(), resume, config_toml: recipe.to_toml()?, progress };
    let summary = fit(&task, &recipe.train, &run)?;
    let model_dir = recipe.out_dir.join("model");
    braid_core::fsx::replace_dir(&model_dir, |tmp| {
        pipeline.save(tmp)?;
        // A record of how the model was made; nothing reads it to run the model.
        std::fs::write(tmp.join("recipe.toml"), recipe.to_toml()?).map_err(|e| Error::io(tmp.join("recipe.toml"), e))
    })?;
    Ok(VqaRun { model_dir, summary })
}

/// Whether question `k` of image `id` is a yes/no question naming the image's own colour
/// or shape (its answer then depends on seeing the image).
fn names_own_attribute(data: &EasyVqa, id: u32, k: usize) -> bool {
    let (Some(q), Some((colour, shape))) = (data.questions_of(id).get(k).copied(), data.image_attributes(id)) else { return false };
    let words: Vec<&str> = q.question.trim_end_matches('?').split_whitespace().collect();
    AnswerType::of(&q.answer) == Some(AnswerType::YesNo) && (words.contains(&colour) || words.contains(&shape))
}

/// An image's `n` questions split into conversations of `turns` turns (0: one of all).
fn conversations(n: usize, turns: usize) -> Vec<std::ops::Range<usize>> {
    let k = if turns == 0 { n.max(1) } else { turns };
    (0..n).step_by(k).map(|s| s..(s + k).min(n)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{conversations, names_own_attribute};
    use braid_data::vqa::{EasyVqa, Split};

    #[test]
    fn only_yes_no_questions_naming_the_images_own_attribute_are_repeated() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("answers.txt"), "yes\nno\nred\nblue\ncircle\nrectangle\n").unwrap();
        std::fs::create_dir_all(dir.path().join("train/images")).unwrap();
        // Image 0 is a red circle.
        let questions = r#"[["what color is the shape?", "red", 0], ["is there a red shape?", "yes", 0],
            ["is there not a circle?", "no", 0], ["is there a blue shape?", "no", 0],
            ["does the image contain a rectangle?", "no", 0], ["what is the red shape?", "circle", 0]]"#;
        std::fs::write(dir.path().join("train/questions.json"), questions).unwrap();
        let data = EasyVqa::open(dir.path(), Split::Train).unwrap();
        let named: Vec<bool> = (0..7).map(|k| names_own_attribute(&data, 0, k)).collect();
        assert_eq!(named, [false, true, true, false, false, false, false]);
    }

    #[test]
    fn questions_split_into_conversations_of_the_asked_length() {
        assert_eq!(conversations(5, 0), vec![0..5]);
        assert_eq!(conversations(5, 1), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(conversations(5, 2), vec![0..2, 2..4, 4..5]);
        assert!(conversations(0, 0).is_empty() && conversations(0, 3).is_empty());
    }
}
