//! easy-VQA (Victor Zhou, github.com/vzhou842/easy-VQA): 64x64 images of one coloured
//! shape, with questions about it answered by one of 13 words. A split is a folder
//! `{train,test}/` holding `images/<id>.png` and `questions.json` (a list of
//! `[question, answer, image_id]`), beside `answers.txt` (one answer a line). Each image's
//! colour and shape are read back from its own questions (module `attributes`) to caption it.
//! [`EasyVqa::write_conversations`] and [`EasyVqa::write_captions`] write a split as a
//! LLaVA conversation dataset ([`crate::conversation`]).

mod attributes;
mod conversations;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use braid_core::{Error, Result};
use candle_core::{Device, Tensor};

use attributes::ImageFacts;
pub use attributes::{AnswerType, COLORS, SHAPES};
pub use conversations::{ExportOptions, CAPTION_PROMPT};

/// Which half of easy-VQA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// 4,000 images, 38,575 questions.
    Train,
    /// 1,000 images, 9,673 questions.
    Test,
}

impl Split {
    /// The folder name: `train` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Self::Train),
            "test" => Ok(Self::Test),
            other => Err(Error::config(
                "split",
                format!("`{other}` is not an easy-VQA split (train, test)"),
            )),
        }
    }
}

/// One question about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// E.g. "what color is the shape?".
    pub question: String,
    /// One of the 13 answers, e.g. "blue".
    pub answer: String,
    /// The image it asks about (`images/<image_id>.png`).
    pub image_id: u32,
}

impl Question {
    /// The kind of answer it takes.
    pub fn answer_type(&self) -> Option<AnswerType> {
        AnswerType::of(&self.answer)
    }
}

/// How many images have their colour and shape known from their questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    /// Images with at least one question.
    pub images: usize,
    /// Images whose colour is known.
    pub with_color: usize,
    /// Images whose shape is known.
    pub with_shape: usize,
    /// Images with both: the ones [`EasyVqa::caption`] describes.
    pub with_both: usize,
    /// Images whose questions disagree.
    pub contradictory: usize,
}

/// One split of easy-VQA, questions in file order and grouped by image.
#[derive(Debug, Clone)]
pub struct EasyVqa {
    split: Split,
    split_dir: PathBuf,
    answers: Vec<String>,
    questions: Vec<Question>,
    by_image: BTreeMap<u32, Vec<usize>>,
    facts: BTreeMap<u32, ImageFacts>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

impl EasyVqa {
    /// Reads `dir/answers.txt` and `dir/<split>/questions.json`. Errors name the file (and
    /// the entry) that is missing or malformed, and any answer outside `answers.txt`.
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let answers_path = dir.join("answers.txt");
        let answers: Vec<String> = read(&answers_path)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if answers.is_empty() {
            return Err(Error::format(&answers_path, "no answers"));
        }
        let split_dir = dir.join(split.as_str());
        let qpath = split_dir.join("questions.json");
        let raw: Vec<(String, String, u32)> =
            serde_json::from_str(&read(&qpath)?).map_err(|e| {
                Error::format(
                    &qpath,
                    format!("expected a list of [question, answer, image_id]: {e}"),
                )
            })?;
        let mut by_image: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut facts: BTreeMap<u32, ImageFacts> = BTreeMap::new();
        let mut questions = Vec::with_capacity(raw.len());
        for (i, (question, answer, image_id)) in raw.into_iter().enumerate() {
            if !answers.contains(&answer) {
                return Err(Error::format(
                    &qpath,
                    format!("entry {i}: answer `{answer}` is not in {}", answers_path.display()),
                ));
            }
            by_image.entry(image_id).or_default().push(i);
            facts.entry(image_id).or_default().add(&question, &answer);
            questions.push(Question { question, answer, image_id });
        }
        Ok(Self { split, split_dir, answers, questions, by_image, facts })
    }

    /// The half this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Every question, in file order.
    pub fn questions(&self) -> &[Question] {
        &self.questions
    }

    /// The possible answers, as `answers.txt` lists them.
    pub fn answers(&self) -> &[String] {
        &self.answers
    }

    /// Ids of the images that have questions, ascending.
    pub fn image_ids(&self) -> Vec<u32> {
        self.by_image.keys().copied().collect()
    }

    /// The questions about image `id`, in file order (empty for an unknown id).
    pub fn questions_of(&self, id: u32) -> Vec<&Question> {
        self.by_image
            .get(&id)
            .map(|ix| ix.iter().map(|&i| &self.questions[i]).collect())
            .unwrap_or_default()
    }

    /// `<dir>/<split>/images/<id>.png`.
    pub fn image_path(&self, id: u32) -> PathBuf {
        self.split_dir.join("images").join(format!("{id}.png"))
    }

    /// Image `id` as `[3, h, w]` f32 RGB in [0, 1] (`[3, 64, 64]` for easy-VQA), not
    /// normalised: the encoder's preprocessing applies its own mean and std.
    pub fn load_image(&self, id: u32, device: &Device) -> Result<Tensor> {
        let img = crate::image::load_rgb(&self.image_path(id))?;
        let (w, h) = img.dimensions();
        let data: Vec<f32> = img.into_raw().into_iter().map(|v| f32::from(v) / 255.0).collect();
        Ok(Tensor::from_vec(data, (h as usize, w as usize, 3), device)?
            .permute((2, 0, 1))?
            .contiguous()?)
    }

    /// (colour, shape) of image `id` read from its questions; `None` when either is unknown
    /// or the questions contradict each other.
    pub fn image_attributes(&self, id: u32) -> Option<(&'static str, &'static str)> {
        match self.facts.get(&id)?.resolve() {
            (Some(c), Some(s)) => Some((c, s)),
            _ => None,
        }
    }

    /// E.g. "a blue rectangle", when both attributes are known.
    pub fn caption(&self, id: u32) -> Option<String> {
        self.image_attributes(id).map(|(c, s)| format!("a {c} {s}"))
    }

    /// How many images get a colour, a shape, both, or contradict themselves.
    pub fn coverage(&self) -> Coverage {
        let mut cov = Coverage { images: self.facts.len(), ..Coverage::default() };
        for f in self.facts.values() {
            let (c, s) = f.resolve();
            cov.with_color += usize::from(c.is_some());
            cov.with_shape += usize::from(s.is_some());
            cov.with_both += usize::from(c.is_some() && s.is_some());
            cov.contradictory += usize::from(f.contradictory());
        }
        cov
    }
}

#[cfg(test)]
mod tests;
