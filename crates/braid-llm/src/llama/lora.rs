//! LoRA on the LLaMA decoder (Hu et al. 2021) in Hugging Face PEFT's formats: building
//! with LoRA, PEFT adapters in and out (`adapter_config.json` + `adapter_model.safetensors`,
//! reference: `peft.PeftModel.save_pretrained` / `from_pretrained`), and merging the
//! update into the weights for export as a plain Hugging Face folder
//! (`peft.LoraModel.merge_and_unload`). The frozen body takes LoRA too
//! ([`Llama::load_frozen_with_lora`]: quantized base, fused projections, the update
//! `alpha / r * x A^T B^T` of `peft/tuners/lora/layer.py` added to each part's output).
//!
//! LoRA variables are named from the model root without PEFT's prefix
//! (`model.layers.0.self_attn.q_proj.lora_A.weight`); adapter files carry
//! `base_model.model.` in front ([`PEFT_PREFIX`]), added on save and stripped on load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use braid_core::checkpoint::{Checkpoint, LoadReport};
use braid_core::{Error, Result};
use braid_nn::{LoraConfig, LoraSpec, PEFT_PREFIX};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::frozen::{FrozenLlama, LoraReader};
use super::load::open;
use super::{trainable::Trainable, Body, Llama, LlamaConfig};

/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// PEFT's adapter config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";

/// The fields of PEFT's `adapter_config.json` that Braid reads and writes (a `LoraConfig`);
/// other fields are ignored on read. Features Braid lacks (rsLoRA, DoRA, per-module ranks,
/// trained biases, regex targets) are refused by [`AdapterConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always `LORA`.
    pub peft_type: String,
    /// PEFT task type (`CAUSAL_LM`).
    #[serde(default)]
    pub task_type: Option<String>,
    /// The base model the adapter was trained on.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Rank.
    pub r: usize,
    /// Scale numerator (update scaled by `lora_alpha / r`).
    pub lora_alpha: f64,
    /// Module names wrapped with LoRA (a list; PEFT's regex form is not supported).
    pub target_modules: Vec<String>,
    /// Dropout on the LoRA input during training (Braid trains without it).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Trained biases: only `none`.
    #[serde(default = "no_bias")]
    pub bias: String,
    /// Weights stored `[in, out]` (GPT-2 Conv1D): not supported.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Scale `alpha / sqrt(r)`: not supported.
    #[serde(default)]
    pub use_rslora: bool,
    /// Weight-decomposed LoRA: not supported.
    #[serde(default)]
    pub use_dora: bool,
    /// Per-module ranks: must be empty.
    #[serde(default)]
    pub rank_pattern: HashMap<String, serde_json::Value>,
    /// Per-module alphas: must be empty.
    #[serde(default)]
    pub alpha_pattern: HashMap<String, serde_json::Value>,
}

fn no_bias() -> String {
    "none".into()
}

impl AdapterConfig {
    /// A causal-LM LoRA adapter config.
    pub fn new(cfg: LoraConfig, targets: &[String], base_model_name_or_path: Option<&str>) -> Self {
        Self {
            peft_type: "LORA".into(),
            task_type: Some("CAUSAL_LM".into()),
            base_model_name_or_path: base_model_name_or_path.map(str::to_string),
            r: cfg.rank,
            lora_alpha: cfg.alpha,
            target_modules: targets.to_vec(),
            lora_dropout: 0.0,
            bias: no_bias(),
            fan_in_fan_out: false,
            use_rslora: false,
            use_dora: false,
            rank_pattern: HashMap::new(),
            alpha_pattern: HashMap::new(),
        }
    }

    /// Reads `dir/adapter_config.json` and checks it is a LoRA Braid can run.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg: Self =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Fails, naming the field, on adapters Braid would compute differently from PEFT.
    pub fn validate(&self) -> Result<()> {
        let unsupported = [
            ("peft_type", self.peft_type != "LORA"),
            ("bias", self.bias != "none"),
            ("fan_in_fan_out", self.fan_in_fan_out),
            ("use_rslora", self.use_rslora),
            ("use_dora", self.use_dora),
            ("rank_pattern", !self.rank_pattern.is_empty()),
            ("alpha_pattern", !self.alpha_pattern.is_empty()),
        ];
        match unsupported.iter().find(|(_, bad)| *bad) {
            Some((field, _)) => Err(Error::config(
                *field,
                "this PEFT adapter setting is not supported (plain LoRA only)",
            )),
            None => Ok(()),
        }
    }

    /// Rank and scale.
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig { rank: self.r, alpha: self.lora_alpha }
    }

    /// A spec over `vb` at the model root.
    pub fn spec<'a>(&self, vb: VarBuilder<'a>) -> LoraSpec<'a> {
        LoraSpec { config: self.lora_config(), targets: self.target_modules.clone(), vb }
    }
}

/// Both writers go through `braid_core::fsx`: a temporary created exclusively, renamed
/// into place once on disk, so a crash never leaves half a file and a link planted at the
/// temporary name is never followed.
fn save_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    braid_core::fsx::write_file_at(path, |tmp| Ok(candle_core::safetensors::save(tensors, tmp)?))
}

fn save_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::format(path, e.to_string()))?;
    braid_core::fsx::write_file(path, text.as_bytes())
}

/// `dir/adapter_model.safetensors` with PEFT's prefix stripped from the names (on the CPU).
fn read_adapter_weights(dir: &Path) -> Result<(PathBuf, HashMap<String, Tensor>)> {
    let path = dir.join(ADAPTER_WEIGHTS);
    let file = candle_core::safetensors::load(&path, &Device::Cpu)?;
    let prefix = format!("{PEFT_PREFIX}.");
    let stored = file
        .into_iter()
        .map(|(k, v)| (k.strip_prefix(&prefix).map_or(k.clone(), str::to_string), v))
        .collect();
    Ok((path, stored))
}

/// The variables of `varmap` by name (the LoRA map of [`Llama::load_with_lora`]), detached:
/// what [`Llama::load_frozen_with_lora`] reads.
pub fn varmap_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect())
}

/// Sets the LoRA variables in `varmap` (built by [`Llama::with_lora`] over it) from the PEFT
/// adapter in `dir`, to resume training or run it; fails naming every missing, unexpected
/// or wrongly shaped tensor.
pub fn load_adapter(varmap: &VarMap, dir: &Path) -> Result<LoadReport> {
    let (path, mut stored) = read_adapter_weights(dir)?;
    let data = varmap.data().lock().map_err(|e| Error::Invalid(e.to_string()))?;
    let mut report = LoadReport::default();
    for (name, var) in data.iter() {
        match stored.remove(name) {
            None => report.missing.push(name.clone()),
            Some(t) if t.dims() != var.dims() => {
                report.mismatched.push((name.clone(), var.dims().to_vec(), t.dims().to_vec()))
            }
            Some(t) => {
                var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
                report.used += 1;
                report.total_params += t.elem_count();
            }
        }
    }
    report.unexpected = stored.into_keys().collect();
    report.missing.sort();
    report.unexpected.sort();
    report.into_result(&path)
}

impl Llama {
    /// The trainable model with LoRA on the projections `lora` targets: base weights from
    /// `vb` (constants), LoRA A and B from `lora.vb` (the trainable map), both at the
    /// checkpoint root. A and B of new variables start as PEFT's (B = 0).
    pub fn with_lora(cfg: &LlamaConfig, vb: VarBuilder, lora: &LoraSpec) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { body: Body::Trainable(Trainable::new(cfg, vb, Some(lora))?), cfg: cfg.clone() })
    }

    /// The base model in `path` (a Hugging Face folder or GGUF file, dequantized to
    /// `dtype`, its weights constants) with fresh LoRA on `targets`, the LoRA variables
    /// created in `varmap` (the trainable map of an `instruct` stage).
    pub fn load_with_lora(
        path: &Path,
        dtype: DType,
        device: &Device,
        lora: LoraConfig,
        targets: &[&str],
        varmap: &VarMap,
    ) -> Result<(Self, LoadReport)> {
        let (cfg, ckpt) = open(path)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let spec = LoraSpec::new(lora, targets, VarBuilder::from_varmap(varmap, dtype, device));
        let model = Self::with_lora(&cfg, vb, &spec)?;
        let report = tracker.report().into_result(ckpt.path())?;
        Ok((model, report))
    }

    /// The base model in `base` (a Hugging Face folder or GGUF file, as [`Llama::load`]) with
    /// the PEFT adapter in `adapter_dir` applied, for inference or merging (A and B are
    /// constants here; to train them, build with [`Llama::with_lora`] over a VarMap and
    /// call [`load_adapter`]). Fails unless every base and adapter tensor fits.
    pub fn load_with_adapter(
        base: &Path,
        adapter_dir: &Path,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let adapter = AdapterConfig::read(adapter_dir)?;
        let (cfg, ckpt) = open(base)?;
        let (vb, tracker) = ckpt.var_builder(dtype, device);
        let adapter_path = adapter_dir.join(ADAPTER_WEIGHTS);
        let (lora_vb, lora_tracker) = Checkpoint::open(&adapter_path)?.var_builder(dtype, device);
        let model = Self::with_lora(&cfg, vb, &adapter.spec(lora_vb.pp(PEFT_PREFIX)))?;
        lora_tracker.report().into_result(&adapter_path)?;
        let report = tracker.report().into_result(ckpt.path())?;
        Ok((model, report))
    }

    /// The frozen model of [`Llama::load_frozen`] (weights in their stored types, quantized
    /// GGUF weights multiplied quantized, fused q/k/v and gate/up) with LoRA on the
    /// projections `targets` names (PEFT's `target_modules` rule, as [`Llama::with_lora`]):
    /// each computes `base(x) + alpha / r * (x A^T) B^T`. `tensors` holds A `[r, in]` and B
    /// `[out, r]` by the trainable map's names (`model.layers.0.self_attn.q_proj.lora_A.weight`,
    /// `...lora_B.weight`; [`varmap_tensors`] of a [`Llama::load_with_lora`] map, or
    /// [`Llama::lora_tensors`]), copied in: later changes to them are not seen. Fails naming
    /// every missing, unexpected or wrongly shaped base or LoRA tensor; the report is the
    /// base checkpoint's.
    pub fn load_frozen_with_lora(
        path: &Path,
        device: &Device,
        lora: LoraConfig,
        targets: &[&str],
        tensors: &HashMap<String, Tensor>,
    ) -> Result<(Self, LoadReport)> {
        let (cfg, ckpt) = open(path)?;
        let reader = LoraReader::new(tensors, lora, targets, device)?;
        let (body, report) = FrozenLlama::load(&ckpt, &cfg, device, false, Some(reader))?;
        Ok((Self { body: Body::Frozen(body), cfg }, report))
    }

    /// The frozen base model in `base` (as [`Llama::load_frozen`], quantized weights kept)
    /// with the PEFT adapter in `adapter_dir` on it ([`Llama::load_frozen_with_lora`]): fast
    /// inference of an adapter without merging it. Fails unless every base and adapter
    /// tensor fits.
    pub fn load_frozen_with_adapter(
        base: &Path,
        adapter_dir: &Path,
        device: &Device,
    ) -> Result<(Self, LoadReport)> {
        let adapter = AdapterConfig::read(adapter_dir)?;
        let (_, tensors) = read_adapter_weights(adapter_dir)?;
        let targets: Vec<&str> = adapter.target_modules.iter().map(String::as_str).collect();
        Self::load_frozen_with_lora(base, device, adapter.lora_config(), &targets, &tensors)
    }

    fn trainable(&self, what: &str) -> Result<&Trainable> {
        match &self.body {
            Body::Trainable(t) => Ok(t),
            Body::Frozen(_) => Err(Error::Invalid(format!(
                "llama: {what} needs the trainable body, this model is frozen"
            ))),
        }
    }

    /// Every weight in Hugging Face names (`model.layers.0.self_attn.q_proj.weight`, ...)
    /// with each LoRA update folded in (`W + alpha / r * B A`), detached: the state dict of
    /// PEFT's `merge_and_unload()`. A model without LoRA gives its plain weights.
    pub fn merge_lora(&self) -> Result<HashMap<String, Tensor>> {
        self.trainable("merge_lora")?.merged_tensors(self.cfg.tie_word_embeddings)
    }

    /// The LoRA A and B matrices by variable name, without PEFT's prefix; empty without LoRA.
    pub fn lora_tensors(&self) -> Result<HashMap<String, Tensor>> {
        self.trainable("lora_tensors")?.lora_tensors()
    }

    /// Writes the merged model as a Hugging Face folder `dir/{model.safetensors,
    /// config.json}` that [`Llama::load`] (and `transformers`) can read; each file is
    /// written to a `.tmp` file and renamed into place.
    pub fn export_merged(&self, dir: &Path) -> Result<()> {
        let weights = self.merge_lora()?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        save_safetensors(&dir.join("model.safetensors"), &weights)?;
        save_json(&dir.join("config.json"), &self.cfg)
    }

    /// Writes the LoRA matrices as a PEFT adapter: `dir/adapter_model.safetensors` (names
    /// under `base_model.model.`) and `dir/adapter_config.json`, each through a `.tmp` file.
    pub fn save_adapter(&self, dir: &Path, base_model_name_or_path: Option<&str>) -> Result<()> {
        let body = self.trainable("save_adapter")?;
        let Some((cfg, targets)) = body.lora() else {
            return Err(Error::Invalid("llama: save_adapter on a model built without LoRA".into()));
        };
        let tensors = body
            .lora_tensors()?
            .into_iter()
            .map(|(k, v)| (format!("{PEFT_PREFIX}.{k}"), v))
            .collect();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        save_safetensors(&dir.join(ADAPTER_WEIGHTS), &tensors)?;
        save_json(
            &dir.join(ADAPTER_CONFIG),
            &AdapterConfig::new(*cfg, targets, base_model_name_or_path),
        )
    }
}
