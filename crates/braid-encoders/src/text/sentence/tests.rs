use std::path::PathBuf;

use braid_core::checkpoint::read_npy;
use braid_core::testing::max_abs_diff;
use candle_core::Device;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/text")
}

/// The fetched MiniLM folder, or `None` (with a note) when it is absent and
/// BRAID_REQUIRE_ASSETS is not 1.
pub(crate) fn minilm_dir() -> Option<PathBuf> {
    let home = std::env::var_os("BRAID_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid")
    });
    let dir = home.join("models/minilm");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
        "BRAID_REQUIRE_ASSETS=1 but {} is missing; run `braid fetch minilm`",
        dir.display()
    );
    eprintln!("note: skipping: {} is missing (run `braid fetch minilm`)", dir.display());
    None
}

#[test]
fn minilm_matches_sentence_transformers_on_60_sentences() {
    let Some(dir) = minilm_dir() else { return };
    let (enc, report) = SentenceEncoder::load(&dir, None, &Device::Cpu).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(enc.tokenizer().max_length(), 256);
    let text = std::fs::read_to_string(fixtures().join("minilm_sentences.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 50);
    let (ours, truncated) = enc.embed(&lines, &Device::Cpu).unwrap();
    let expected =
        read_npy(fixtures().join("minilm_expected.npy")).unwrap().to_tensor(&Device::Cpu).unwrap();
    let diff = max_abs_diff(&ours, &expected).unwrap();
    eprintln!("MiniLM: {} sentences, max abs diff {diff:e}, {truncated} truncated", lines.len());
    assert!(diff <= 1e-4, "max abs diff {diff}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("minilm_expected.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(truncated as u64, meta["truncated"].as_u64().unwrap());
}

#[test]
fn unsupported_pooling_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"pooling_mode_max_tokens": true}"#).unwrap();
    let err = read_pooling(&path).unwrap_err().to_string();
    assert!(err.contains("`max` is not supported"), "{err}");
}
