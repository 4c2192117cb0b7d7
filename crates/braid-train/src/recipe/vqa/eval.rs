//! `braid eval vqa`: exact-match accuracy (after trimming and lower-casing, as the issue
//! and the easy-VQA baselines score) of greedy answers to every test question, overall
//! and per answer type (yes/no, colour, shape). Each question is asked on its own, the
//! image before it, with no earlier turns.

use std::collections::BTreeMap;
use std::path::Path;

use braid_core::{Modality, Result};
use braid_data::vqa::{AnswerType, EasyVqa, Split};
use braid_llm::generate::{generate_cached, GenerateConfig, SamplingConfig};
use braid_llm::LanguageModel;
use braid_pipeline::{Input, Pipeline};
use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
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
    /// Every question with the model's answer, in test order (for error analysis).
    #[serde(skip)]
    pub answers: Vec<VqaAnswer>,
}

/// One scored question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VqaAnswer {
    /// The test image.
    pub image: u32,
    /// The question.
    pub question: String,
    /// What the model answered.
    pub answer: String,
    /// The truth.
    pub truth: String,
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
/// decoding ([`answer_questions`]) and scores them; `progress` shows a bar of questions
/// answered with the running accuracy.
pub fn evaluate_vqa(pipeline: &Pipeline, sampler: &ChatSampler, vision: &VisionModelFile, data: &Path, max_images: usize, progress: bool) -> Result<VqaReport> {
    let test = EasyVqa::open(data, Split::Test)?;
    let mut ids = test.image_ids();
    if max_images > 0 {
        ids.truncate(max_images);
    }
    let device = candle_core::Device::Cpu;
    let total: usize = ids.iter().map(|&id| test.questions_of(id).len()).sum();
    let bar = if progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{wide_bar} {pos}/{len} questions [{elapsed_precise} < {eta_precise}] {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut all = Vec::with_capacity(total);
    for id in ids {
        let questions = test.questions_of(id);
        let texts: Vec<&str> = questions.iter().map(|q| q.question.as_str()).collect();
        let answers = answer_questions(pipeline, sampler, vision, &test.load_image(id, &device)?, &texts)?;
        for (q, answer) in questions.iter().zip(answers) {
            let kind = AnswerType::of(&q.answer).map_or("other", AnswerType::as_str).to_string();
            let entry = per.entry(kind).or_default();
            entry.0 += usize::from(answer.trim().to_lowercase() == q.answer.trim().to_lowercase());
            entry.1 += 1;
            all.push(VqaAnswer { image: id, question: q.question.clone(), answer, truth: q.answer.clone() });
        }
        bar.inc(questions.len() as u64);
        let (right, n) = per.values().fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
        bar.set_message(format!("accuracy {:.2}%", 100.0 * right as f64 / n.max(1) as f64));
    }
    bar.finish_and_clear();
    let (right, n) = per.values().fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
    let per_type = per.into_iter().map(|(k, (r, c))| (k, (r as f64 / c.max(1) as f64, c))).collect();
    Ok(VqaReport { accuracy: right as f64 / n.max(1) as f64, n, per_type, answers: all })
}

/// Greedy answers to each question about one image, each asked on its own (no earlier
/// turns). The prompt up to and through the image is shared by every question: it runs
/// once, and the questions continue from its cached keys and values, those of equal
/// token length together as one batch (no padding, so each row is exactly its own
/// single-question run).
///
/// pixels: [3, H, W] in [0, 1] -> one answer per question
pub fn answer_questions(pipeline: &Pipeline, sampler: &ChatSampler, vision: &VisionModelFile, pixels: &Tensor, questions: &[&str]) -> Result<Vec<String>> {
    let cfg = GenerateConfig { max_new_tokens: 4, sampling: SamplingConfig { temperature: 0.0, ..Default::default() }, ..Default::default() };
    let llm = pipeline.llm();
    let prompts = questions.iter().map(|q| sampler.prompt_ids(&[], q)).collect::<Result<Vec<_>>>()?;
    let shared = shared_prefix(&prompts, sampler.image_token_id());
    let Some(first) = prompts.first() else { return Ok(Vec::new()) };
    let image = Input { modality: Modality::Image, data: normalise(pixels, vision)?, mask: None };
    let mut prefix = llm.new_cache();
    llm.forward_last(&pipeline.embed_prompt(&first[..shared], std::slice::from_ref(&image))?, None, Some(&mut prefix))?;
    let mut by_length: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        by_length.entry(p.len()).or_default().push(i);
    }
    let mut answers = vec![String::new(); prompts.len()];
    for rows in by_length.values() {
        let rest: Vec<u32> = rows.iter().flat_map(|&i| prompts[i][shared..].iter().copied()).collect();
        let ids = Tensor::from_vec(rest, (rows.len(), prompts[rows[0]].len() - shared), pixels.device())?;
        let histories: Vec<Vec<u32>> = rows.iter().map(|&i| prompts[i].clone()).collect();
        let mut cache = prefix.repeat_batch(rows.len())?;
        let (gens, _) = generate_cached(llm, sampler.tokenizer(), &llm.embed_tokens(&ids)?, None, &mut cache, &histories, &cfg, &mut |_, _| Ok(()))?;
        for (&i, g) in rows.iter().zip(gens) {
            answers[i] = g.text.trim().to_string();
        }
    }
    Ok(answers)
}

/// Length of the prompt prefix all `prompts` share, through the image placeholder at
/// least, and short of every prompt's end (each keeps one token of its own to run).
fn shared_prefix(prompts: &[Vec<u32>], image_token: u32) -> usize {
    let Some(first) = prompts.first() else { return 0 };
    let mut n = prompts.iter().skip(1).fold(first.len(), |n, p| n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count()));
    n = n.min(prompts.iter().map(Vec::len).min().unwrap_or(0).saturating_sub(1));
    let through_image = first.iter().position(|&t| t == image_token).map_or(0, |i| i + 1);
    n.max(through_image)
}

/// [`evaluate_vqa`] of a saved model directory (`pipeline.toml`, `vision.json`, and the
/// `recipe.toml` it was trained with, for its system prompt).
pub fn evaluate_vqa_dir(model_dir: &Path, data: &Path, max_images: usize, progress: bool) -> Result<VqaReport> {
    let (pipeline, sampler, vision) = open_model(model_dir)?;
    evaluate_vqa(&pipeline, &sampler, &vision, data, max_images, progress)
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

#[cfg(test)]
mod tests {
    use super::shared_prefix;

    #[test]
    fn the_shared_prefix_covers_the_image_and_leaves_each_prompt_a_token() {
        assert_eq!(shared_prefix(&[vec![1, 9, 2, 3, 4], vec![1, 9, 2, 5]], 9), 3);
        // One prompt: everything but its last token.
        assert_eq!(shared_prefix(&[vec![1, 9, 2, 3]], 9), 3);
        // Prompts that part right after the image share it through the image.
        assert_eq!(shared_prefix(&[vec![1, 9, 2], vec![1, 9, 3]], 9), 2);
        assert_eq!(shared_prefix(&[], 9), 0);
    }
}
