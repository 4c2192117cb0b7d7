//! Every committed recipe parses, and the multimodal-LLM ones (whose checks read no file)
//! pass their checks; paths are not resolved (the runs they start from are not in the
//! repository).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

use braid_train::recipe::Recipe;

fn recipes(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            recipes(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_committed_recipe_parses_and_the_conversation_ones_validate() {
    let mut files = Vec::new();
    recipes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("onellm/imu.toml")), "{files:?}");
    for f in files {
        let r = Recipe::load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if matches!(r, Recipe::Align(_) | Recipe::Instruct(_) | Recipe::Preference(_)) {
            r.validate().unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
    }
}
