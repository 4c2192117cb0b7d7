//! The GLM family (GLM-4 `GlmForCausalLM`, GLM-4-0414 `Glm4ForCausalLM`) against
//! `transformers` on tiny random configurations (scripts/fixtures/glm.py): logits from the
//! Hugging Face folder and from GGUF files written from the same weights by llama.cpp's
//! `gguf` package (`chatglm` with q, k, v apart or fused, `glm4`), trainable and frozen
//! bodies, greedy continuations, chat templates, LoRA, and the errors of configurations
//! Braid cannot build. Tolerance: f32, max abs diff 1e-4 on logits of scale ~4.
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use braid_core::checkpoint::Checkpoint;
use braid_core::testing::max_abs_diff;
use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{ChatTemplate, Llama, LlamaConfig, Message, TextModel, Tokenizer, Weights};
use braid_nn::gradcheck::check_all_vars_get_grad;
use braid_nn::{LoraConfig, LoraSpec};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::Value;

const MODELS: [&str; 3] = ["glm_tiny", "glm_odd", "glm4_tiny"];
const FROZEN: Weights = Weights::Frozen { dequantize: false };
const TRAINABLE: Weights = Weights::Trainable(DType::F32);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm").join(name)
}

fn io(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("io.safetensors"), &Device::Cpu).unwrap()
}

fn u32s(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::U32).unwrap().to_vec1().unwrap()
}

fn check(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let d = max_abs_diff(got, want).unwrap();
    println!("{what}: max abs diff {d:.3e}");
    assert!(d <= tol, "{what}: max abs diff {d} exceeds {tol}");
}

/// Loads `path` with `weights` (every tensor used, none missing) and checks its logits.
fn logits_match(name: &str, path: &Path, weights: Weights) -> Llama {
    let io = io(name);
    let (model, report) = Llama::load(path, weights, &Device::Cpu).unwrap();
    assert!(report.is_clean() && report.used > 0, "{name}: {report}");
    let ids = io["input_ids"].to_dtype(DType::U32).unwrap();
    let what = format!("{name} {} {weights:?}", path.file_name().unwrap().to_string_lossy());
    check(&model.forward(&ids).unwrap(), &io["logits"], 1e-4, &what);
    model
}

#[test]
fn hugging_face_folders_give_transformers_logits() {
    for name in MODELS {
        for weights in [TRAINABLE, FROZEN] {
            logits_match(name, &fixture(name), weights);
        }
    }
}

#[test]
fn gguf_files_from_the_same_weights_give_the_same_logits() {
    for name in MODELS {
        let gguf = fixture(name).join("model.gguf");
        let cfg =
            braid_llm::LlamaConfig::from_gguf(&braid_core::checkpoint::Gguf::open(&gguf).unwrap())
                .unwrap();
        let folder = LlamaConfig::from_json_file(&fixture(name).join("config.json")).unwrap();
        assert_eq!(cfg.rope_layout(), folder.rope_layout(), "{name}");
        assert_eq!(cfg.family(), folder.family(), "{name}");
        for weights in [TRAINABLE, FROZEN] {
            logits_match(name, &gguf, weights);
        }
    }
    // ChatGLM's fused `attn_qkv` (and its bias), split by the remap table.
    for weights in [TRAINABLE, FROZEN] {
        logits_match("glm_tiny", &fixture("glm_tiny").join("fused_qkv.gguf"), weights);
    }
}

#[test]
fn greedy_continuations_equal_transformers() {
    let tokenizer = Tokenizer::from_folder(&fixture("glm_tiny")).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
    for name in MODELS {
        let io = io(name);
        let prompt = u32s(&io["prompt_ids"]);
        for weights in [TRAINABLE, FROZEN] {
            let (model, _) = Llama::load(&fixture(name), weights, &Device::Cpu).unwrap();
            let (out, _) = generate(
                &model,
                &tokenizer,
                std::slice::from_ref(&prompt),
                &cfg,
                &Device::Cpu,
                &mut |_, _| Ok(()),
            )
            .unwrap();
            assert_eq!(out[0].tokens, u32s(&io["greedy"]), "{name} {weights:?}");
        }
    }
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixture("glm_tiny").join("chat_cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn glm_chat_templates_render_like_transformers() {
    let all = cases();
    assert!(all.len() >= 20, "{}", all.len());
    let with_system = all.iter().filter(|c| c["messages"][0]["role"] == "system").count();
    assert!(with_system >= 4 && with_system < all.len(), "{with_system}");
    for c in &all {
        let s = |k: &str| c[k].as_str().unwrap();
        let t = ChatTemplate::new(s("template"), s("bos_token"), s("eos_token")).unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let msgs: Vec<Message> = serde_json::from_value(c["messages"].clone()).unwrap();
        assert_eq!(t.render(&msgs, gen).unwrap(), s("rendered"), "{} gen={gen}", s("name"));
    }
}

#[test]
fn folder_and_gguf_chat_from_their_own_files() {
    let io = io("glm_tiny");
    let case = cases()
        .into_iter()
        .find(|c| {
            c["name"] == "glm4"
                && c["messages"].as_array().unwrap().len() == 4
                && c["messages"][0]["content"].as_str().unwrap().contains("助手")
                && c["add_generation_prompt"] == true
        })
        .unwrap();
    let msgs: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
    for path in [fixture("glm_tiny"), fixture("glm_tiny").join("model.gguf")] {
        let tm = TextModel::load(&path, FROZEN, &Device::Cpu).unwrap();
        // A reply stops at <|user|> as well as at <|endoftext|> (GLM-4's
        // generation_config.json; llama.cpp's end-of-turn token in GGUF).
        let id = |t: &str| tm.tokenizer.token_to_id(t).unwrap();
        let stops = tm.tokenizer.eos_ids();
        assert!(
            stops.contains(&id("<|endoftext|>")) && stops.contains(&id("<|user|>")),
            "{stops:?}"
        );
        let rendered = tm.chat_template().unwrap().render(&msgs, true).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap(), "{}", path.display());
        let ids = tm.tokenizer.encode(&rendered, false).unwrap();
        assert_eq!(ids, u32s(&io["prompt_ids"]), "{}", path.display());
        let (out, _) =
            generate(&tm.model, &tm.tokenizer, &[ids], &cfg, &Device::Cpu, &mut |_, _| Ok(()))
                .unwrap();
        assert_eq!(out[0].tokens, u32s(&io["greedy"]), "{}", path.display());
    }
    // GGUF's `chatglm-bpe` pre-tokenizer splits as the folder's tokenizer.json does
    // (digits in threes, contractions, runs of spaces and newlines).
    let text = "Year 20261207: it's   spaced\n\n out, they'LL see 12 + 3456!";
    let folder = Tokenizer::from_folder(&fixture("glm_tiny")).unwrap();
    let gguf = TextModel::load(&fixture("glm_tiny").join("model.gguf"), FROZEN, &Device::Cpu)
        .unwrap()
        .tokenizer;
    assert_eq!(gguf.encode(text, false).unwrap(), folder.encode(text, false).unwrap());
}

/// The GLM projections PEFT users target (GLM stacks gate and up in `gate_up_proj`).
const GLM_TARGETS: [&str; 6] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"];

/// A trainable GLM with random non-zero LoRA on every projection, its LoRA map, and ids.
fn lora_model(name: &str) -> (Llama, VarMap, Tensor) {
    let dir = fixture(name);
    let cfg = LlamaConfig::from_json_file(&dir.join("config.json")).unwrap();
    let ckpt = Checkpoint::open(dir.join("model.safetensors")).unwrap();
    let (vb, _) = ckpt.var_builder(DType::F32, &Device::Cpu);
    let vm = VarMap::new();
    let spec = LoraSpec::new(
        LoraConfig { rank: 4, alpha: 8.0 },
        &GLM_TARGETS,
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    );
    let model = Llama::with_lora(&cfg, vb, &spec).unwrap();
    // B starts at zero (PEFT); make it non-zero so that the update matters.
    for (n, v) in vm.data().lock().unwrap().iter() {
        if n.ends_with("lora_B.weight") {
            v.set(&(Tensor::randn(0f32, 0.3, v.dims(), &Device::Cpu).unwrap())).unwrap();
        }
    }
    (model, vm, io(name)["input_ids"].to_dtype(DType::U32).unwrap())
}

#[test]
fn lora_on_glm_reaches_every_variable_and_merges_to_the_same_logits() {
    for name in ["glm_tiny", "glm4_tiny"] {
        let (model, vm, ids) = lora_model(name);
        // 6 projections x A and B x 2 layers.
        assert_eq!(vm.all_vars().len(), 24, "{name}");
        assert!(vm
            .data()
            .lock()
            .unwrap()
            .contains_key("model.layers.1.mlp.gate_up_proj.lora_A.weight"));
        let logits = model.forward(&ids).unwrap();
        let targets =
            Tensor::new(&[[7i64, 1, 9, 4, 2, 0, 5], [2, 0, 5, 3, 3, 1, -100]], &Device::Cpu)
                .unwrap();
        let loss = braid_nn::cross_entropy(&logits, &targets, Some(-100)).unwrap();
        check_all_vars_get_grad(&vm, &loss).unwrap();
        let merged = model.merge_lora().unwrap();
        let plain = Llama::new(
            model.config(),
            VarBuilder::from_tensors(merged.clone(), DType::F32, &Device::Cpu),
        )
        .unwrap();
        check(&plain.forward(&ids).unwrap(), &logits, 1e-4, &format!("{name} merged vs unmerged"));
        // The frozen body with the same LoRA (fused projections kept) agrees too.
        let tensors = model.lora_tensors().unwrap();
        let (frozen, _) = Llama::load_frozen_with_lora(
            &fixture(name),
            &Device::Cpu,
            LoraConfig { rank: 4, alpha: 8.0 },
            &GLM_TARGETS,
            &tensors,
        )
        .unwrap();
        check(&frozen.forward(&ids).unwrap(), &logits, 1e-4, &format!("{name} frozen LoRA"));
        // The merged export names exactly the checkpoint's tensors.
        let mut names: Vec<_> = merged.keys().cloned().collect();
        let mut want = Checkpoint::open(fixture(name).join("model.safetensors")).unwrap().names();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{name}");
    }
}

#[test]
fn every_glm_weight_gets_gradient() {
    for name in MODELS {
        let cfg = LlamaConfig::from_json_file(&fixture(name).join("config.json")).unwrap();
        let vm = VarMap::new();
        let model =
            Llama::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).unwrap();
        let ids = Tensor::new(&[[3u32, 7, 1, 9], [4, 2, 0, 5]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[[7i64, 1, 9, 4], [2, 0, 5, -100]], &Device::Cpu).unwrap();
        let logits = model.forward(&ids).unwrap();
        let loss = braid_nn::cross_entropy(&logits, &targets, Some(-100)).unwrap();
        check_all_vars_get_grad(&vm, &loss).unwrap();
        let sandwich =
            vm.data().lock().unwrap().contains_key("model.layers.1.post_mlp_layernorm.weight");
        assert_eq!(sandwich, name == "glm4_tiny", "{name}");
    }
}

/// The error of reading `config.json` of `glm_odd` with `edit` applied.
fn config_error(edit: &dyn Fn(&mut serde_json::Map<String, Value>)) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("braid-glm-cfg-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixture("glm_odd").join("config.json")).unwrap();
    let mut cfg: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    edit(&mut cfg);
    let p = dir.join("config.json");
    std::fs::write(&p, serde_json::to_string(&cfg).unwrap()).unwrap();
    let e = LlamaConfig::from_json_file(&p).err().map(|e| e.to_string()).unwrap_or_default();
    std::fs::remove_dir_all(&dir).ok();
    e
}

#[test]
fn unsupported_rotary_layouts_are_errors_naming_the_field() {
    assert_eq!(config_error(&|_| {}), "");
    // A whole head of 10 rotates in 5 pairs: nothing wrong.
    assert_eq!(config_error(&|c| c["rope_parameters"]["partial_rotary_factor"] = 1.0.into()), "");
    let factor = |v: Value| {
        move |c: &mut serde_json::Map<String, Value>| {
            c["rope_parameters"]["partial_rotary_factor"] = v.clone();
        }
    };
    let field = "`rope_parameters.partial_rotary_factor`";
    for (v, want) in [
        (serde_json::json!(0.0), "must be a number in (0, 1], got 0"),
        (serde_json::json!(1.5), "must be a number in (0, 1], got 1.5"),
        (serde_json::json!(0.1), "rotates 1 dimensions: need 2..=10"),
    ] {
        let e = config_error(&factor(v));
        assert!(e.contains("config.json") && e.contains(field) && e.contains(want), "{e}");
    }
    // An odd head rotated whole cannot pair its dimensions.
    let e = config_error(&|c| {
        c.insert("head_dim".into(), serde_json::json!(9));
        c["rope_parameters"]["partial_rotary_factor"] = serde_json::json!(1.0);
    });
    assert!(e.contains(field) && e.contains("rotates 9"), "{e}");
    // A partial rotation outside GLM's interleaved layout.
    let e = config_error(&|c| {
        c.insert("model_type".into(), serde_json::json!("llama"));
    });
    assert!(e.contains(field) && e.contains("not supported for model_type `llama`"), "{e}");
    // transformers 4's top-level field is read (and named) too.
    let e = config_error(&|c| {
        c.remove("rope_parameters");
        c.insert("rope_theta".into(), serde_json::json!(10000.0));
        c.insert("partial_rotary_factor".into(), serde_json::json!(-0.5));
    });
    assert!(e.contains("`partial_rotary_factor`: must be a number in (0, 1]"), "{e}");
    let e = config_error(&|c| {
        c["rope_parameters"]["rope_type"] = serde_json::json!("yarn");
    });
    assert!(e.contains("`rope_parameters.rope_type`") && e.contains("yarn"), "{e}");
}

#[test]
fn transformers_4_glm_config_reads_the_same_layout() {
    let text = std::fs::read_to_string(fixture("glm_tiny").join("config.json")).unwrap();
    let mut cfg: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    cfg.remove("rope_parameters");
    cfg.insert("rope_theta".into(), serde_json::json!(10000.0));
    cfg.insert("partial_rotary_factor".into(), serde_json::json!(0.5));
    let old: LlamaConfig = serde_json::from_value(Value::Object(cfg)).unwrap();
    old.validate().unwrap();
    let new = LlamaConfig::from_json_file(&fixture("glm_tiny").join("config.json")).unwrap();
    assert_eq!(old.rope_layout(), new.rope_layout());
    assert_eq!(old.rope_base(), new.rope_base());
    assert_eq!(new.rope_layout().rotated(), 4);
    assert!(new.qkv_bias());
}

#[test]
fn gguf_of_an_unknown_architecture_or_a_bad_rotary_count_names_the_key() {
    use candle_core::quantized::gguf_file::{self, Value as G};
    use candle_core::quantized::{GgmlDType, QTensor};
    let dir = std::env::temp_dir().join(format!("braid-glm-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = QTensor::quantize(
        &Tensor::zeros((320, 32), DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let write = |file: &str, arch: &str, rot: u32| {
        let path = dir.join(file);
        let k = |s: &str| format!("{arch}.{s}");
        let meta: Vec<(String, G)> = vec![
            ("general.architecture".into(), G::String(arch.into())),
            (k("vocab_size"), G::U32(320)),
            (k("embedding_length"), G::U32(32)),
            (k("feed_forward_length"), G::U32(48)),
            (k("block_count"), G::U32(2)),
            (k("attention.head_count"), G::U32(4)),
            (k("attention.head_count_kv"), G::U32(2)),
            (k("attention.layer_norm_rms_epsilon"), G::F32(1e-5)),
            (k("rope.dimension_count"), G::U32(rot)),
        ];
        let refs: Vec<(&str, &G)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &refs, &[("token_embd.weight", &w)]).unwrap();
        path
    };
    let e = Llama::load(&write("chatglm2.gguf", "chatglm2", 4), FROZEN, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chatglm2.gguf")
            && e.contains("`general.architecture`")
            && e.contains("`chatglm2` is not supported; known: llama, chatglm, glm4"),
        "{e}"
    );
    let e = Llama::load(&write("wide.gguf", "chatglm", 12), TRAINABLE, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("wide.gguf") && e.contains("`chatglm.rope.dimension_count`"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
