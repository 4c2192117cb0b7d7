//! `braid draw` through the binary: a diffusers folder (the tiny random SD fixture) drawn
//! to PNG files and a grid, deterministic per seed; bad requests and folders rejected
//! with the field named; a model without a generator named; espeak-ng speech to WAV.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn braid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid")).args(args).current_dir(root()).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const SD: &str = "fixtures/diffusion/tiny-sd";

#[test]
fn draws_pngs_and_a_grid_the_same_for_the_same_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let grid = tmp.path().join("grid.png");
    let args = ["draw", "--model", SD, "--out-dir", dir, "-n", "2", "--steps", "3", "--seed", "4"];
    let out =
        braid(&[&args[..], &["--grid", grid.to_str().unwrap(), "a red circle", "zebra"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    for name in ["a-red-circle-4.png", "a-red-circle-5.png", "zebra-4.png", "zebra-5.png"] {
        assert!(listed.contains(name), "{listed}");
        assert!(tmp.path().join(name).is_file());
    }
    let first = std::fs::read(tmp.path().join("a-red-circle-4.png")).unwrap();
    let again = tmp.path().join("again.png");
    let out = braid(&[
        "draw",
        "--model",
        SD,
        "--out",
        again.to_str().unwrap(),
        "--steps",
        "3",
        "--seed",
        "4",
        "--scheduler",
        "ddim",
        "a red circle",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(first, std::fs::read(&again).unwrap(), "same seed, same image");
    let euler = tmp.path().join("euler.png");
    let out = braid(&[
        "draw",
        "--model",
        SD,
        "--out",
        euler.to_str().unwrap(),
        "--steps",
        "3",
        "--scheduler",
        "euler",
        "x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let png = image_size(&grid);
    assert_eq!(png, (2 * 16, 2 * 16), "two images a row, a row per prompt");
}

/// Width and height from a PNG's IHDR.
fn image_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (be(16), be(20))
}

#[test]
fn bad_requests_and_models_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("x.png");
    let png = png.to_str().unwrap();
    let cases: [(&[&str], &str); 8] = [
        (&["--size", "100000", "x"], "at most 2048"),
        (&["--steps", "0", "x"], "steps"),
        (&["--guidance", "NaN", "x"], "guidance"),
        (&["--size", "20", "x"], "multiples of 8"),
        (&["--scheduler", "pndm", "x"], "ddim or euler"),
        (&["a red circle, a blue square and a green triangle"], "longer than"),
        (&["-n", "0", "x"], "-n 0"),
        (&["--model", "models/fusion-hapt", "x"], "no generator"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["draw", "--out", png];
        if !extra.contains(&"--model") {
            args.extend(["--model", SD]);
        }
        args.extend_from_slice(extra);
        let out = braid(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(want) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn espeak_ng_speaks_prompts_to_wav() {
    if Command::new("espeak-ng").arg("--version").output().is_err() {
        if std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") {
            panic!("espeak-ng is not installed");
        }
        eprintln!("skipping: apt-get install espeak-ng");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = braid(&[
        "draw",
        "--model",
        "espeak-ng:en-us",
        "--out-dir",
        tmp.path().to_str().unwrap(),
        "--",
        "seven",
        "-v x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let wav = std::fs::read(tmp.path().join("seven.wav")).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 16_000);
    assert!(tmp.path().join("v-x.wav").is_file(), "text that looks like a flag is spoken");
}
