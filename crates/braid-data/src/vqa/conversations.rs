//! easy-VQA written as a LLaVA conversation dataset (read back by
//! [`crate::conversation::ConversationDataset`]): one image per sample, its questions cut
//! into conversations of `turns` turns, or one caption per image for the `align` stage.
//! Present/absent balancing is written into the file as each sample's `weight`, so the
//! trainer needs to know nothing of easy-VQA.

use std::path::{Path, PathBuf};

use braid_core::{Error, Result};

use super::{AnswerType, EasyVqa, Question};
use crate::conversation::{write_json, NewSample, Role, Turn, MAX_WEIGHT};

/// The user's request of a caption sample.
pub const CAPTION_PROMPT: &str = "Describe the image.";

/// Which images of the split are written, and how their questions become conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Images dropped first (ids ascending; for captions, among the captioned images).
    pub skip_images: usize,
    /// At most this many images after the skip; 0 keeps all.
    pub max_images: usize,
    /// Questions per conversation; 0 puts all of an image's questions in one. 1 asks each
    /// on its own, as the evaluation does (later turns can read earlier answers instead of
    /// the image).
    pub turns: usize,
    /// With `turns = 1`: the `weight` of a yes/no question naming the image's own colour or
    /// shape ([`EasyVqa::names_own_attribute`]); 0 or 1: none. Four in five yes/no questions
    /// name an absent attribute, so a model answering from the wording alone is right 83%
    /// of the time; repeating the others removes that shortcut.
    pub present_repeat: u32,
}

impl Default for ExportOptions {
    /// Every image, all its questions in one conversation, no balancing (the defaults of
    /// the `instruct` recipe's `[data]`).
    fn default() -> Self {
        Self { skip_images: 0, max_images: 0, turns: 0, present_repeat: 1 }
    }
}

impl EasyVqa {
    /// Whether `q` is a yes/no question naming its image's own colour or shape: its answer
    /// then depends on seeing the image (most yes/no questions name an absent attribute).
    pub fn names_own_attribute(&self, q: &Question) -> bool {
        let Some((colour, shape)) = self.image_attributes(q.image_id) else { return false };
        let words: Vec<&str> = q.question.trim_end_matches('?').split_whitespace().collect();
        q.answer_type() == Some(AnswerType::YesNo)
            && (words.contains(&colour) || words.contains(&shape))
    }

    /// Writes `dir/<split>.json`: per image, its questions in file order cut into
    /// conversations of `options.turns` (ids `<image>` when whole, `<image>-<k>` when cut),
    /// `<image>\n` before the first question. Returns the file.
    pub fn write_conversations(&self, dir: &Path, options: &ExportOptions) -> Result<PathBuf> {
        if options.present_repeat > MAX_WEIGHT {
            return Err(Error::config(
                "present_repeat",
                format!("{} is over {MAX_WEIGHT}", options.present_repeat),
            ));
        }
        if options.present_repeat > 1 && options.turns != 1 {
            return Err(Error::config(
                "present_repeat",
                "repeats single questions: it needs `turns = 1`",
            ));
        }
        let ids = select(self.image_ids(), options)?;
        let mut samples = Vec::new();
        for id in ids {
            let path = image_name(&self.image_path(id), dir)?;
            let questions = self.questions_of(id);
            let per = if options.turns == 0 { questions.len().max(1) } else { options.turns };
            for (k, chunk) in questions.chunks(per).enumerate() {
                let turns = chunk
                    .iter()
                    .enumerate()
                    .flat_map(|(j, q)| {
                        let text = if j == 0 {
                            format!("<image>\n{}", q.question)
                        } else {
                            q.question.clone()
                        };
                        let answer = q.answer.clone();
                        [
                            Turn { role: Role::User, text },
                            Turn { role: Role::Assistant, text: answer },
                        ]
                    })
                    .collect();
                let present = options.present_repeat > 1
                    && chunk.first().is_some_and(|q| self.names_own_attribute(q));
                let weight = present.then_some(options.present_repeat);
                let id = if options.turns == 0 { id.to_string() } else { format!("{id}-{k}") };
                samples.push(NewSample {
                    id,
                    image: vec![path.clone()],
                    turns,
                    weight,
                    ..NewSample::default()
                });
            }
        }
        write_json(&dir.join(format!("{}.json", self.split().as_str())), &samples)
    }

    /// Writes `dir/<split>-captions.json`: per captioned image, the user's [`CAPTION_PROMPT`]
    /// after `<image>\n` and the caption ("a blue rectangle") as the answer. `turns` and
    /// `present_repeat` do not apply. Returns the file.
    pub fn write_captions(&self, dir: &Path, options: &ExportOptions) -> Result<PathBuf> {
        let captioned =
            self.image_ids().into_iter().filter(|&id| self.caption(id).is_some()).collect();
        let mut samples = Vec::new();
        for id in select(captioned, options)? {
            let Some(caption) = self.caption(id) else { continue };
            let prompt = format!("<image>\n{CAPTION_PROMPT}");
            let mut sample = NewSample::single(id.to_string(), prompt, caption);
            sample.image = vec![image_name(&self.image_path(id), dir)?];
            samples.push(sample);
        }
        write_json(&dir.join(format!("{}-captions.json", self.split().as_str())), &samples)
    }
}

/// `ids` after `skip_images` and `max_images`; none left is an error.
fn select(mut ids: Vec<u32>, options: &ExportOptions) -> Result<Vec<u32>> {
    let n = ids.len();
    ids.drain(..options.skip_images.min(n));
    if options.max_images > 0 {
        ids.truncate(options.max_images);
    }
    if ids.is_empty() {
        let (skip, max) = (options.skip_images, options.max_images);
        return Err(Error::config(
            "skip_images",
            format!("no images left of {n} after skipping {skip} (max_images {max})"),
        ));
    }
    Ok(ids)
}

/// How the dataset file in `dir` names `image`: relative when it lies under `dir`,
/// absolute otherwise.
fn image_name(image: &Path, dir: &Path) -> Result<String> {
    let image = std::path::absolute(image).map_err(|e| Error::io(image, e))?;
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let name = image.strip_prefix(&dir).unwrap_or(&image);
    name.to_str().map(String::from).ok_or_else(|| {
        Error::format(&image, "the path is not UTF-8, so a JSON dataset cannot name it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{ConversationDataset, ConversationOptions, Role};
    use crate::vqa::Split;

    fn ids(data: &ConversationDataset) -> Vec<&str> {
        data.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn questions_round_trip_with_present_weights() {
        let easy = super::super::tests::fixture();
        let data = EasyVqa::open(easy.path(), Split::Train).unwrap();
        // Image 1's first question, "is there not a blue shape?", names its own colour.
        assert!(
            data.names_own_attribute(&data.questions()[2])
                && !data.names_own_attribute(&data.questions()[4])
        );
        let out = tempfile::tempdir().unwrap();
        let options = ExportOptions { turns: 1, present_repeat: 3, ..ExportOptions::default() };
        let file = data.write_conversations(out.path(), &options).unwrap();
        assert_eq!(file, out.path().join("train.json"));
        assert!(!out.path().join("train.json.tmp").exists());
        let read = ConversationDataset::open(&file, &ConversationOptions::default()).unwrap();
        assert_eq!(ids(&read), ["0-0", "0-1", "1-0", "1-0", "1-0", "1-1", "1-2"]);
        let s = &read.samples[2];
        assert_eq!(s.media.len(), 1);
        assert_eq!(s.media[0].path, std::path::absolute(data.image_path(1)).unwrap());
        assert_eq!(
            (s.turns[0].role, s.turns[0].text.as_str()),
            (Role::User, "<image>\nis there not a blue shape?")
        );
        assert_eq!((s.turns[1].role, s.turns[1].text.as_str()), (Role::Assistant, "no"));
        let unweighted = ConversationOptions { use_weights: false, ..Default::default() };
        assert_eq!(ConversationDataset::open(&file, &unweighted).unwrap().len(), 5);
    }

    #[test]
    fn whole_conversations_relative_paths_and_image_selection() {
        let easy = super::super::tests::fixture();
        let data = EasyVqa::open(easy.path(), Split::Train).unwrap();
        // Written beside the images: paths are relative to the file.
        let whole = ExportOptions { skip_images: 1, ..ExportOptions::default() };
        let file = data.write_conversations(easy.path(), &whole).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(r#""image":"train/images/1.png""#), "{text}");
        let read = ConversationDataset::open(&file, &ConversationOptions::default()).unwrap();
        assert_eq!(ids(&read), ["1"]);
        assert_eq!(read.samples[0].turns.len(), 6);
        assert_eq!(read.samples[0].turns[2].text, "what is the blue shape?");
        let none = ExportOptions { skip_images: 2, ..ExportOptions::default() };
        assert!(data
            .write_conversations(easy.path(), &none)
            .unwrap_err()
            .to_string()
            .contains("skip_images"));
        let big =
            ExportOptions { turns: 1, present_repeat: MAX_WEIGHT + 1, ..ExportOptions::default() };
        assert!(data
            .write_conversations(easy.path(), &big)
            .unwrap_err()
            .to_string()
            .contains("present_repeat"));
        let multi = ExportOptions { turns: 2, present_repeat: 2, ..ExportOptions::default() };
        assert!(data
            .write_conversations(easy.path(), &multi)
            .unwrap_err()
            .to_string()
            .contains("turns = 1"));
        let pairs = data
            .write_conversations(
                easy.path(),
                &ExportOptions { turns: 2, ..ExportOptions::default() },
            )
            .unwrap();
        let read = ConversationDataset::open(&pairs, &ConversationOptions::default()).unwrap();
        assert_eq!(ids(&read), ["0-0", "1-0", "1-1"]);
        assert_eq!(read.samples[1].turns[2].text, "what is the blue shape?");
    }

    #[test]
    fn captions_round_trip() {
        let easy = super::super::tests::fixture();
        let data = EasyVqa::open(easy.path(), Split::Train).unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = data
            .write_captions(
                &out.path().join("new"),
                &ExportOptions { max_images: 1, ..ExportOptions::default() },
            )
            .unwrap();
        assert_eq!(file, out.path().join("new/train-captions.json"));
        let read = ConversationDataset::open(&file, &ConversationOptions::default()).unwrap();
        assert_eq!(ids(&read), ["0"]);
        let texts: Vec<&str> = read.samples[0].turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["<image>\nDescribe the image.", "a red circle"]);
    }

    /// The fetched train split written as `recipes/easyvqa/instruct_final.toml` asks reads
    /// back as the trainer's own item list: the same images, questions, order and repeats.
    #[test]
    fn real_easy_vqa_reads_back_as_the_trainers_items() {
        let Some(dir) = crate::imu::fetched_dataset("easy-vqa") else { return };
        let data = EasyVqa::open(&dir, Split::Train).unwrap();
        let out = tempfile::tempdir().unwrap();
        let options =
            ExportOptions { skip_images: 900, max_images: 900, turns: 1, present_repeat: 4 };
        let read = ConversationDataset::open(
            data.write_conversations(out.path(), &options).unwrap(),
            &ConversationOptions::default(),
        )
        .unwrap();
        let mut expected = Vec::new();
        for id in data.image_ids().into_iter().skip(900).take(900) {
            let image = std::path::absolute(data.image_path(id)).unwrap();
            for q in data.questions_of(id) {
                let copies = if data.names_own_attribute(q) { 4 } else { 1 };
                expected.extend(std::iter::repeat_n(
                    (image.clone(), format!("<image>\n{}", q.question), q.answer.clone()),
                    copies,
                ));
            }
        }
        let got: Vec<_> = read
            .iter()
            .map(|s| (s.media[0].path.clone(), s.turns[0].text.clone(), s.turns[1].text.clone()))
            .collect();
        let questions: std::collections::BTreeSet<&str> =
            read.iter().map(|s| s.id.as_str()).collect();
        eprintln!("{} samples of {} questions", got.len(), questions.len());
        assert_eq!(got, expected);
    }
}
