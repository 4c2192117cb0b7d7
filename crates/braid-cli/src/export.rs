//! `braid export-lora --model DIR --out OUT`: a trained multimodal model's LoRA as a PEFT
//! adapter (`adapter_model.safetensors` + `adapter_config.json`), or with `--merge` the
//! language model with LoRA folded in as a Hugging Face folder (`model.safetensors` +
//! `config.json`) that `transformers`, llama.cpp's converter and `braid chat` load.

use std::path::PathBuf;

use anyhow::{bail, Context};
use braid_pipeline::Pipeline;
use candle_core::Device;

/// Export a model's LoRA: as a PEFT adapter, or merged into the language model.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A Braid model directory (`pipeline.toml`) trained with LoRA.
    #[arg(long)]
    pub model: PathBuf,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the merged language model instead of the adapter.
    #[arg(long)]
    pub merge: bool,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let pipeline = Pipeline::open(
        &args.model,
        braid_pipeline::Weights::Trainable(candle_core::DType::F32),
        &Device::Cpu,
    )
    .with_context(|| format!("loading {}", args.model.display()))?;
    if pipeline.config().lora.is_none() {
        bail!("{} has no LoRA ([lora] in pipeline.toml)", args.model.display());
    }
    let llm = pipeline.llm()?;
    if args.merge {
        llm.export_merged(&args.out)?;
        eprintln!("merged language model written to {}", args.out.display());
    } else {
        llm.save_adapter(&args.out, pipeline.config().llm.as_deref())?;
        eprintln!("PEFT adapter written to {}", args.out.display());
    }
    Ok(())
}
