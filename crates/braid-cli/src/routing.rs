//! `braid routing`: how a model's routed projector (the UPM) spreads each modality over
//! its experts, on a conversation dataset: one JSON line and a PNG heat map
//! (modality x expert, the mean routing weight).

use std::path::PathBuf;

use anyhow::Context;
use braid_data::conversation::{ConversationDataset, ConversationOptions};
use braid_pipeline::{routing_by_modality, Pipeline, Weights};
use candle_core::Device;

/// Flags of `braid routing`.
#[derive(Debug, clap::Args)]
pub struct RoutingArgs {
    /// A conversation file (`.json` / `.jsonl`) whose media are routed.
    pub data: PathBuf,
    /// The model directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Route the media of the first N samples only (0: all).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Where the heat map goes (PNG).
    #[arg(long)]
    pub png: Option<PathBuf>,
}

/// Runs `braid routing`.
pub fn run(args: &RoutingArgs) -> anyhow::Result<()> {
    let data = ConversationDataset::open(&args.data, &ConversationOptions::default())?;
    let pipeline = Pipeline::open(&args.model, Weights::Frozen { dequantize: false }, &Device::Cpu)
        .with_context(|| format!("opening {}", args.model.display()))?;
    let routing = routing_by_modality(&pipeline, &data, args.limit)?;
    let line: serde_json::Map<String, serde_json::Value> = routing
        .iter()
        .map(|r| {
            let v = serde_json::json!({ "weights": r.weights, "items": r.items });
            (r.modality.to_string(), v)
        })
        .collect();
    println!("{}", serde_json::Value::Object(line));
    if let Some(png) = &args.png {
        let experts = routing.first().map_or(0, |r| r.weights.len());
        let cells: Vec<Vec<(f64, String)>> = routing
            .iter()
            .map(|r| r.weights.iter().map(|&w| (w, format!("{w:.2}"))).collect())
            .collect();
        let rows: Vec<String> = routing.iter().map(|r| r.modality.to_string()).collect();
        let columns: Vec<String> = (0..experts).map(|e| format!("expert {e}")).collect();
        let title = "mean routing weight: rows modality, columns expert";
        braid_train::plot::heatmap_png(png, title, &cells, &rows, &columns)?;
        eprintln!("wrote {}", png.display());
    }
    Ok(())
}
