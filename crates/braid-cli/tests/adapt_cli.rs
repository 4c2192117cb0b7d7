//! Few-shot adapters through the binary: `braid data make shapes-shift`, `braid adapt
//! build`, `braid classify folder|image --cache`, the committed adapter cache scoring what
//! its report says, and the errors for a cache used with another model, a cache whose
//! tensors disagree with its description, more shots than a class has, and an image folder
//! of other classes. Needs `braid fetch minilm` (the text tower of models/easyvqa-clip);
//! without it these tests skip, unless BRAID_REQUIRE_ASSETS=1 (CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{braid, fetched, root, run};

const MODEL: &str = "models/easyvqa-clip";
const COMMITTED: &str = "models/adapters/shapes-tip-f-16";

fn make_shapes(dir: &Path, per_class: &[&str]) -> String {
    let data = dir.join("shapes");
    let mut args = vec!["data", "make", "shapes-shift", "--out", data.to_str().unwrap()];
    args.extend_from_slice(per_class);
    braid(&args);
    data.to_str().unwrap().to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn an_adapter_cache_is_built_used_and_refused_with_the_wrong_model() {
    if !fetched("minilm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_shapes(tmp.path(), &["--train", "4", "--val", "2", "--test", "2"]);
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().unwrap();
    let built = braid(&[
        "adapt",
        "build",
        "--model",
        MODEL,
        "--data",
        &data,
        "--method",
        "tip-x",
        "--shots",
        "2",
        "--template",
        "a {}",
        "--out",
        cache,
    ]);
    let line = stdout(&built);
    assert!(line.contains("tip-x (2 shots, seed 0)") && line.contains("of 48"), "{line}");
    // The folder score equals the test score `build` printed.
    let scored = braid(&["classify", "folder", "--cache", cache, "--data", &data]);
    let v: serde_json::Value = serde_json::from_str(stdout(&scored).trim()).unwrap();
    let acc = v["accuracy"].as_f64().unwrap();
    assert!(line.contains(&format!("test {:.2}%", 100.0 * acc)), "{line} vs {v}");
    assert_eq!((v["n"].as_u64(), v["method"].as_str()), (Some(48), Some("tip-x")));
    // One image.
    let img = format!("{data}/test/red_circle/0000.png");
    let one = braid(&["classify", "image", "--cache", cache, &img]);
    let v: serde_json::Value = serde_json::from_str(stdout(&one).trim()).unwrap();
    assert_eq!(v["probs"].as_object().unwrap().len(), 24, "{v}");

    // More shots than a class has.
    let out = run(&[
        "adapt", "build", "--model", MODEL, "--data", &data, "--method", "tip", "--shots", "5",
        "--out", cache,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("5 shots asked, but class 0 has only 4"), "{}", stderr(&out));

    // Another model (same architecture, other weights): refused by fingerprint.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for f in ["encoder.image.safetensors", "contrastive.safetensors"] {
        std::fs::copy(root().join(MODEL).join(f), other.join(f)).unwrap();
    }
    let toml = std::fs::read_to_string(root().join(MODEL).join("pipeline.toml")).unwrap();
    let toml = toml.replace("logit_scale = ", "logit_scale = 1.0\n# was ");
    std::fs::write(other.join("pipeline.toml"), toml).unwrap();
    let out = run(&[
        "classify",
        "folder",
        "--cache",
        cache,
        "--model",
        other.to_str().unwrap(),
        "--data",
        &data,
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("was built with another model"), "{}", stderr(&out));

    // adapter.toml and adapter.safetensors disagreeing: the width.
    let desc = Path::new(cache).join("adapter.toml");
    let text = std::fs::read_to_string(&desc).unwrap();
    std::fs::write(&desc, text.replace("dim = 64", "dim = 32")).unwrap();
    let out = run(&["classify", "folder", "--cache", cache, "--data", &data]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("adapter.safetensors") && stderr(&out).contains("`text`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&desc, text).unwrap();

    // A folder of other classes.
    let wrong = tmp.path().join("wrong");
    for c in ["cat", "dog"] {
        std::fs::create_dir_all(wrong.join("test").join(c)).unwrap();
        std::fs::copy(&img, wrong.join("test").join(c).join("a.png")).unwrap();
    }
    let out = run(&["classify", "folder", "--cache", cache, "--data", wrong.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("are not the cache's"), "{}", stderr(&out));
}

#[test]
fn the_committed_adapter_cache_scores_what_its_report_says() {
    if !fetched("minilm") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = make_shapes(tmp.path(), &[]);
    let scored = braid(&["classify", "folder", "--cache", COMMITTED, "--data", &data]);
    let v: serde_json::Value = serde_json::from_str(stdout(&scored).trim()).unwrap();
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(COMMITTED).join("report/eval.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(v["n"], report["n"], "{v} vs {report}");
    let (got, want) = (v["accuracy"].as_f64().unwrap(), report["accuracy"].as_f64().unwrap());
    // The same images and weights; a near tie may fall the other way on another CPU.
    assert!((got - want).abs() < 1.5e-3, "{got} vs {want}");
}
