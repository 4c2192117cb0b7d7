use std::path::PathBuf;

use braid_core::checkpoint::read_npy;
use braid_core::testing::max_abs_diff;

use super::*;
use crate::classify::{ClassifyArgs, ClassifyImageArgs, ClassifyWhat};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn clip_dir() -> String {
    root().join("clip/p8_40").display().to_string()
}

fn image_args(inputs: &[&str], out: PathBuf, skip_bad: bool) -> EmbedArgs {
    let input = inputs.iter().map(|n| root().join("image").join(n)).collect();
    EmbedArgs {
        what: EmbedWhat::Image(ImageArgs {
            model: clip_dir(),
            input,
            out,
            batch_size: 2,
            normalize: true,
            skip_bad,
        }),
    }
}

/// $BRAID_HOME/models/minilm, or None with a note unless BRAID_REQUIRE_ASSETS=1.
fn minilm_dir() -> Option<PathBuf> {
    let home = std::env::var_os("BRAID_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid")
    });
    let dir = home.join("models/minilm");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "{} is missing",
        dir.display()
    );
    eprintln!("note: skipping: {} is missing (run `braid fetch minilm`)", dir.display());
    None
}

#[test]
fn embed_text_minilm_matches_sentence_transformers() {
    let Some(model) = minilm_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("emb.npy");
    let args = TextArgs {
        model: model.display().to_string(),
        input: root().join("text/minilm_sentences.txt"),
        out: out.clone(),
        batch_size: 16,
        max_length: None,
    };
    run(&EmbedArgs { what: EmbedWhat::Text(args) }).unwrap();
    let ours = read_npy(&out).unwrap().to_tensor(&Device::Cpu).unwrap();
    let want =
        read_npy(root().join("text/minilm_expected.npy")).unwrap().to_tensor(&Device::Cpu).unwrap();
    let diff = max_abs_diff(&ours, &want).unwrap();
    eprintln!("braid embed text (minilm): max abs diff {diff:e}");
    assert!(diff <= 1e-4, "{diff}");
}

#[test]
fn empty_text_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("empty.txt");
    std::fs::write(&input, "").unwrap();
    let args = TextArgs {
        model: clip_dir(),
        input,
        out: tmp.path().join("o.npy"),
        batch_size: 4,
        max_length: None,
    };
    let err = format!("{:#}", run(&EmbedArgs { what: EmbedWhat::Text(args) }).unwrap_err());
    assert!(err.contains("empty.txt") && err.contains("empty"), "{err}");
}

#[test]
fn embed_image_writes_normalised_rows_and_jsonl() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("img.npy");
    run(&image_args(&["china.jpg", "flower.jpg", "rgba.png"], out.clone(), false)).unwrap();
    let emb = read_npy(&out).unwrap().to_tensor(&Device::Cpu).unwrap();
    assert_eq!(emb.dims(), &[3, 12]);
    let norms = emb.sqr().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    let jsonl = tmp.path().join("img.jsonl");
    run(&image_args(&["china.jpg"], jsonl.clone(), false)).unwrap();
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&jsonl).unwrap().trim()).unwrap();
    assert!(line["input"].as_str().unwrap().ends_with("china.jpg"));
    assert_eq!(line["embedding"].as_array().unwrap().len(), 12);
}

#[test]
fn bad_images_are_named_and_skip_bad_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.png");
    std::fs::write(&junk, b"not a png").unwrap();
    let out = tmp.path().join("o.npy");
    let cases: Vec<(String, &str)> = vec![
        (junk.display().to_string(), "junk.png"),
        (root().join("image").display().to_string(), "directory"),
        (root().join("image/bomb_20000x20000.png").display().to_string(), "decompression-bomb"),
    ];
    for (bad, says) in cases {
        let err = format!(
            "{:#}",
            run(&image_args(&["china.jpg", bad.as_str()], out.clone(), false)).unwrap_err()
        );
        assert!(err.contains(says) && err.contains("--skip-bad"), "{err}");
    }
    let bomb = root().join("image/bomb_20000x20000.png").display().to_string();
    run(&image_args(&["china.jpg", &bomb, "flower.jpg"], out.clone(), true)).unwrap();
    assert_eq!(read_npy(&out).unwrap().shape, vec![2, 12]);
    assert!(OutFormat::of(&tmp.path().join("o.csv")).is_err());
}

#[test]
fn classify_zero_shot_runs_on_photos() {
    let images = ["china.jpg", "flower.jpg"].iter().map(|n| root().join("image").join(n)).collect();
    let a = ClassifyImageArgs {
        model: Some(clip_dir()),
        labels: vec!["cat".into(), "dog".into(), "flower".into()],
        cache: None,
        template: "a photo of a {}.".into(),
        images,
        skip_bad: false,
    };
    crate::classify::run(&ClassifyArgs { what: ClassifyWhat::Image(a) }).unwrap();
}
