//! `braid inspect`: what a checkpoint holds, without loading it into a model.

use braid_core::checkpoint::{Checkpoint, Gguf};

/// Flags of `braid inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A .safetensors, .gguf or .npz file, or a registered model name.
    pub path: String,
    /// Most tensors to list (all: 0).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

/// GGUF metadata keys worth showing; the tokenizer arrays are summarised by length.
const GGUF_KEYS: &[&str] =
    &["general.architecture", "general.name", "general.file_type", "tokenizer.ggml.model"];

/// Runs `braid inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let mut path = braid_hub::resolve_model(&args.path)?;
    if path.is_dir() {
        path = path.join("model.safetensors");
    }
    let ckpt = Checkpoint::open(&path)?;
    let names = ckpt.names();
    let params: usize =
        names.iter().filter_map(|n| ckpt.shape(n)).map(|s| s.iter().product::<usize>()).sum();
    println!("{}: {} tensors, {:.2}M values", path.display(), names.len(), params as f64 / 1e6);
    let shown = if args.limit == 0 { names.len() } else { args.limit.min(names.len()) };
    for name in &names[..shown] {
        println!("  {name} {:?}", ckpt.shape(name).unwrap_or_default());
    }
    if shown < names.len() {
        println!("  ... {} more (--limit 0 lists all)", names.len() - shown);
    }
    if path.extension().is_some_and(|e| e == "gguf") {
        print_gguf_metadata(&Gguf::open(&path)?);
    }
    Ok(())
}

fn print_gguf_metadata(gguf: &Gguf) {
    println!("metadata:");
    for key in GGUF_KEYS {
        if let Ok(v) = gguf.get_str(key) {
            println!("  {key} = {v}");
        } else if let Ok(v) = gguf.get_u64(key) {
            println!("  {key} = {v}");
        }
    }
    if let Ok(tokens) = gguf.get_str_array("tokenizer.ggml.tokens") {
        println!("  tokenizer.ggml.tokens: {} entries", tokens.len());
    }
    if let Ok(t) = gguf.get_str("tokenizer.chat_template") {
        println!("  tokenizer.chat_template: {} characters", t.len());
    }
}
