//! `braid demo`: the main job, end to end. It fetches the default models, loads each
//! into Braid's modules and reports what was loaded; each capability adds its part.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use braid_core::checkpoint::LoadReport;
use braid_core::Modality;
use braid_encoders::text::{Bert, SentenceEncoder};
use braid_hub::FetchOptions;
use braid_llm::Llama;
use braid_pipeline::{answer_questions, Pipeline};
use candle_core::{DType, Device};

/// Flags of `braid demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Use only what is already in $BRAID_HOME; never download.
    #[arg(long)]
    pub offline: bool,
}

/// The models the demo loads, in order.
const MODELS: [&str; 2] = ["minilm", "smollm2"];

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let device = Device::Cpu;
    for name in MODELS {
        let path = if args.offline {
            braid_hub::resolve_model(name)?
        } else {
            braid_hub::fetch(name, &FetchOptions::default())?.main
        };
        let start = Instant::now();
        let (what, report) = match name {
            "minilm" => load_minilm(&path, &device)?,
            _ => load_smollm2(&path, &device)?,
        };
        print_loaded(name, &what, &report, start.elapsed().as_secs_f64());
    }
    similarity_demo(&braid_hub::resolve_model("minilm")?, &device)?;
    crate::chat::demo_turn(&braid_hub::resolve_model("smollm2")?)?;
    hapt_demo(args.offline)?;
    easyvqa_demo(args.offline)?;
    onellm_demo()?;
    fusion_demo()?;
    generator_demo()?;
    Ok(())
}

/// Draws two prompts with the committed text-to-image generator (`models/draw-generator`,
/// `recipes/draw/generator.toml`) into the temporary directory and prints the files.
pub(crate) fn generator_demo() -> anyhow::Result<()> {
    let dir = committed_model_dir("draw-generator");
    if !dir.join(braid_pipeline::PIPELINE_FILE).is_file() {
        println!(
            "
generator: {} is not there; recipes/draw/generator.toml trains it",
            dir.display()
        );
        return Ok(());
    }
    let model =
        Pipeline::open(&dir, braid_pipeline::Weights::Frozen { dequantize: false }, &Device::Cpu)
            .with_context(|| format!("loading {}", dir.display()))?;
    let Some(sd) = model.generator() else {
        anyhow::bail!("{}: no generator", dir.display());
    };
    println!(
        "
generator ({}):",
        dir.display()
    );
    for prompt in ["a red circle", "a teal triangle"] {
        let start = Instant::now();
        let opts = braid_generators::GenerateOptions { seed: 0, steps: 25, guidance: 3.0 };
        let image = sd.text_to_image(prompt, &opts)?;
        let path =
            std::env::temp_dir().join(format!("braid-demo-{}.png", prompt.replace(' ', "-")));
        braid_generators::diffusion::save_png_grid(&image, 1, &path)?;
        let s = start.elapsed().as_secs_f64();
        println!("  {prompt:<16} -> {} ({s:.1} s)", path.display());
    }
    Ok(())
}

fn load_minilm(dir: &Path, device: &Device) -> anyhow::Result<(String, LoadReport)> {
    let (bert, report) = Bert::from_folder(dir, DType::F32, device)
        .with_context(|| format!("loading MiniLM from {}", dir.display()))?;
    let c = bert.config();
    let what = format!(
        "BERT encoder, {} layers, hidden {}, {} heads",
        c.num_hidden_layers, c.hidden_size, c.num_attention_heads
    );
    Ok((what, report))
}

fn load_smollm2(gguf: &Path, device: &Device) -> anyhow::Result<(String, LoadReport)> {
    let (llama, report) = Llama::from_gguf(gguf, DType::F32, device)
        .with_context(|| format!("loading SmolLM2 from {}", gguf.display()))?;
    let c = llama.config();
    let what = format!(
        "LLaMA decoder (GGUF, dequantized f32), {} layers, hidden {}, {}/{} heads, vocab {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.kv_heads(),
        c.vocab_size
    );
    Ok((what, report))
}

/// Sentences whose MiniLM embeddings the demo compares: the first two mean the same.
const SENTENCES: [&str; 3] = [
    "The wearable sensor recorded the participant walking upstairs.",
    "An accelerometer on the wrist logged someone climbing stairs.",
    "The recipe needs two cups of flour and an egg.",
];

/// Embeds [`SENTENCES`] with MiniLM and prints their cosine similarities.
fn similarity_demo(dir: &Path, device: &Device) -> anyhow::Result<()> {
    let (encoder, _) = SentenceEncoder::load(dir, None, device)?;
    let (emb, _) = encoder.embed(&SENTENCES, device)?;
    // The embeddings are L2-normalised, so dot products are cosine similarities.
    let sims = emb.matmul(&emb.t()?)?.to_vec2::<f32>()?;
    println!("embed (MiniLM, cosine similarity)");
    for (i, j) in [(0, 1), (0, 2)] {
        println!("  {:>6.3}  \"{}\" ~ \"{}\"", sims[i][j], SENTENCES[i], SENTENCES[j]);
    }
    Ok(())
}

fn print_loaded(name: &str, what: &str, report: &LoadReport, seconds: f64) {
    println!("{name}: {what}");
    println!(
        "  {} tensors, {:.1}M parameters, {} missing, {} unexpected, {} mismatched; loaded in {seconds:.2} s",
        report.used,
        report.total_params as f64 / 1e6,
        report.missing.len(),
        report.unexpected.len(),
        report.mismatched.len(),
    );
}

/// A committed model directory (`models/NAME`), from the working directory or the
/// source tree.
fn committed_model_dir(name: &str) -> std::path::PathBuf {
    let here = Path::new("models").join(name);
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models").join(name)
}

/// A committed recipe (`recipes/NAME`), from the working directory or the source tree.
fn committed_recipe(name: &str) -> std::path::PathBuf {
    let here = Path::new("recipes").join(name);
    if here.is_file() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes").join(name)
}

/// The committed IMU activity model (`braid train recipes/hapt/*.toml`, best encoder).
fn hapt_model_dir() -> std::path::PathBuf {
    committed_model_dir("hapt-imu")
}

/// Test images the easy-VQA demo asks about, and its questions.
const VQA_IMAGES: [u32; 3] = [7, 21, 108];

/// Asks the committed easy-VQA model (`recipes/easyvqa/*.toml`: a ViT trained by Braid, an
/// MLP projector and LoRA on SmolLM2-135M) a few questions about test images and prints
/// each answer beside the truth.
pub(crate) fn easyvqa_demo(offline: bool) -> anyhow::Result<()> {
    let data = if offline {
        crate::data::dataset_path("easy-vqa")?
    } else {
        braid_hub::fetch("easy-vqa", &FetchOptions::default())?.main
    };
    let dir = committed_model_dir("easyvqa");
    let pipeline =
        Pipeline::open(&dir, braid_pipeline::Weights::Frozen { dequantize: false }, &Device::Cpu)
            .with_context(|| format!("loading {}", dir.display()))?;
    let test = braid_data::vqa::EasyVqa::open(&data, braid_data::vqa::Split::Test)?;
    println!("\neasy-VQA ({}), questions about test images:", dir.display());
    for id in VQA_IMAGES {
        let questions: Vec<_> = test.questions_of(id).into_iter().take(3).collect();
        let texts: Vec<&str> = questions.iter().map(|q| q.question.as_str()).collect();
        let start = Instant::now();
        let image = pipeline.load_input(Modality::Image, &test.image_path(id))?;
        let answers = answer_questions(&pipeline, std::slice::from_ref(&image), &texts, 4)?;
        let ms = 1000.0 * start.elapsed().as_secs_f64() / texts.len().max(1) as f64;
        for (q, a) in questions.iter().zip(&answers) {
            let ok = if a.trim().eq_ignore_ascii_case(q.answer.trim()) { "ok" } else { "MISS" };
            println!(
                "  image {id:>4}  {:<36} answer {a:<10} truth {:<10} {ok}",
                q.question, q.answer
            );
        }
        println!("  ({ms:.0} ms per question)");
    }
    Ok(())
}

/// Classifies a few HAPT test windows (users 22-30, never seen in training) with the
/// committed model and prints prediction beside truth, then the accuracy on all of them.
pub(crate) fn hapt_demo(offline: bool) -> anyhow::Result<()> {
    let data = if offline {
        crate::data::dataset_path("hapt")?
    } else {
        braid_hub::fetch("hapt", &FetchOptions::default())?.main
    };
    let dir = hapt_model_dir();
    let model =
        Pipeline::open(&dir, braid_pipeline::Weights::Frozen { dequantize: false }, &Device::Cpu)
            .with_context(|| format!("loading {}", dir.display()))?;
    let stats = braid_train::recipe::imu_stats(&model)?;
    let classes = model.classes().unwrap_or_default();
    // The test split (users 22-30) as the recipe that trained the model chose it.
    let recipe_path = committed_recipe("hapt/cnn.toml");
    let text =
        std::fs::read_to_string(&recipe_path).with_context(|| recipe_path.display().to_string())?;
    let braid_train::recipe::Recipe::Classify(mut recipe) =
        braid_train::recipe::Recipe::parse(&text, &recipe_path)?
    else {
        anyhow::bail!("{}: not a classify recipe", recipe_path.display());
    };
    recipe.data.path = data;
    let split = recipe.data.load_with(Some(&stats))?;
    let start = Instant::now();
    let pred =
        braid_train::classify::ClassifyTask::predict(&model, Modality::Imu, &split.test.x, 256)?;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "\nHAPT activity recognition ({}, trained on users 1-21), test windows of users 22-30:",
        dir.display()
    );
    let n = pred.len();
    for i in (0..8).map(|k| k * n / 8 + n / 16) {
        let (p, t) = (&classes[pred[i]], &classes[split.test.y[i]]);
        println!(
            "  window {i:>4}: predicted {p:<20} truth {t:<20} {}",
            if p == t { "ok" } else { "MISS" }
        );
    }
    let m = braid_train::classify::ClassMetrics::new(&pred, &split.test.y, classes.len());
    println!(
        "  all {n} test windows: accuracy {:.2}%, macro-F1 {:.2}% ({:.2} s)",
        100.0 * m.accuracy,
        100.0 * m.macro_f1,
        seconds
    );
    Ok(())
}

/// Asks the committed OneLLM-style model (`recipes/onellm/*.toml`: image, audio and IMU
/// through one shared UPM into SmolLM2) about the held-out samples committed beside it
/// (`models/onellm/demo/demo.json`: a HAPT window of a test user, a digit in a test voice,
/// an easy-VQA test image) and prints each answer beside the truth.
pub(crate) fn onellm_demo() -> anyhow::Result<()> {
    let dir = committed_model_dir("onellm");
    if !dir.join(braid_pipeline::PIPELINE_FILE).is_file() {
        println!(
            "\nOneLLM-style model: {} is not there; scripts/onellm.sh trains it",
            dir.display()
        );
        return Ok(());
    }
    let file = dir.join("demo/demo.json");
    let data = braid_data::conversation::ConversationDataset::open(&file, &Default::default())?;
    let pipeline =
        Pipeline::open(&dir, braid_pipeline::Weights::Frozen { dequantize: false }, &Device::Cpu)
            .with_context(|| format!("loading {}", dir.display()))?;
    println!(
        "\nOneLLM-style model ({}), one shared projection module for all three:",
        dir.display()
    );
    let start = Instant::now();
    let report = braid_pipeline::evaluate_conversations(&pipeline, &data, 0, 8, false)?;
    let ms = 1000.0 * start.elapsed().as_secs_f64() / report.n.max(1) as f64;
    for (sample, a) in data.iter().zip(&report.answers) {
        let kind = sample.media.first().map_or("text".to_string(), |m| m.modality.to_string());
        let question = sample.turns.first().map_or("", |t| t.text.as_str());
        let question = question.rsplit('\n').next().unwrap_or(question);
        let ok = if a.is_right() { "ok" } else { "MISS" };
        println!(
            "  {kind:<5} {question:<44} answer {:<12} truth {:<12} {ok}",
            a.answer.trim(),
            a.truth
        );
    }
    println!("  ({ms:.0} ms per question)");
    Ok(())
}

/// The committed fusion models (`scripts/fusion.sh`, best method of each dataset) and the
/// held-out samples beside them (`demo.safetensors`: one tensor per input, `label`).
const FUSION_MODELS: [&str; 2] = ["fusion-hapt", "fusion-avdigits"];

/// Classifies each committed fusion model's demo samples with every input, and again
/// without each input, beside the truth.
pub(crate) fn fusion_demo() -> anyhow::Result<()> {
    for name in FUSION_MODELS {
        let dir = committed_model_dir(name);
        if !dir.join(braid_pipeline::PIPELINE_FILE).is_file() {
            println!("\nfusion model: {} is not there; scripts/fusion.sh trains it", dir.display());
            continue;
        }
        let model = Pipeline::open(
            &dir,
            braid_pipeline::Weights::Frozen { dequantize: false },
            &Device::Cpu,
        )
        .with_context(|| format!("loading {}", dir.display()))?;
        let Some(fusion) = model.fusion() else {
            anyhow::bail!("{}: not a fusion model", dir.display());
        };
        let cfg = fusion.config();
        let file = dir.join("demo.safetensors");
        let samples = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| file.display().to_string())?;
        let get = |n: &str| {
            samples.get(n).cloned().with_context(|| format!("{}: no tensor `{n}`", file.display()))
        };
        let inputs = cfg.inputs.iter().map(|i| get(&i.name)).collect::<anyhow::Result<Vec<_>>>()?;
        let labels: Vec<u32> = get("label")?.to_vec1()?;
        let names: Vec<&str> = cfg.inputs.iter().map(|i| i.name.as_str()).collect();
        println!("\nfusion model ({}, {}):", dir.display(), names.join(" + "));
        let predict = |drop: Option<usize>| -> anyhow::Result<Vec<u32>> {
            let x: Vec<Option<candle_core::Tensor>> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| (Some(i) != drop).then(|| t.clone()))
                .collect();
            Ok(fusion.forward(&x)?.argmax(1)?.to_vec1::<u32>()?)
        };
        let all = predict(None)?;
        let without: Vec<Vec<u32>> =
            (0..inputs.len()).map(|i| predict(Some(i))).collect::<anyhow::Result<_>>()?;
        let class = |k: u32| cfg.classes.get(k as usize).map_or("?", String::as_str);
        for (j, &truth) in labels.iter().enumerate() {
            let others: Vec<String> = names
                .iter()
                .zip(&without)
                .map(|(n, p)| format!("without {n}: {}", class(p[j])))
                .collect();
            println!(
                "  truth {:<18} fused: {:<18} {}",
                class(truth),
                class(all[j]),
                others.join(", ")
            );
        }
    }
    Ok(())
}
