//! Running an `align` or `instruct` recipe: the pipeline (image encoder + projector +
//! language model with optional LoRA), its training samples from a conversation file in
//! the chat template, [`fit`], and the model directory, which describes itself
//! (preprocessing, placeholder, system turn, base models by name) so that every command
//! opens it with `Pipeline::open` alone.

use std::path::{Path, PathBuf};

use braid_core::checkpoint::Checkpoint;
use braid_core::{Error, Modality, Result};
use braid_data::conversation::{ConversationDataset, ConversationOptions};
use braid_data::vqa::{EasyVqa, ExportOptions, Split};
use braid_encoders::EncoderConfig;
use braid_pipeline::{
    evaluate_conversations, evaluate_vqa, sample_inputs, EncoderSlot, ImagePreprocess, Pipeline,
    PipelineConfig, Preprocess, PromptConfig, Sample, PIPELINE_FILE,
};
use candle_core::Device;
use candle_nn::VarMap;

use super::ConversationRecipe;
use crate::recipe::{Launch, VisionModelFile};
use crate::stages::ConversationTask;
use crate::{fit, Component, RunSummary, Stage};

/// What a run produced.
#[derive(Debug, Clone)]
pub struct ConversationRun {
    /// The model directory.
    pub model_dir: PathBuf,
    /// The loop's summary.
    pub summary: RunSummary,
}

/// The image slot's encoder and preprocessing: a contrastive run's model directory (its
/// read-out changed by `[model.features]`), a fresh architecture, or the `init` model
/// directory's own slot.
fn image_encoder(recipe: &ConversationRecipe) -> Result<(EncoderConfig, Preprocess)> {
    let f = &recipe.model.features;
    if let Some(dir) = &recipe.model.vision {
        let vision = VisionModelFile::read(dir)?.pipeline_config();
        let slot = vision
            .slot(Modality::Image)
            .ok_or_else(|| Error::config("model.vision", "no image encoder"))?;
        let (Some(EncoderConfig::Vit { vit, feature_layer, drop_cls, .. }), Some(pre)) =
            (&slot.encoder, &slot.preprocess)
        else {
            return Err(Error::config(
                "model.vision",
                format!("{}: its image slot lacks a ViT or its preprocessing", dir.display()),
            ));
        };
        let encoder = EncoderConfig::Vit {
            vit: vit.clone(),
            feature_layer: f.layer.unwrap_or(*feature_layer),
            drop_cls: !f.cls.unwrap_or(!drop_cls),
            pool: f.pool.max(1),
        };
        return Ok((encoder, pre.clone()));
    }
    if let Some(encoder) = &recipe.model.encoder {
        let EncoderConfig::Vit { vit, .. } = encoder else {
            return Err(Error::config(
                "model.encoder",
                "an image encoder (`type = \"vit\"`) is needed",
            ));
        };
        let size = vit.image_size as u32;
        return Ok((
            encoder.clone(),
            Preprocess::Image(ImagePreprocess::fixed(size, size, [0.5; 3], [0.5; 3])),
        ));
    }
    let init = recipe.model.init.as_ref().ok_or_else(|| {
        Error::config("model.vision", "no image encoder: give `vision`, `encoder` or `init`")
    })?;
    let cfg = PipelineConfig::load(&init.join(PIPELINE_FILE))?;
    let slot = cfg.slot(Modality::Image).ok_or_else(|| {
        Error::config("model.init", format!("{} has no image encoder", init.display()))
    })?;
    match (&slot.encoder, &slot.preprocess) {
        (Some(e), Some(p)) => Ok((e.clone(), p.clone())),
        _ => Err(Error::config(
            "model.init",
            format!(
                "{}: its image slot lacks [encoders.encoder] or [encoders.preprocess]",
                init.display()
            ),
        )),
    }
}

/// The pipeline configuration a recipe describes: everything the trained model needs to
/// run, in its own `pipeline.toml`.
fn pipeline_config(recipe: &ConversationRecipe) -> Result<PipelineConfig> {
    let (encoder, preprocess) = image_encoder(recipe)?;
    let slot = EncoderSlot {
        modality: Modality::Image,
        model: None,
        placeholder: recipe.model.placeholder.clone(),
        token_id: None,
        encoder: Some(encoder),
        preprocess: Some(preprocess),
        projector: Some(recipe.model.projector.clone()),
    };
    Ok(PipelineConfig {
        encoders: vec![slot],
        llm: Some(recipe.model.llm.clone()),
        llm_config: None,
        lora: recipe.model.lora.clone(),
        tokenizer: None,
        prompt: PromptConfig { system: Some(recipe.model.system.clone()) },
        head: None,
        contrastive: None,
    })
}

/// Sets every variable of `vars` that `path` holds (names must match; missing ones are
/// an error naming them).
fn fill(vars: &VarMap, path: &Path) -> Result<()> {
    let ckpt = Checkpoint::open(path)?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| Error::Invalid("a variable map's lock is poisoned".into()))?;
    for (name, var) in data.iter() {
        let t = ckpt
            .tensor(name, var.dtype(), var.device())
            .map_err(|_| Error::format(path, format!("lacks `{name}`")))?;
        var.set(&t)?;
    }
    Ok(())
}

/// Whether `path` is an easy-VQA folder rather than a conversation file.
fn is_easy_vqa(path: &Path) -> bool {
    path.join("answers.txt").is_file()
}

/// The training conversations: the recipe's file, or easy-VQA written as one into the
/// run directory (captions for `align`).
fn training_data(recipe: &ConversationRecipe, stage: Stage) -> Result<ConversationDataset> {
    let d = &recipe.data;
    if !is_easy_vqa(&d.path) {
        return ConversationDataset::open(&d.path, &d.options);
    }
    let vqa = EasyVqa::open(&d.path, Split::Train)?;
    let export = ExportOptions {
        skip_images: d.skip_images,
        max_images: d.max_images,
        turns: d.turns,
        present_repeat: d.present_repeat.max(1) as u32,
    };
    let dir = recipe.out_dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let file = if stage == Stage::Align {
        vqa.write_captions(&dir, &export)?
    } else {
        vqa.write_conversations(&dir, &export)?
    };
    ConversationDataset::open(
        &file,
        &ConversationOptions { use_weights: true, ..d.options.clone() },
    )
}

/// Trains the recipe's stage; writes `out_dir/model/`.
pub fn train_conversation(
    recipe: &ConversationRecipe,
    stage: Stage,
    launch: &Launch,
) -> Result<ConversationRun> {
    recipe.validate(stage)?;
    // The data first: a bad file fails in a moment, before the language model loads.
    let data = training_data(recipe, stage)?;
    let eval_data = recipe
        .data
        .eval_path
        .as_ref()
        .map(|p| ConversationDataset::open(p, &ConversationOptions::default()))
        .transpose()?;
    let device = Device::Cpu;
    let pipeline = Pipeline::init(&pipeline_config(recipe)?, Path::new("."), &device)?;
    let prompter = pipeline.prompter()?;
    // Every part the init directory has comes from there (its encoder may have been
    // fine-tuned); the encoder otherwise from the vision model.
    for (name, vars) in pipeline.var_maps() {
        let init = recipe
            .model
            .init
            .as_ref()
            .map(|d| d.join(format!("{name}.safetensors")))
            .filter(|p| p.is_file());
        match (name.as_str(), init, &recipe.model.vision) {
            (_, Some(init), _) => fill(vars, &init)?,
            ("encoder.image", None, Some(vision)) => {
                fill(vars, &vision.join(crate::recipe::VISION_ENCODER_FILE))?
            }
            _ => {}
        }
    }
    let sample = |k: usize| -> Result<Sample> {
        let s = data.get(k).ok_or_else(|| Error::Invalid(format!("no training sample {k}")))?;
        let (messages, inputs) = sample_inputs(&pipeline, s)
            .map_err(|e| Error::Invalid(format!("sample {:?}: {e}", s.id)))?;
        prompter.sample(&messages, inputs)
    };
    let evaluate = || -> Result<std::collections::BTreeMap<String, f64>> {
        let n = recipe.data.eval_images;
        match (&eval_data, n) {
            (_, 0) => Ok(Default::default()),
            (Some(eval), n) => {
                let r = evaluate_conversations(&pipeline, eval, n, false)?;
                Ok(std::collections::BTreeMap::from([("accuracy".to_string(), r.accuracy)]))
            }
            (None, n) if is_easy_vqa(&recipe.data.path) => {
                Ok(evaluate_vqa(&pipeline, &recipe.data.path, n, false)?.summary())
            }
            (None, _) => Ok(Default::default()),
        }
    };
    let extra = if recipe.model.train_encoder { vec![Component::Encoder] } else { Vec::new() };
    let task = ConversationTask {
        pipeline: &pipeline,
        stage,
        extra,
        samples: Box::new(sample),
        len: data.len(),
        evaluate: Some(Box::new(evaluate)),
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;
    let model_dir = launch.save_model(&recipe.out_dir, |tmp| pipeline.save(tmp))?;
    Ok(ConversationRun { model_dir, summary })
}
