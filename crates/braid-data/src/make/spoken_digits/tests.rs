use std::collections::BTreeSet;
use std::process::Command;

use super::*;
use crate::audio::decode_file;
use crate::conversation::{ConversationDataset, ConversationOptions};
use crate::make::question_type;

fn tiny(seed: u64) -> SpokenDigitsOptions {
    SpokenDigitsOptions { train: 12, test: 6, seed, jobs: 2, force: false }
}

/// espeak-ng and sox, or `false` with a note (a failure when BRAID_REQUIRE_ASSETS=1;
/// scripts/test.sh installs them).
fn have_tools() -> bool {
    let runs =
        |p: &str| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success());
    let ok = runs("espeak-ng") && runs("sox");
    if !ok {
        assert!(
            std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "BRAID_REQUIRE_ASSETS=1 but espeak-ng or sox is missing ({})",
            tools::INSTALL
        );
        eprintln!("note: skipping: espeak-ng or sox is not installed ({})", tools::INSTALL);
    }
    ok
}

#[test]
fn the_plan_is_seeded_balanced_and_split_by_voice() {
    let clips = plan(&tiny(0)).unwrap();
    assert_eq!(clips, plan(&tiny(0)).unwrap());
    assert_ne!(clips, plan(&tiny(1)).unwrap());
    let voices = |split| -> BTreeSet<String> {
        clips.iter().filter(|c| c.split == split).map(Clip::voice).collect()
    };
    assert!(voices(Split::Train).is_disjoint(&voices(Split::Test)));
    let train: Vec<&Clip> = clips.iter().filter(|c| c.split == Split::Train).collect();
    assert_eq!(train.len(), 12);
    // 12 clips: every digit once, two of them twice.
    let per_digit = |d| train.iter().filter(|c| c.digit == d).count();
    assert!((0..10).all(|d| (1..=2).contains(&per_digit(d))));
    for c in &clips {
        assert!((120..=200).contains(&c.speed) && (20..=80).contains(&c.pitch));
        assert!((50..=200).contains(&c.lead_ms) && (3..=60).contains(&c.noise_milli));
        assert!(c.name.ends_with(&format!("_{}", c.voice())), "{}", c.name);
    }
    assert_eq!(clips[0].name[..12], *"train_00000_");
    let none = SpokenDigitsOptions { test: 0, ..tiny(0) };
    assert!(plan(&none).unwrap_err().to_string().contains("`test`"));
    assert!(TRAIN_VARIANTS.iter().all(|v| !TEST_VARIANTS.contains(v)));
}

#[test]
fn samples_ask_the_digit_and_caption_every_clip() {
    let clips = plan(&tiny(0)).unwrap();
    let Splits { train, test, captions, captions_test } = samples(&clips, 0);
    assert_eq!((train.len(), test.len(), captions.len(), captions_test.len()), (12, 6, 12, 6));
    let s = &test[0];
    assert_eq!(question_type(&s.id), "digit");
    assert_eq!(s.audio, [format!("audio/{}.wav", clips[12].name)]);
    assert!(s.turns[0].text.starts_with("<audio>\n"));
    assert_eq!(s.turns[1].text, DIGITS[clips[12].digit]);
    assert!(captions[0].turns[1].text.starts_with("a voice with "), "{:?}", captions[0]);
    let phrasings: BTreeSet<&str> = train.iter().map(|s| s.turns[0].text.as_str()).collect();
    assert!(phrasings.len() > 1);
}

#[test]
fn a_tiny_set_is_synthesised_the_same_twice() {
    if !have_tools() {
        return;
    }
    let make = |dir: &Path| {
        make_spoken_digits(dir, &SpokenDigitsOptions { train: 3, test: 2, ..tiny(4) }).unwrap();
        ["train.json", "test.json", "captions_train.json", "captions_test.json"]
            .map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(make(a.path()), make(b.path()));
    assert!(!a.path().join(".make-tmp").exists());
    let test =
        ConversationDataset::open(a.path().join("test.json"), &ConversationOptions::default())
            .unwrap();
    for s in test.iter() {
        let audio = decode_file(&s.media[0].path).unwrap();
        assert_eq!((audio.sample_rate, audio.channels, audio.frames()), (SAMPLE_RATE, 1, 16_000));
        let peak = audio.samples.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.3, "{}: peak {peak}", s.id);
    }
}
