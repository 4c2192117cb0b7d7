use std::collections::BTreeSet;

use super::*;
use crate::make::spoken_digits::{make_spoken_digits, SpokenDigitsOptions};

#[test]
fn voices_of_the_two_splits_have_different_groups() {
    let train: BTreeSet<usize> = ACCENTS
        .iter()
        .flat_map(|(a, _)| TRAIN_VARIANTS.iter().map(move |v| format!("{a}+{v}")))
        .map(|v| voice_index(&v).unwrap())
        .collect();
    let test: BTreeSet<usize> = ACCENTS
        .iter()
        .flat_map(|(a, _)| TEST_VARIANTS.iter().map(move |v| format!("{a}+{v}")))
        .map(|v| voice_index(&v).unwrap())
        .collect();
    assert_eq!((train.len(), test.len()), (7 * 35, 7 * 11));
    assert!(train.is_disjoint(&test));
    assert_eq!(voice_index("en+m1"), Some(0));
    assert_eq!(voice_index("en-us"), None);
    assert_eq!(voice_index("xx+m1"), None);
}

/// Per digit, `count` images of seeded random pixels.
fn fake_mnist(dir: &Path, count: usize) {
    let mut rng = Rng::new(3);
    for d in 0..10 {
        let data: Vec<String> = (0..count * PIXELS).map(|_| format!("{:.3}", rng.unit())).collect();
        let json = format!("{{\"data\": [{}]}}", data.join(","));
        std::fs::write(dir.join(format!("{d}.json")), json).unwrap();
    }
}

#[test]
fn images_split_80_20_per_digit_the_same_for_a_seed() {
    let digits: Vec<Vec<f32>> = (0..10).map(|d| vec![d as f32; (10 + d) * PIXELS]).collect();
    let (train, test) = split_images(&digits, None, 0);
    let count = |items: &Items, d| items.iter().filter(|(x, _)| *x == d).count();
    assert_eq!((count(&train, 9), count(&test, 9)), (16, 3));
    assert_eq!((count(&train, 0), count(&test, 0)), (8, 2));
    let (train5, test5) = split_images(&digits, Some(5), 0);
    assert_eq!((train5.len(), test5.len()), (40, 10));
    assert_eq!(split_images(&digits, None, 0), (train.clone(), test.clone()));
    assert_ne!(split_images(&digits, None, 1).0, train);
    let all: BTreeSet<_> = train.iter().chain(&test).collect();
    assert_eq!(all.len(), train.len() + test.len());
    assert!(gather_images(&digits, &test5)
        .chunks(PIXELS)
        .zip(&test5)
        .all(|(im, (d, _))| im[0] == *d as f32));
}

/// espeak-ng and sox, or `false` with a note (a failure when BRAID_REQUIRE_ASSETS=1).
fn have_tools() -> bool {
    let runs = |p: &str| {
        std::process::Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success())
    };
    let ok = runs("espeak-ng") && runs("sox");
    if !ok {
        assert!(
            std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
            "BRAID_REQUIRE_ASSETS=1 but espeak-ng or sox is missing"
        );
        eprintln!("note: skipping: espeak-ng or sox is not installed");
    }
    ok
}

#[test]
fn a_tiny_set_pairs_degraded_images_with_clips_of_the_same_digit() {
    if !have_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mnist, clips, out) =
        (tmp.path().join("mnist"), tmp.path().join("clips"), tmp.path().join("av"));
    std::fs::create_dir(&mnist).unwrap();
    fake_mnist(&mnist, 5);
    let spoken = SpokenDigitsOptions { train: 10, test: 10, seed: 1, jobs: 2, force: false };
    make_spoken_digits(&clips, &spoken).unwrap();
    let opts = AvDigitsOptions { jobs: 2, ..AvDigitsOptions::default() };
    let ds = make_av_digits(&mnist, &clips, &out, &opts).unwrap();
    assert_eq!(ds.train.inputs[0].dims(), [40, 28, 28]);
    assert_eq!(ds.train.inputs[1].dims(), [40, 40, 100]);
    assert_eq!((ds.test.len(), ds.train.class_counts(10)), (10, vec![4; 10]));
    let voices = |s: &FusionSplit| s.groups.clone().unwrap().into_iter().collect::<BTreeSet<_>>();
    assert!(voices(&ds.train).is_disjoint(&voices(&ds.test)));
    assert!(ds.meta.about.contains("leading principal components"), "{}", ds.meta.about);
    let back = FusionDataset::load(&out).unwrap();
    assert_eq!(back.test.labels, ds.test.labels);
    // The same seed gives the same features.
    let again = make_av_digits(&mnist, &clips, &out, &AvDigitsOptions { force: true, ..opts });
    let again = again.unwrap();
    let diff = braid_core::testing::max_abs_diff(&again.test.inputs[1], &ds.test.inputs[1]);
    assert_eq!(diff.unwrap(), 0.0);
}
