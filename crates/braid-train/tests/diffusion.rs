//! The `diffusion` stage end to end on a tiny captioned dataset (red and blue squares):
//! it trains (the denoising loss falls), the model directory opens with `Pipeline::open`
//! and `braid draw`'s generator, draws deterministically, and bad recipes and data fail
//! before training, naming the field.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use braid_generators::diffusion::save_png_grid;
use braid_generators::GenerateOptions;
use braid_pipeline::{Pipeline, Weights};
use braid_train::recipe::{Launch, Recipe};
use candle_core::{Device, Tensor};

/// 12 images 8x8: a red or a blue square on white, captioned.
fn dataset(dir: &Path, captions: &[&str]) -> std::path::PathBuf {
    let dev = Device::Cpu;
    let mut samples = Vec::new();
    for i in 0..12 {
        let red = i % 2 == 0;
        let mut px = vec![1f32; 3 * 64];
        for y in 2..6 {
            for x in (1 + i % 3)..(5 + i % 3) {
                let rgb = if red { [0.9, 0.1, 0.1] } else { [0.1, 0.1, 0.9] };
                for c in 0..3 {
                    px[c * 64 + y * 8 + x] = rgb[c];
                }
            }
        }
        let img = Tensor::from_vec(px, (1, 3, 8, 8), &dev).unwrap();
        let name = format!("{i}.png");
        save_png_grid(&img, 1, &dir.join(&name)).unwrap();
        let caption = captions[usize::from(!red)];
        samples.push(format!(
            "{{\"id\": \"{i}\", \"image\": \"{name}\", \"conversations\": [{{\"from\": \"human\", \"value\": \"<image>\\nDescribe the image.\"}}, {{\"from\": \"gpt\", \"value\": \"{caption}\"}}]}}"
        ));
    }
    let path = dir.join("captions.json");
    std::fs::write(&path, format!("[{}]", samples.join(",\n"))).unwrap();
    path
}

fn recipe_text(out: &Path, data: &Path, size: usize, steps: usize) -> String {
    format!(
        "stage = \"diffusion\"\nout_dir = \"{}\"\n[data]\npath = \"{}\"\neval_path = \"{}\"\nsize = {size}\n\
         [model]\ncond_dropout = 0.2\nprediction = \"sample\"\n[model.unet]\nblock_out_channels = [8, 16]\n\
         down_block_types = [\"DownBlock2D\", \"CrossAttnDownBlock2D\"]\n\
         up_block_types = [\"CrossAttnUpBlock2D\", \"UpBlock2D\"]\nlayers_per_block = 1\n\
         attention_head_dim = 2\nnorm_num_groups = 4\n\
         [model.text]\nhidden_size = 16\nintermediate_size = 24\nnum_hidden_layers = 1\n\
         num_attention_heads = 2\nmax_position_embeddings = 6\n\
         [train]\nmax_steps = {steps}\nbatch_size = 6\nlr = 3e-3\nwarmup_steps = 2\nlog_every = 1\n\
         eval_every = 1000\ncheckpoint_every = 1000\n",
        out.display(),
        data.display(),
        data.display()
    )
}

fn launch(text: &str) -> (Recipe, Launch) {
    let recipe = Recipe::parse(text, Path::new("r.toml")).unwrap();
    let launch =
        Launch { written: text.into(), resolved: recipe.to_toml().unwrap(), ..Default::default() };
    (recipe, launch)
}

#[test]
fn trains_saves_and_draws_from_the_model_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), &["a red square", "a blue square"]);
    let out = tmp.path().join("run");
    let (recipe, launch) = launch(&recipe_text(&out, &data, 8, 40));
    let trained = recipe.run(&launch).unwrap();
    let losses: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["split"] == "train")
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
    let last: f64 = losses[losses.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(last < 0.7 * first, "denoising loss {first} -> {last}");
    assert!(out.join("samples.png").is_file());
    assert!(trained.report["eval_loss"].as_f64().unwrap().is_finite());

    let model =
        Pipeline::open(&trained.model_dir, Weights::Frozen { dequantize: false }, &Device::Cpu)
            .unwrap();
    let sd = model.generator().unwrap();
    let opts = GenerateOptions { seed: 5, steps: 4, guidance: 2.0 };
    let a = sd.text_to_image("a red square", &opts).unwrap();
    let b = sd.text_to_image("a red square", &opts).unwrap();
    assert_eq!(a.dims(), [1, 3, 8, 8]);
    let same = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(same, 0.0, "the same seed draws the same image");
    let c = sd.text_to_image("a blue square", &opts).unwrap();
    let differ = (&a - &c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(differ > 1e-3, "the caption conditions the image");
}

#[test]
fn bad_recipes_and_data_are_named_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path(), &["a red square", "a blue square"]);
    let out = tmp.path().join("run");
    let (recipe, _) = launch(&recipe_text(&out, &data, 7, 1));
    let err = recipe.validate().unwrap_err().to_string();
    assert!(err.contains("data.size"), "{err}");

    let text = recipe_text(&out, &data, 8, 1).replace("cond_dropout = 0.2", "cond_dropout = 1.5");
    let err =
        Recipe::parse(&text, Path::new("r.toml")).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("cond_dropout"), "{err}");

    let text =
        recipe_text(&out, &data, 8, 1).replace("layers_per_block = 1", "layers_per_block = 100000");
    let err =
        Recipe::parse(&text, Path::new("r.toml")).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("layers_per_block"), "{err}");

    let text = recipe_text(&out, &data, 8, 1).replace("block_out_channels = [8, 16]", "blocks = 3");
    let err = Recipe::parse(&text, Path::new("r.toml")).unwrap_err().to_string();
    assert!(err.contains("blocks"), "{err}");

    let long = dataset(tmp.path(), &["a very red square drawn in the middle", "a blue square"]);
    let (recipe, run2) = launch(&recipe_text(&tmp.path().join("run2"), &long, 8, 1));
    let err = recipe.run(&run2).unwrap_err().to_string();
    assert!(err.contains("max_position_embeddings"), "{err}");

    let empty = tmp.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let (recipe, launch) = launch(&recipe_text(&tmp.path().join("run3"), &empty, 8, 1));
    let err = recipe.run(&launch).unwrap_err().to_string();
    assert!(err.contains("empty.json"), "{err}");
}
