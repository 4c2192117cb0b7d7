//! easy-VQA evaluation of a multimodal model: exact-match accuracy (after trimming and
//! lower-casing, as the easy-VQA baselines score) of greedy answers to every test
//! question, overall and per answer type (yes/no, colour, shape). Each question is asked
//! on its own, the image before it, with no earlier turns ([`answer_questions`]).

use std::collections::BTreeMap;
use std::path::Path;

use braid_core::{Modality, Result};
use braid_data::vqa::{AnswerType, EasyVqa, Split};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{answer_questions, Pipeline};

/// Longest answer generated (easy-VQA answers are one word).
const MAX_ANSWER_TOKENS: usize = 4;

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

/// Answers the questions of the first `max_images` test images of the easy-VQA folder
/// `data` (0: all) and scores them; `progress` shows a bar of questions answered with the
/// running accuracy. Images go through the model's own preprocessing.
pub fn evaluate_vqa(
    pipeline: &Pipeline,
    data: &Path,
    max_images: usize,
    progress: bool,
) -> Result<VqaReport> {
    let test = EasyVqa::open(data, Split::Test)?;
    let mut ids = test.image_ids();
    if max_images > 0 {
        ids.truncate(max_images);
    }
    let total: usize = ids.iter().map(|&id| test.questions_of(id).len()).sum();
    let bar = if progress { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "{wide_bar} {pos}/{len} questions [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut all = Vec::with_capacity(total);
    for id in ids {
        let questions = test.questions_of(id);
        let texts: Vec<&str> = questions.iter().map(|q| q.question.as_str()).collect();
        let image = pipeline.load_input(Modality::Image, &test.image_path(id))?;
        let answers =
            answer_questions(pipeline, std::slice::from_ref(&image), &texts, MAX_ANSWER_TOKENS)?;
        for (q, answer) in questions.iter().zip(answers) {
            let kind = AnswerType::of(&q.answer).map_or("other", AnswerType::as_str).to_string();
            let entry = per.entry(kind).or_default();
            entry.0 += usize::from(answer.trim().to_lowercase() == q.answer.trim().to_lowercase());
            entry.1 += 1;
            all.push(VqaAnswer {
                image: id,
                question: q.question.clone(),
                answer,
                truth: q.answer.clone(),
            });
        }
        bar.inc(questions.len() as u64);
        let (right, n) = per.values().fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
        bar.set_message(format!("accuracy {:.2}%", 100.0 * right as f64 / n.max(1) as f64));
    }
    bar.finish_and_clear();
    let (right, n) = per.values().fold((0, 0), |(r, n), (a, b)| (r + a, n + b));
    let per_type =
        per.into_iter().map(|(k, (r, c))| (k, (r as f64 / c.max(1) as f64, c))).collect();
    Ok(VqaReport { accuracy: right as f64 / n.max(1) as f64, n, per_type, answers: all })
}
