//! `braid data make` (issue 14): the HAPT chat dataset from the fetched HAPT, and a tiny
//! spoken-digits set, each opened as a conversation dataset. The first needs `braid fetch
//! hapt`, the second espeak-ng and sox (`apt-get install espeak-ng sox`; scripts/test.sh
//! installs them); without them they skip, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes
//! them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use braid_core::checkpoint::read_npy;
use braid_data::audio::decode_file;
use braid_data::conversation::{ConversationDataset, ConversationOptions};
use braid_data::make::hapt_chat::QuestionType;
use braid_data::make::question_type;
use braid_data::make::spoken_digits::{DIGITS, SAMPLE_RATE};
use common::{braid, fetched, run};

fn open(dir: &Path, file: &str) -> ConversationDataset {
    ConversationDataset::open(dir.join(file), &ConversationOptions::default()).unwrap()
}

/// The id without its last field (the question type): the item asked about.
fn item(id: &str) -> &str {
    id.rsplit_once('_').map_or(id, |(item, _)| item)
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    ["train.json", "test.json", "captions_train.json", "captions_test.json"]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect()
}

#[test]
fn hapt_chat_from_the_fetched_hapt() {
    if !fetched("hapt") {
        eprintln!("skipping: run `braid fetch hapt`");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hapt-chat");
    let out = dir.to_str().unwrap();
    braid(&["data", "make", "hapt-chat", "--out", out, "--seed", "0"]);
    let (train, test, captions) =
        (open(&dir, "train.json"), open(&dir, "test.json"), open(&dir, "captions_train.json"));
    let user = |id: &str| id[1..3].parse::<u32>().unwrap();
    let users = |d: &ConversationDataset| d.iter().map(|s| user(&s.id)).collect::<BTreeSet<_>>();
    assert_eq!(users(&train), (1..=21).collect());
    assert_eq!(users(&test), (22..=30).collect());
    let types = [QuestionType::Activity, QuestionType::Motion, QuestionType::Transition];
    let mut per_type: BTreeMap<&str, usize> = BTreeMap::new();
    for s in train.iter().chain(test.iter()) {
        let kind = types.iter().find(|t| t.as_str() == question_type(&s.id)).unwrap();
        let answer = s.turns[1].text.as_str();
        assert!(kind.answers().contains(&answer), "{}: {answer}", s.id);
        assert!(s.turns[0].text.starts_with("<imu>\n"));
        *per_type.entry(kind.as_str()).or_default() += 1;
    }
    // The test split asks each type once per window, and `motion` only beside `activity`.
    let mut asked: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in test.iter() {
        asked.entry(item(&s.id)).or_default().push(question_type(&s.id));
    }
    for (window, kinds) in &asked {
        let unique: BTreeSet<_> = kinds.iter().collect();
        assert_eq!(unique.len(), kinds.len(), "{window}: {kinds:?}");
        assert_eq!(kinds.contains(&"motion"), kinds.contains(&"activity"), "{window}");
    }
    let train_windows: BTreeSet<&str> = train.iter().map(|s| item(&s.id)).collect();
    assert_eq!(captions.len(), train_windows.len());
    let window = read_npy(&test.samples[0].media[0].path).unwrap();
    assert_eq!(window.shape, [128, 6]);
    eprintln!(
        "train {} test {} ({} windows) captions {}; per type {per_type:?}",
        train.len(),
        test.len(),
        asked.len(),
        captions.len()
    );
    // Again into the same folder: refused without --force, the same bytes with it.
    let before = read_all(&dir);
    let again = run(&["data", "make", "hapt-chat", "--out", out]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    braid(&["data", "make", "hapt-chat", "--out", out, "--force"]);
    assert_eq!(read_all(&dir), before);
}

#[test]
fn unknown_kinds_are_listed() {
    let out = run(&["data", "make", "mnist-chat", "--out", "/nonexistent/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("known: hapt-chat, spoken-digits"), "{err}");
}

/// espeak-ng and sox are installed; a failure when not and BRAID_REQUIRE_ASSETS=1.
fn have_speech_tools() -> bool {
    let runs = |p: &str| {
        std::process::Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success())
    };
    let ok = runs("espeak-ng") && runs("sox");
    if !ok && std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("BRAID_REQUIRE_ASSETS=1 but espeak-ng or sox is missing (apt-get install espeak-ng sox)");
    }
    ok
}

#[test]
fn tiny_spoken_digits_decode_at_16_khz_with_unseen_test_voices() {
    if !have_speech_tools() {
        eprintln!("skipping: espeak-ng or sox is not installed (apt-get install espeak-ng sox)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("digits");
    let args = |d: &Path| {
        let d = d.to_str().unwrap().to_string();
        braid(&["data", "make", "spoken-digits", "--out", &d, "--train", "20", "--test", "10"]);
    };
    args(&dir);
    let (train, test, captions) =
        (open(&dir, "train.json"), open(&dir, "test.json"), open(&dir, "captions_train.json"));
    assert_eq!((train.len(), test.len(), captions.len()), (20, 10, 20));
    // Held-out captions are of the test clips, in the test voices.
    let captions_test = open(&dir, "captions_test.json");
    assert_eq!(
        captions_test.iter().map(|s| item(&s.id)).collect::<Vec<_>>(),
        test.iter().map(|s| item(&s.id)).collect::<Vec<_>>()
    );
    // The voice is the field before the question type: `train_00017_en-us+m1_digit`.
    let voices = |d: &ConversationDataset| -> BTreeSet<String> {
        d.iter().map(|s| item(&s.id).rsplit('_').next().unwrap().to_string()).collect()
    };
    assert!(voices(&train).is_disjoint(&voices(&test)), "{:?}", voices(&test));
    for s in train.iter().chain(test.iter()) {
        assert_eq!(question_type(&s.id), "digit");
        assert!(DIGITS.contains(&s.turns[1].text.as_str()), "{}", s.turns[1].text);
        let audio = decode_file(&s.media[0].path).unwrap();
        assert_eq!((audio.sample_rate, audio.channels, audio.frames()), (SAMPLE_RATE, 1, 16_000));
    }
    let again = tmp.path().join("again");
    args(&again);
    assert_eq!(read_all(&again), read_all(&dir));
}
