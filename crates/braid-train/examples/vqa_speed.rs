//! Braid's side of `bench/easyvqa_speed.sh`: SmolLM2-135M-Instruct on the exact shapes of
//! the easy-VQA stages (issue 8), CPU f32, one JSON line per case. The PyTorch side,
//! `bench/easyvqa_speed.py`, runs the same shapes.
//!
//! - `a_align_5img`: an `align` step, 8 samples of 5 image tokens (MLP projector 64 -> 576
//!   -> 576, GELU) + 32 text tokens; LLM frozen, loss on the last 8 text positions, backward
//!   into the projector, gradient clipping and one AdamW step. samples/s.
//! - `b_align_64img`: the same with 64 image tokens (the PyTorch reference shape).
//! - `u_align_upm`: the align step of `recipes/onellm/image.toml`: the 5 image tokens
//!   through OneLLM's UPM (3 experts of 2 blocks, width 128, 8 queries, start/end tags: 10
//!   tokens) instead of the MLP.
//! - `c_instruct`: an `instruct` step, 4 conversations of 5 image + 190 text tokens, LoRA
//!   r 8 (alpha 16) on all seven projections + the projector, loss on 20 positions each.
//!   conversations/s.
//! - `d_eval` (f32 LoRA model, as `braid eval vqa` runs it) and `d_eval_frozen_q4` (the
//!   frozen GGUF, weights kept quantized): one greedy answer, a 15-token prefix (5 image
//!   tokens) cached once, then per question the cache rewound to the prefix, a 15-token
//!   question and 2 decode steps. questions/s.
//!
//! The loss is the training task's own (`braid_train::stages::padded_loss`): the samples of
//! a batch run as one padded batch, with `Llama::logits_at` at the labelled positions only.
//!
//! `RAYON_NUM_THREADS=1 cargo run --release -p braid-train --example vqa_speed --
//! [--repeats N] [--cases abcd] [--gguf PATH]`; without `--gguf` the GGUF in
//! `$BRAID_HOME/models/smollm2` (`braid fetch smollm2`). Each case runs once to warm up,
//! then `repeats` timed times; `per_s` is from the median.

use std::path::PathBuf;
use std::time::Instant;

use braid_core::Features;
use braid_core::{Error, Result};
use braid_llm::{LanguageModel, Llama, Weights};
use braid_nn::{LoraConfig, LoraSpec};
use braid_projectors::{InputProjector, MlpProjector, MlpProjectorConfig, UpmConfig, UpmProjector};
use braid_train::optim::prefixed_vars;
use braid_train::stages::padded_loss;
use braid_train::{clip_grad_norm, AdamW, AdamWConfig, Grads};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{json, Value};

/// Width of a vision feature (the easy-VQA ViT).
const VISION_DIM: usize = 64;
/// The recipes' `max_grad_norm`.
const MAX_GRAD_NORM: f64 = 1.0;

/// Resolved command line.
struct Settings {
    gguf: PathBuf,
    repeats: usize,
    cases: String,
}

fn settings() -> Result<Settings> {
    let (mut gguf, mut repeats, mut cases) = (None, 3, "abcd".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value =
            || args.next().ok_or_else(|| Error::Invalid(format!("{flag} needs a value")));
        match flag.as_str() {
            "--gguf" => gguf = Some(PathBuf::from(value()?)),
            "--repeats" => {
                repeats = value()?
                    .parse()
                    .map_err(|_| Error::Invalid("--repeats: not a number".into()))?
            }
            "--cases" => cases = value()?,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown argument {flag} (--gguf PATH, --repeats N, --cases abcd)"
                )))
            }
        }
    }
    let gguf = match gguf {
        Some(p) => p,
        None => home_gguf()?,
    };
    Ok(Settings { gguf, repeats: repeats.max(1), cases })
}

fn home_gguf() -> Result<PathBuf> {
    let home = std::env::var_os("BRAID_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid")
    });
    let dir = home.join("models/smollm2");
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        .ok_or_else(|| {
            Error::Invalid(format!("no GGUF in {} (run `braid fetch smollm2`)", dir.display()))
        })
}

/// Seconds of each of `repeats` timed runs after one warm-up.
fn timings(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// The median, the mean of the middle two for an even count (as Python's `statistics.median`).
fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    match (t.get((n.max(1) - 1) / 2), t.get(n / 2)) {
        (Some(a), Some(b)) => (a + b) / 2.0,
        _ => f64::NAN,
    }
}

/// Prints one case as the JSON line both sides share; `items` are processed per timed run.
fn emit(case: &str, unit: &str, items: usize, times: &[f64], extra: Value) {
    let med = median(times);
    let mut line = json!({
        "side": "braid", "case": case, "unit": unit, "items": items, "per_s": items as f64 / med,
        "median_s": med, "min_s": times.iter().copied().fold(f64::INFINITY, f64::min),
        "repeats": times.len(), "threads": candle_core::utils::get_num_threads(),
    });
    if let (Some(l), Value::Object(e)) = (line.as_object_mut(), extra) {
        l.extend(e);
    }
    println!("{line}");
}

/// One batch of a training stage: per sample, vision features [1, image, 64] and text ids
/// [1, text]; the sequence is the image tokens, then the text.
struct Batch {
    features: Vec<Tensor>,
    ids: Vec<Tensor>,
    /// Rows whose logits are scored (position t predicts label t + 1).
    rows: Vec<u32>,
    /// The label of each row.
    targets: Tensor,
    /// Tokens the projector makes of one sample's features.
    tokens: usize,
}

impl Batch {
    /// `labelled`: positions of the sequence whose label is learnt (-100 elsewhere).
    fn new(
        size: usize,
        image: usize,
        text: usize,
        labelled: &[usize],
        dev: &Device,
    ) -> Result<Self> {
        let mut features = Vec::new();
        let mut ids = Vec::new();
        for s in 0..size {
            features.push(Tensor::randn(0f32, 1., (1, image, VISION_DIM), dev)?);
            let t: Vec<u32> =
                (0..text as u32).map(|i| 100 + (i * 37 + s as u32 * 101) % 4000).collect();
            ids.push(Tensor::new(t.as_slice(), dev)?.unsqueeze(0)?);
        }
        let rows: Vec<u32> = labelled.iter().map(|&p| p as u32 - 1).collect();
        let targets: Vec<i64> = labelled.iter().map(|&p| 100 + (p as i64 * 13) % 4000).collect();
        Ok(Self {
            features,
            ids,
            rows,
            targets: Tensor::new(targets.as_slice(), dev)?,
            tokens: image,
        })
    }

    fn seq(&self) -> Result<usize> {
        Ok(self.tokens + self.ids.first().map_or(Ok(0), |t| t.dim(1))?)
    }
}

/// Mean cross-entropy over every labelled token of the batch, through the training task's
/// own batched loss ([`padded_loss`]: one padded batch, logits at the labelled rows).
fn batch_loss(llm: &Llama, proj: &dyn InputProjector, batch: &Batch) -> Result<Tensor> {
    let targets = batch.targets.to_vec1::<i64>()?;
    let sequences = batch
        .features
        .iter()
        .zip(&batch.ids)
        .map(|(f, ids)| {
            let tokens = proj.project(&Features::new(f.clone(), None)?)?.tokens;
            let embeds = Tensor::cat(&[tokens, llm.embed_tokens(ids)?], 1)?;
            let mut labels = vec![-100i64; embeds.dim(1)?];
            for (&row, &t) in batch.rows.iter().zip(&targets) {
                labels[row as usize + 1] = t;
            }
            Ok((embeds, labels))
        })
        .collect::<Result<Vec<_>>>()?;
    padded_loss(llm, sequences)
}

/// One optimiser step as `braid_train::fit` takes it: loss, backward, clip, AdamW.
fn train_step(
    llm: &Llama,
    proj: &dyn InputProjector,
    batch: &Batch,
    vars: &[(String, Var)],
    opt: &mut AdamW,
) -> Result<()> {
    let loss = batch_loss(llm, proj, batch)?;
    let mut grads = Grads::from_vars(vars.iter().map(|(n, v)| (n.as_str(), v)), &loss.backward()?);
    clip_grad_norm(&mut grads, MAX_GRAD_NORM)?;
    opt.step(&grads)
}

fn projector(varmap: &VarMap, hidden: usize, dev: &Device) -> Result<MlpProjector> {
    MlpProjector::new(
        MlpProjectorConfig::default(),
        VISION_DIM,
        hidden,
        VarBuilder::from_varmap(varmap, DType::F32, dev),
    )
}

/// The UPM of `recipes/onellm/*.toml` for one modality.
fn upm(varmap: &VarMap, hidden: usize, dev: &Device) -> Result<UpmProjector> {
    let cfg = UpmConfig {
        experts: 3,
        layers: 2,
        width: 128,
        heads: 4,
        ffn_multiple_of: 64,
        queries: 8,
        ..UpmConfig::default()
    };
    UpmProjector::new(&cfg, VISION_DIM, hidden, VarBuilder::from_varmap(varmap, DType::F32, dev))
}

/// An `align` step with `image` image tokens: only the projector (an MLP, or the UPM
/// with `use_upm`) trains.
fn align(
    llm: &Llama,
    case: &str,
    image: usize,
    use_upm: bool,
    repeats: usize,
    dev: &Device,
) -> Result<()> {
    let (size, text, labelled) = (8, 32, 8);
    let varmap = VarMap::new();
    let proj: Box<dyn InputProjector> = if use_upm {
        Box::new(upm(&varmap, llm.hidden_size(), dev)?)
    } else {
        Box::new(projector(&varmap, llm.hidden_size(), dev)?)
    };
    let tokens = if use_upm { 8 + 2 } else { image };
    let seq = tokens + text;
    let mut batch = Batch::new(size, image, text, &(seq - labelled..seq).collect::<Vec<_>>(), dev)?;
    batch.tokens = tokens;
    let proj = proj.as_ref();
    let vars = prefixed_vars("projector.image", &varmap)?;
    let mut opt = AdamW::from_vars(
        vars.clone(),
        AdamWConfig { lr: 2e-3, weight_decay: 0.0, ..Default::default() },
    );
    let times = timings(repeats, || train_step(llm, proj, &batch, &vars, &mut opt))?;
    emit(
        case,
        "samples/s",
        size,
        &times,
        json!({ "seq": batch.seq()?, "labelled_per_sample": labelled }),
    );
    Ok(())
}

/// An `instruct` step: LoRA (in `lora`, already inside `llm`) and the projector train.
fn instruct(llm: &Llama, lora: &VarMap, repeats: usize, dev: &Device) -> Result<()> {
    let (size, image, text, labelled) = (4, 5, 190, 20);
    // Twenty answer tokens spread over the turns of the conversation.
    let positions: Vec<usize> = (0..labelled).map(|k| image + 9 * k + 8).collect();
    let batch = Batch::new(size, image, text, &positions, dev)?;
    let varmap = VarMap::new();
    let proj = projector(&varmap, llm.hidden_size(), dev)?;
    let mut vars = prefixed_vars("projector.image", &varmap)?;
    vars.extend(prefixed_vars("lora", lora)?);
    let mut opt = AdamW::from_vars(
        vars.clone(),
        AdamWConfig { lr: 5e-4, weight_decay: 0.0, ..Default::default() },
    );
    let times = timings(repeats, || train_step(llm, &proj, &batch, &vars, &mut opt))?;
    let trainable: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    emit(
        "c_instruct",
        "conversations/s",
        size,
        &times,
        json!({ "seq": batch.seq()?, "labelled_per_sample": labelled, "trainable_params": trainable }),
    );
    Ok(())
}

/// The greedy next token of logits [1, vocab], as ids [1, 1].
fn greedy(logits: &Tensor) -> Result<Tensor> {
    let id = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(Tensor::new(id.as_slice(), logits.device())?.unsqueeze(0)?)
}

/// Greedy answers from a cached 15-token prefix (5 image tokens): rewind, a 15-token
/// question, 2 decode steps.
fn evaluate(llm: &Llama, case: &str, repeats: usize, dev: &Device) -> Result<()> {
    let (image, prefix_text, question, decode) = (5, 10, 15, 2);
    let varmap = VarMap::new();
    let proj = projector(&varmap, llm.hidden_size(), dev)?;
    let features = Tensor::randn(0f32, 1., (1, image, VISION_DIM), dev)?;
    let ids = |n: usize, from: u32| {
        Tensor::new(
            (0..n as u32).map(|i| 100 + (from + i * 37) % 4000).collect::<Vec<_>>().as_slice(),
            dev,
        )?
        .unsqueeze(0)
    };
    let (prefix_ids, question_ids) = (ids(prefix_text, 0)?, ids(question, 7)?);
    let mut cache = llm.new_cache();
    let run_prefix = |cache: &mut braid_llm::DecodeCache| -> Result<()> {
        cache.reset();
        let embeds = Tensor::cat(&[proj.forward(&features)?, llm.embed_tokens(&prefix_ids)?], 1)?;
        llm.forward_last(&embeds, None, Some(cache)).map(drop)
    };
    let prefix_times = timings(repeats, || run_prefix(&mut cache))?;
    let cached = cache.len();
    let times = timings(repeats, || {
        cache.truncate(cached)?;
        let mut next = greedy(&llm.forward_last(
            &llm.embed_tokens(&question_ids)?,
            None,
            Some(&mut cache),
        )?)?;
        for _ in 0..decode {
            next = greedy(&llm.forward_last(&llm.embed_tokens(&next)?, None, Some(&mut cache))?)?;
        }
        Ok(())
    })?;
    emit(
        case,
        "questions/s",
        1,
        &times,
        json!({ "prefix": cached, "question": question, "decode_steps": decode, "prefix_median_s": median(&prefix_times) }),
    );
    Ok(())
}

/// Runs on a rayon pool of `RAYON_NUM_THREADS` with the main thread one of its workers, and
/// candle's spinning lowered, as `braid train` does.
fn main() -> Result<()> {
    braid_train::quiet_spinning();
    let pool = rayon::ThreadPoolBuilder::new().build();
    pool.map_err(|e| braid_core::Error::Invalid(format!("thread pool: {e}")))?.install(run)
}

fn run() -> Result<()> {
    let s = settings()?;
    let dev = Device::Cpu;
    let wants = |c: char| s.cases.contains(c);
    eprintln!(
        "SmolLM2-135M ({}), {} threads, {} repeats",
        s.gguf.display(),
        candle_core::utils::get_num_threads(),
        s.repeats
    );
    if wants('a') || wants('b') || wants('u') {
        let (llm, _) = Llama::load(&s.gguf, Weights::Trainable(DType::F32), &dev)?;
        if wants('a') {
            align(&llm, "a_align_5img", 5, false, s.repeats, &dev)?;
        }
        if wants('b') {
            align(&llm, "b_align_64img", 64, false, s.repeats, &dev)?;
        }
        if wants('u') {
            align(&llm, "u_align_upm", 5, true, s.repeats, &dev)?;
        }
    }
    if wants('c') || wants('d') {
        let lora = VarMap::new();
        let (llm, _) = Llama::load_with_lora(
            &s.gguf,
            DType::F32,
            &dev,
            LoraConfig { rank: 8, alpha: 16.0 },
            &LoraSpec::LLAMA_ALL,
            &lora,
        )?;
        if wants('c') {
            instruct(&llm, &lora, s.repeats, &dev)?;
        }
        if wants('d') {
            evaluate(&llm, "d_eval", s.repeats, &dev)?;
        }
    }
    if wants('d') {
        let (frozen, _) = Llama::load_frozen(&s.gguf, false, &dev)?;
        evaluate(&frozen, "d_eval_frozen_q4", s.repeats, &dev)?;
    }
    Ok(())
}
