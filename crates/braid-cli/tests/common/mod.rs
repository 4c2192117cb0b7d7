//! Helpers of the CLI tests: the repository root, fetched assets, running `braid`.
#![allow(clippy::panic, clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether a registered model or dataset is fetched; a failure when it is not and
/// BRAID_REQUIRE_ASSETS=1 (CI).
pub fn fetched(name: &str) -> bool {
    let home = braid_hub::home();
    let ok = braid_hub::find(name).is_ok_and(|e| braid_hub::is_fetched(e, &home));
    if !ok && std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") {
        panic!("{name} is not fetched");
    }
    ok
}

/// The repository root (the working directory of every `braid` run).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `braid ARGS` run from the repository root, whatever its outcome.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_braid")).args(args).current_dir(root()).output().unwrap()
}

/// `braid ARGS`, which must succeed.
pub fn braid(args: &[&str]) -> Output {
    let out = run(args);
    assert!(out.status.success(), "braid {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}
