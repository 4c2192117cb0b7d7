//! Running a `diffusion` recipe: captions and images read, a word vocabulary built from
//! the captions, the UNet and text encoder trained, the model written as a pipeline
//! directory whose `generator/` is a diffusers folder, and a grid of samples drawn.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use braid_core::{Error, Modality, Result};
use braid_data::conversation::{ConversationDataset, ConversationOptions, Role};
use braid_data::image::{load_rgb, resize_rgb, Filter};
use braid_data::text::TextTokenizer;
use braid_encoders::text::{ClipText, ClipTextConfig};
use braid_generators::diffusion::{
    save_pixel_folder, save_png_grid, FolderSpec, Prediction, Scheduler, StableDiffusion,
    UNet2DCondition, UNetConfig,
};
use braid_generators::GenerateOptions;
use braid_nn::init::seeded_var_builder;
use braid_pipeline::{GeneratorSlot, PipelineConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::{DiffusionExamples, DiffusionRecipe, DiffusionTask};
use crate::recipe::Launch;
use crate::{fit, RunSummary};

/// The generator's folder inside the model directory.
pub const GENERATOR_DIR: &str = "generator";

/// What a run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DiffusionReport {
    /// The model directory.
    pub model_dir: PathBuf,
    /// Parameters (UNet and text encoder).
    pub params: usize,
    /// Training images.
    pub train: usize,
    /// Held-out denoising loss.
    pub eval_loss: Option<f64>,
    /// The sample grid.
    pub samples: PathBuf,
}

/// DDPM's linear schedule, sampled by DDIM (x0 clipped to the pixel range).
fn scheduler_json(prediction: Prediction) -> Value {
    json!({"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001,
           "beta_end": 0.02, "beta_schedule": "linear", "prediction_type": prediction,
           "clip_sample": true, "clip_sample_range": 1.0, "set_alpha_to_one": false,
           "steps_offset": 1, "timestep_spacing": "leading"})
}

/// (image, caption) of every sample: the first image and the last assistant reply.
fn captioned(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let ds = ConversationDataset::open(path, &ConversationOptions::default())?;
    if ds.is_empty() {
        return Err(Error::format(path, "no samples"));
    }
    ds.iter()
        .map(|s| {
            let image = s
                .media_of(Modality::Image)
                .next()
                .ok_or_else(|| Error::format(path, format!("sample `{}` has no image", s.id)))?;
            let caption = s
                .turns
                .iter()
                .rev()
                .find(|t| t.role == Role::Assistant)
                .map(|t| t.text.trim().to_string())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| Error::format(path, format!("sample `{}` has no caption", s.id)))?;
            Ok((ds.root.join(image), caption))
        })
        .collect()
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase)
}

/// A word-level `tokenizer.json` over the captions' words: lower case, split on
/// non-alphanumerics, `<|startoftext|> ... <|endoftext|>`, unknown words `<unk>`.
fn word_tokenizer(captions: &[&str]) -> (String, usize) {
    let vocab: BTreeSet<String> = captions.iter().flat_map(|c| words(c)).collect();
    let mut ids = serde_json::Map::new();
    for (i, t) in ["<|startoftext|>", "<|endoftext|>", "<unk>"].iter().enumerate() {
        ids.insert(t.to_string(), json!(i));
    }
    for w in vocab {
        let n = ids.len();
        ids.insert(w, json!(n));
    }
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let n = ids.len();
    let spec = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<|startoftext|>"), special(1, "<|endoftext|>"), special(2, "<unk>")],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[^\\p{L}\\p{N}]+"},
                          "behavior": "Removed", "invert": false},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 1],
                           "cls": ["<|startoftext|>", 0], "trim_offsets": false, "add_prefix_space": false},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": ids, "unk_token": "<unk>"}
    });
    (spec.to_string(), n)
}

/// Images resized to `size`, in [-1, 1], and caption ids padded to `tokens`.
fn examples(
    items: &[(PathBuf, String)],
    tok: &TextTokenizer,
    size: usize,
    device: &Device,
) -> Result<DiffusionExamples> {
    let mut px = Vec::with_capacity(items.len() * 3 * size * size);
    let mut rows = Vec::with_capacity(items.len());
    for (path, caption) in items {
        let img = resize_rgb(&load_rgb(path)?, size as u32, size as u32, Filter::Box)?;
        for c in 0..3 {
            for p in img.pixels() {
                px.push(p.0[c] as f32 / 127.5 - 1.0);
            }
        }
        rows.push(padded_ids(tok, caption)?);
    }
    let n = items.len();
    let tokens = tok.max_length();
    Ok(DiffusionExamples {
        images: Tensor::from_vec(px, (n, 3, size, size), device)?,
        ids: Tensor::from_vec(rows.concat(), (n, tokens), device)?,
    })
}

fn padded_ids(tok: &TextTokenizer, text: &str) -> Result<Vec<u32>> {
    let enc = tok.encode(text)?;
    if enc.truncated {
        return Err(Error::Invalid(format!(
            "caption `{text}` is longer than the text encoder's {} tokens (model.text.max_position_embeddings)",
            tok.max_length()
        )));
    }
    let mut ids = enc.ids;
    ids.resize(tok.max_length(), tok.pad_id());
    Ok(ids)
}

/// Trains the recipe's generator and saves the model.
pub fn train_diffusion(
    recipe: &DiffusionRecipe,
    launch: &Launch,
) -> Result<(DiffusionReport, RunSummary)> {
    recipe.validate()?;
    let dev = Device::Cpu;
    let train_items = captioned(&recipe.data.path)?;
    let eval_items = recipe.data.eval_path.as_deref().map(captioned).transpose()?;
    let captions: Vec<&str> = train_items.iter().map(|(_, c)| c.as_str()).collect();
    let (tokenizer_json, vocab) = word_tokenizer(&captions);
    std::fs::create_dir_all(&recipe.out_dir).map_err(|e| Error::io(&recipe.out_dir, e))?;
    let tok_path = recipe.out_dir.join("tokenizer.json");
    std::fs::write(&tok_path, &tokenizer_json).map_err(|e| Error::io(&tok_path, e))?;
    let max_tokens = recipe.model.text.max_position_embeddings;
    let tok = TextTokenizer::from_file(&tok_path, max_tokens)?.with_pad_token("<|endoftext|>")?;

    let size = recipe.data.size;
    let text_cfg =
        ClipTextConfig { vocab_size: vocab, eos_token_id: 1, ..recipe.model.text.clone() };
    let unet_cfg = UNetConfig {
        sample_size: size,
        in_channels: 3,
        out_channels: 3,
        cross_attention_dim: text_cfg.hidden_size,
        ..recipe.model.unet.clone()
    };
    let vm = VarMap::new();
    let vb = seeded_var_builder(&vm, recipe.train.seed, DType::F32, &dev);
    let unet = UNet2DCondition::new(&unet_cfg, vb.pp("unet"))?;
    let text = ClipText::new(&text_cfg, vb.pp("text_encoder"))?;
    let sched_json = scheduler_json(recipe.model.prediction);
    let scheduler = Scheduler::from_map(sched_json.as_object().cloned().unwrap_or_default())?;
    let model = StableDiffusion::from_parts(unet, None, text, tok.clone(), scheduler, &dev);
    let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();

    let task = DiffusionTask {
        model: &model,
        vars: &vm,
        train: examples(&train_items, &tok, size, &dev)?,
        eval: eval_items.as_deref().map(|e| examples(e, &tok, size, &dev)).transpose()?,
        empty: Tensor::new(padded_ids(&tok, "")?, &dev)?.unsqueeze(0)?,
        cond_dropout: recipe.model.cond_dropout,
        seed: recipe.train.seed,
    };
    let summary = fit(&task, &recipe.train, &launch.run_options(&recipe.out_dir))?;

    let weights: HashMap<String, Tensor> = {
        let data =
            vm.data().lock().map_err(|_| Error::Invalid("variables lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect()
    };
    let spec = FolderSpec {
        unet: &unet_cfg,
        text: &text_cfg,
        tokenizer_json: &tokenizer_json,
        max_tokens,
        scheduler: &sched_json,
    };
    let model_dir = launch.save_model(&recipe.out_dir, |tmp| {
        save_pixel_folder(&tmp.join(GENERATOR_DIR), &spec, &weights)?;
        let cfg = PipelineConfig {
            generator: Some(GeneratorSlot { path: GENERATOR_DIR.into() }),
            ..PipelineConfig::default()
        };
        let p = tmp.join(braid_pipeline::PIPELINE_FILE);
        std::fs::write(&p, cfg.to_toml()?).map_err(|e| Error::io(&p, e))
    })?;

    // One sample per distinct caption (up to 32), as a grid.
    let mut seen = BTreeSet::new();
    let prompts: Vec<&str> = eval_items
        .as_deref()
        .unwrap_or(&train_items)
        .iter()
        .map(|(_, c)| c.as_str())
        .filter(|c| seen.insert(c.to_string()))
        .take(32)
        .collect();
    let trained = StableDiffusion::from_folder(&model_dir.join(GENERATOR_DIR), &dev)?;
    let opts = GenerateOptions { seed: recipe.train.seed, steps: 25, guidance: 3.0 };
    let images =
        prompts.iter().map(|p| trained.text_to_image(p, &opts)).collect::<Result<Vec<_>>>()?;
    let samples = recipe.out_dir.join("samples.png");
    save_png_grid(&Tensor::cat(&images, 0)?, 8, &samples)?;
    let prompts_path = recipe.out_dir.join("samples.txt");
    std::fs::write(&prompts_path, prompts.join("\n")).map_err(|e| Error::io(&prompts_path, e))?;
    let report = DiffusionReport {
        model_dir,
        params,
        train: task.train.len(),
        eval_loss: summary.eval.get("loss").copied(),
        samples,
    };
    Ok((report, summary))
}
