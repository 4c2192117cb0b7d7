//! `braid eval vqa`: exact-match accuracy (after trimming and lower-casing, as the issue
//! and the easy-VQA baselines score) of greedy answers to every test question, overall
//! and per answer type (yes/no, colour, shape). Each question is asked on its own, the
//! image before it, with no earlier turns.

use std::collections::BTreeMap;
use std::path::Path;

use braid_core::{Modality, Result};
use braid_data::vqa::{AnswerType, EasyVqa, Split};
use braid_llm::generate::{generate_embeds, GenerateConfig, SamplingConfig};
use braid_pipeline::{Input, Pipeline};
use serde::Serialize;

use super::run::normalise;
use crate::recipe::VisionModelFile;
use crate::stages::ChatSampler;

/// Scores of one evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VqaReport {
    /// Share of exact matches.
    pub accuracy: f64,
    /// Questions scored.
    pub n: usize,
    /// Accuracy and count per answer type (`yes/no`, `color`, `shape`).
    pub per_type: BTreeMap<String, (f64, usize)>,
}

impl VqaReport {
    /// Numbers for the training log.
    pub fn summary(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::from([("vqa_accuracy".to_string(), self.accuracy)]);
        for (k, (acc, _)) in &self.per_type {
            m.insert(format!("vqa_{}", k.replace('/', "_")), *acc);
        }
        m
    }
}

/// Answers the questions of the first `max_images` test images (0: all) with greedy
/// decoding and scores them.
pub fn evaluate_vqa(pipeline: &Pipeline, sampler: &ChatSampler, vision: &VisionModelFile, data: &Path, max_images: usize) -> Result<VqaReport> {
    let test = EasyVqa::open(data, Split::Test)?;
    let mut ids = test.image_ids();
    if max_images > 0 {
        ids.truncate(max_images);
    }
    let cfg = GenerateConfig { max_new_tokens: 4, sampling: SamplingConfig { temperature: 0.0, ..Default::default() }, ..Default::default() };
    let device = candle_core::Device::Cpu;
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for id in ids {
        let image = Input { modality: Modality::Image, data: normalise(&test.load_image(id, &device)?, vision)?, mask: None };
        for q in test.questions_of(id) {
            let prompt = sampler.prompt_ids(&[], &q.question)?;
            let embeds = pipeline.embed_prompt(&prompt, std::slice::from_ref(&image))?;
            let (gens, _) = generate_embeds(pipeline.llm(), sampler.tokenizer(), &embeds, None, &[prompt], &cfg, &mut |_, _| Ok(()))?;
            let answer = gens.first().map(|g| g.text.trim().to_lowercase()).unwrap_or_default();
            let kind = AnswerType::of(&q.answer).map_or("other", AnswerType::as_str).to_string();
            let entry = per.entry(kind).or_default();
            entry.0 += usize::from(answer == q.answer.trim().to_lowercase());
            entry.1 += 1;
        }
    }
    let (right, n) = per.values().fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
    let per_type = per.into_iter().map(|(k, (r, c))| (k, (r as f64 / c.max(1) as f64, c))).collect();
    Ok(VqaReport { accuracy: right as f64 / n.max(1) as f64, n, per_type })
}

/// [`evaluate_vqa`] of a saved model directory (`pipeline.toml`, `vision.json`, and the
/// `recipe.toml` it was trained with, for its system prompt).
pub fn evaluate_vqa_dir(model_dir: &Path, data: &Path, max_images: usize) -> Result<VqaReport> {
    let (pipeline, sampler, vision) = open_model(model_dir)?;
    evaluate_vqa(&pipeline, &sampler, &vision, data, max_images)
}

/// A saved easy-VQA model: the pipeline, its chat sampler and the vision settings.
pub fn open_model(model_dir: &Path) -> Result<(Pipeline, ChatSampler, VisionModelFile)> {
    let device = candle_core::Device::Cpu;
    let pipeline = Pipeline::load(model_dir, &device)?;
    let vision = VisionModelFile::read(model_dir)?;
    let system = super::VqaRecipe::load(&model_dir.join("recipe.toml")).map(|r| r.model.system).unwrap_or_default();
    let llm = braid_hub::resolve_model(&pipeline.config().llm)?;
    let sampler = super::run::chat_sampler(&llm, &system)?;
    Ok((pipeline, sampler, vision))
}
