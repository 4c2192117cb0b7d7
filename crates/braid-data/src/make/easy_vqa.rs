//! easy-VQA (fetched by `braid fetch easy-vqa`) written in the makers' layout: `train.json`
//! and `test.json` with one question a sample (as `braid eval vqa` asks them), and
//! `captions_train.json` / `captions_test.json` ("a blue rectangle"), so an image model
//! aligned on captions is scored on held-out captions exactly as the IMU and audio ones
//! are. The images are named where they lie (absolute paths); nothing is copied.

use std::path::Path;

use braid_core::{Error, Result};

use super::{prepare, Made, CAPTIONS_FILE, CAPTIONS_TEST_FILE, TEST_FILE, TRAIN_FILE};
use crate::conversation::{ConversationDataset, ConversationOptions};
use crate::vqa::{EasyVqa, ExportOptions, Split};

/// Writes the four files of easy-VQA at `source` into `dir` (absent or empty unless `force`).
pub fn make_easy_vqa(source: &Path, dir: &Path, force: bool) -> Result<Made> {
    // Both splits read first: a bad source fails before `dir` is touched.
    let splits = [EasyVqa::open(source, Split::Train)?, EasyVqa::open(source, Split::Test)?];
    prepare(dir, force, "", "")?;
    let one_each = ExportOptions { turns: 1, ..ExportOptions::default() };
    let mut files = Vec::new();
    for (vqa, questions, captions) in
        [(&splits[0], TRAIN_FILE, CAPTIONS_FILE), (&splits[1], TEST_FILE, CAPTIONS_TEST_FILE)]
    {
        // The exporters name their files `<split>.json` and `<split>-captions.json`.
        let written = vqa.write_conversations(dir, &one_each)?;
        debug_assert!(written.ends_with(questions));
        let from = vqa.write_captions(dir, &ExportOptions::default())?;
        let to = dir.join(captions);
        std::fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
        for name in [questions, captions] {
            let read = ConversationDataset::open(dir.join(name), &ConversationOptions::default())?;
            files.push((name, read.len()));
        }
    }
    let media = splits.iter().map(|s| s.image_ids().len()).sum();
    Ok(Made { dir: dir.to_path_buf(), media, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fetched_easy_vqa_in_four_files() {
        let Some(source) = crate::imu::fetched_dataset("easy-vqa") else { return };
        let out = tempfile::tempdir().unwrap();
        let made = make_easy_vqa(&source, out.path(), false).unwrap();
        let names: Vec<&str> = made.files.iter().map(|f| f.0).collect();
        assert_eq!(names, [TRAIN_FILE, CAPTIONS_FILE, TEST_FILE, CAPTIONS_TEST_FILE]);
        let open = |name: &str| {
            ConversationDataset::open(out.path().join(name), &ConversationOptions::default())
                .unwrap()
        };
        let test = open(TEST_FILE);
        let questions = EasyVqa::open(&source, Split::Test).unwrap();
        assert_eq!(test.len(), questions.questions().len());
        let captions = open(CAPTIONS_TEST_FILE);
        let first = &captions.samples[0];
        assert!(first.turns[1].text.starts_with("a "), "{:?}", first.turns);
        assert!(first.media[0].path.starts_with(source.join("test")));
        // Written again only by force.
        assert!(make_easy_vqa(&source, out.path(), false).is_err());
        make_easy_vqa(&source, out.path(), true).unwrap();
    }
}
