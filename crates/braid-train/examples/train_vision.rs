//! Trains a vision recipe (issue 8 step 1: a CLIP-style ViT against frozen MiniLM caption
//! embeddings, shared representation learning) and prints its zero-shot report as JSON.
//! Registered names in the recipe (`easy-vqa`, `minilm`) resolve to their fetched folders.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p braid-train --example train_vision -- recipes/easyvqa/vision.toml [--resume]`

use std::path::PathBuf;

use braid_core::{Error, Result};
use braid_train::recipe::{train_vision, VisionRecipe};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).map(PathBuf::from).ok_or_else(|| Error::Invalid("usage: train_vision RECIPE.toml [--resume]".into()))?;
    let resume = std::env::args().any(|a| a == "--resume");
    let mut recipe = VisionRecipe::load(&path)?;
    recipe.resolve(braid_hub::resolve_model)?;
    let (report, summary) = train_vision(&recipe, resume, true)?;
    // The model keeps the recipe as written (registered names, not this machine's paths).
    let kept = report.model_dir.join("recipe.toml");
    std::fs::write(&kept, VisionRecipe::load(&path)?.to_toml()?).map_err(|e| Error::io(&kept, e))?;
    eprintln!("{} steps in {:.1} s ({:.0} samples/s), final loss {:.4}", summary.steps, summary.seconds, summary.samples_per_s, summary.final_loss);
    println!("{}", serde_json::to_string(&report).map_err(|e| Error::Invalid(e.to_string()))?);
    Ok(())
}
