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
    evaluate_conversations, evaluate_vqa, sample_inputs, EncoderSlot, ImagePreprocess,
    ImuPreprocess, Pipeline, PipelineConfig, Preprocess, PromptConfig, Sample, PIPELINE_FILE,
};
use braid_projectors::ProjectorConfig;
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

/// The image slot's encoder and preprocessing from `vision` (a contrastive run's model
/// directory or any model directory with a ViT image encoder, its read-out changed by
/// `[model.features]`) or `encoder` (a fresh
/// architecture); `None` when the recipe gives neither (the image slot, if any, then comes
/// from `init`).
fn image_encoder(recipe: &ConversationRecipe) -> Result<Option<(EncoderConfig, Preprocess)>> {
    let f = &recipe.model.features;
    if let Some(dir) = &recipe.model.vision {
        let own = PipelineConfig::load(&dir.join(PIPELINE_FILE))?;
        let vision = match own.contrastive {
            Some(_) => VisionModelFile::read(dir)?.pipeline_config(),
            None => own,
        };
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
        return Ok(Some((encoder, pre.clone())));
    }
    let Some(encoder) = &recipe.model.encoder else { return Ok(None) };
    let EncoderConfig::Vit { vit, .. } = encoder else {
        return Err(Error::config(
            "model.encoder",
            "an image encoder (`type = \"vit\"`) is needed",
        ));
    };
    let size = vit.image_size as u32;
    Ok(Some((
        encoder.clone(),
        Preprocess::Image(ImagePreprocess::fixed(size, size, [0.5; 3], [0.5; 3])),
    )))
}

/// The `init` model directory's slots, each with its encoder and preprocessing.
fn init_slots(recipe: &ConversationRecipe) -> Result<Vec<EncoderSlot>> {
    let Some(init) = &recipe.model.init else { return Ok(Vec::new()) };
    let cfg = PipelineConfig::load(&init.join(PIPELINE_FILE))?;
    for slot in &cfg.encoders {
        if slot.encoder.is_none() || slot.preprocess.is_none() {
            return Err(Error::config(
                "model.init",
                format!(
                    "{}: its {} slot lacks [encoders.encoder] or [encoders.preprocess]",
                    init.display(),
                    slot.modality
                ),
            ));
        }
    }
    Ok(cfg.encoders)
}

/// The pipeline configuration a recipe describes: everything the trained model needs to
/// run, in its own `pipeline.toml`. Slots come from `init` (kept as they are), the image
/// encoder the recipe names (replacing init's), and `[[model.slots]]` (new modalities;
/// an IMU slot's statistics from the training data's recordings).
fn pipeline_config(
    recipe: &ConversationRecipe,
    data: &ConversationDataset,
) -> Result<PipelineConfig> {
    let m = &recipe.model;
    let mut slots = init_slots(recipe)?;
    let projector = |own: &Option<ProjectorConfig>| {
        Some(own.clone().or_else(|| m.projector.clone()).unwrap_or_default())
    };
    if let Some((encoder, preprocess)) = image_encoder(recipe)? {
        slots.retain(|s| s.modality != Modality::Image);
        slots.insert(
            0,
            EncoderSlot {
                modality: Modality::Image,
                model: None,
                placeholder: m.placeholder.clone(),
                token_id: None,
                encoder: Some(encoder),
                preprocess: Some(preprocess),
                projector: projector(&None),
            },
        );
    }
    for (i, spec) in m.slots.iter().enumerate() {
        if slots.iter().any(|s| s.modality == spec.modality) {
            return Err(Error::config(
                format!("model.slots[{i}].modality"),
                format!("the model already has a {} slot (from `init`)", spec.modality),
            ));
        }
        let preprocess = match (&spec.preprocess, spec.modality) {
            (Some(p), _) => p.clone(),
            (None, Modality::Imu) => {
                Preprocess::Imu(imu_statistics(data, &spec.channels, &format!("model.slots[{i}]"))?)
            }
            (None, other) => {
                return Err(Error::config(
                    format!("model.slots[{i}].preprocess"),
                    format!("a {other} slot needs its preprocessing"),
                ))
            }
        };
        slots.push(EncoderSlot {
            modality: spec.modality,
            model: None,
            placeholder: spec.placeholder.clone(),
            token_id: None,
            encoder: Some(spec.encoder.clone()),
            preprocess: Some(preprocess),
            projector: projector(&spec.projector),
        });
    }
    Ok(PipelineConfig {
        encoders: slots,
        llm: Some(m.llm.clone()),
        llm_config: None,
        lora: m.lora.clone(),
        tokenizer: None,
        prompt: PromptConfig { system: Some(m.system.clone()) },
        head: None,
        contrastive: None,
        fusion: None,
        generator: None,
    })
}

/// Recordings read for an IMU slot's statistics: enough for stable means, few enough to
/// take seconds.
const STATS_RECORDINGS: usize = 2000;

/// Per-channel mean and standard deviation over the IMU recordings of `data` (the first
/// [`STATS_RECORDINGS`] distinct files), as the slot's standardisation.
fn imu_statistics(
    data: &ConversationDataset,
    channels: &[String],
    field: &str,
) -> Result<ImuPreprocess> {
    let c = channels.len();
    let raw = ImuPreprocess {
        channels: channels.to_vec(),
        mean: vec![0.0; c],
        std: vec![1.0; c],
        window: None,
        stride: None,
        rate_hz: None,
    };
    let mut seen = std::collections::BTreeSet::new();
    let (mut n, mut sum, mut sq) = (0f64, vec![0f64; c], vec![0f64; c]);
    let files = data.iter().flat_map(|s| &s.media).filter(|m| m.modality == Modality::Imu);
    for media in files {
        if seen.len() >= STATS_RECORDINGS || !seen.insert(media.path.clone()) {
            continue;
        }
        let x = raw.load(&media.path, &Device::Cpu)?.flatten_to(1)?.to_vec2::<f32>()?;
        for row in &x {
            for (k, v) in row.iter().enumerate() {
                sum[k] += *v as f64;
                sq[k] += (*v as f64) * (*v as f64);
            }
        }
        n += x.len() as f64;
    }
    if n < 2.0 {
        return Err(Error::config(
            format!("{field}.channels"),
            "the training data has no IMU recording to take statistics from",
        ));
    }
    let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n - m * m).max(0.0)).sqrt() as f32).collect();
    let pre = ImuPreprocess { mean: mean.iter().map(|&m| m as f32).collect(), std, ..raw };
    pre.stats().map_err(|e| Error::config(format!("{field}.channels"), e.to_string()))?;
    Ok(pre)
}

/// Sets every variable of `vars` that `path` holds (names must match; missing ones are
/// an error naming them).
fn fill(vars: &VarMap, path: &Path) -> Result<()> {
    let ckpt = Checkpoint::open(path)?;
    for (name, var) in crate::optim::named_vars(vars)?.iter() {
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

/// The training conversations, with the `mix` files' samples after them.
fn training_data(recipe: &ConversationRecipe, stage: Stage) -> Result<ConversationDataset> {
    let d = &recipe.data;
    let mut data = main_data(recipe, stage)?;
    for path in &d.mix {
        data.samples.extend(ConversationDataset::open(path, &d.options)?.samples);
    }
    Ok(data)
}

/// The recipe's `data.path`: a conversation file, or easy-VQA written as one into the run
/// directory (captions for `align`).
fn main_data(recipe: &ConversationRecipe, stage: Stage) -> Result<ConversationDataset> {
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
    // Fresh parts drawn from the recipe's seed: the same recipe starts from the same model
    // (and every process of a data-parallel job from rank 0's).
    let pipeline = Pipeline::init_seeded(
        &pipeline_config(recipe, &data)?,
        Path::new("."),
        &device,
        recipe.train.seed,
    )?;
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
                let r = evaluate_conversations(&pipeline, eval, n, 1, false)?;
                Ok(std::collections::BTreeMap::from([("accuracy".to_string(), r.accuracy)]))
            }
            (None, n) if is_easy_vqa(&recipe.data.path) => {
                Ok(evaluate_vqa(&pipeline, &recipe.data.path, n, false)?.summary())
            }
            (None, _) => Ok(Default::default()),
        }
    };
    if stage == Stage::Preference {
        let summary = train_preference(recipe, &pipeline, &data, launch, &evaluate)?;
        let model_dir = launch.save_model(&recipe.out_dir, |tmp| pipeline.save(tmp))?;
        return Ok(ConversationRun { model_dir, summary });
    }
    let extra = if recipe.model.train_encoder { vec![Component::Encoder] } else { Vec::new() };
    let extra_maps = recipe
        .model
        .slots
        .iter()
        .filter(|s| s.train_encoder)
        .map(|s| format!("encoder.{}", s.modality))
        .collect();
    let task = ConversationTask {
        pipeline: &pipeline,
        stage,
        extra,
        extra_maps,
        samples: Box::new(sample),
        len: data.len(),
        evaluate: Some(Box::new(evaluate)),
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;
    let model_dir = launch.save_model(&recipe.out_dir, |tmp| pipeline.save(tmp))?;
    Ok(ConversationRun { model_dir, summary })
}

/// DPO: every sample must carry a `rejected` answer; the reference log-probabilities are
/// the `init` model's, computed before the first step.
fn train_preference(
    recipe: &ConversationRecipe,
    pipeline: &Pipeline,
    data: &ConversationDataset,
    launch: &Launch,
    evaluate: &dyn Fn() -> Result<std::collections::BTreeMap<String, f64>>,
) -> Result<RunSummary> {
    if let Some(s) = data.samples.iter().find(|s| s.rejected.is_none()) {
        return Err(Error::format(
            &data.source,
            format!("sample {:?} has no `rejected` answer, which stage `preference` needs", s.id),
        ));
    }
    let prompter = pipeline.prompter()?;
    let pair = |k: usize| -> Result<(Sample, Sample)> {
        let s = data.get(k).ok_or_else(|| Error::Invalid(format!("no training sample {k}")))?;
        let bad = |e: Error| Error::Invalid(format!("sample {:?}: {e}", s.id));
        let (mut messages, inputs) = sample_inputs(pipeline, s).map_err(bad)?;
        let chosen = prompter.sample(&messages, inputs.clone())?;
        if let Some(last) = messages.iter_mut().rev().find(|m| m.role == "assistant") {
            last.content = s.rejected.clone().unwrap_or_default();
        }
        Ok((chosen, prompter.sample(&messages, inputs)?))
    };
    let pairs: crate::stages::preference::Pairs = Box::new(pair);
    let bar = if launch.progress {
        indicatif::ProgressBar::new(data.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_message("reference log-probabilities");
    let reference =
        crate::stages::preference::reference_logps(pipeline, &pairs, data.len(), &mut |i| {
            bar.set_position(i as u64)
        })?;
    bar.finish_and_clear();
    let task = crate::stages::preference::PreferenceTask {
        pipeline,
        pairs,
        reference,
        beta: recipe.preference.unwrap_or_default().beta,
        evaluate: Some(Box::new(evaluate)),
    };
    fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))
}
