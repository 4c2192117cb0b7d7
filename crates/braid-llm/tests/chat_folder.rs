//! Chat templates rendered byte for byte like `transformers.apply_chat_template`, and a
//! tiny Hugging Face Qwen2 folder (tokenizer.json, chat_template.jinja, safetensors) loaded
//! and run end to end against `transformers` (scripts/fixtures/chat_template.py).
#![allow(clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::path::PathBuf;

use braid_llm::generate::{generate, GenerateConfig};
use braid_llm::{ChatTemplate, LanguageModel, Message, TextModel, Weights};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("chat_template/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn templates_render_like_transformers() {
    let all = cases();
    assert!(all.len() >= 18, "{}", all.len());
    for c in &all {
        let s = |k: &str| c[k].as_str().unwrap();
        let t = ChatTemplate::new(s("template"), s("bos_token"), s("eos_token")).unwrap();
        let gen = c["add_generation_prompt"].as_bool().unwrap();
        let got = t.render(&messages(&c["messages"]), gen).unwrap();
        assert_eq!(got, s("rendered"), "{} gen={gen}", s("name"));
    }
}

#[test]
fn template_exceptions_surface_as_errors() {
    let c = cases().into_iter().find(|c| c["name"] == "llama3").unwrap();
    let t = ChatTemplate::new(c["template"].as_str().unwrap(), "", "").unwrap();
    let err = t.render(&[Message::new("assistant", "hi")], false).unwrap_err().to_string();
    assert!(err.contains("must alternate"), "{err}");
}

fn folder() -> (TextModel, std::collections::HashMap<String, Tensor>) {
    let dir = fixtures().join("qwen2_chat_tiny");
    let tm = TextModel::load(&dir, Weights::Frozen { dequantize: false }, &Device::Cpu).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    (tm, io)
}

#[test]
fn hf_folder_tokenizer_template_and_logits_match_transformers() {
    let (tm, io) = folder();
    assert!(tm.report.is_clean(), "{}", tm.report);
    let case = cases()
        .into_iter()
        .find(|c| {
            c["name"] == "chatml"
                && c["messages"].as_array().unwrap().len() == 3
                && c["add_generation_prompt"] == true
        })
        .unwrap();
    let rendered = tm.chat_template().unwrap().render(&messages(&case["messages"]), true).unwrap();
    assert_eq!(rendered, case["rendered"].as_str().unwrap());
    let ids = tm.tokenizer.encode(&rendered, false).unwrap();
    let want_ids: Vec<u32> = io["input_ids"].to_dtype(DType::U32).unwrap().to_vec1().unwrap();
    assert_eq!(ids, want_ids);
    let x = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits =
        tm.model.forward_embeds(&tm.model.embed_tokens(&x).unwrap(), None, None).unwrap().logits;
    braid_core::testing::assert_close(
        &logits.squeeze(0).unwrap(),
        &io["logits"],
        1e-4,
        "qwen2 chat logits",
    )
    .unwrap();
    let cfg = GenerateConfig { max_new_tokens: 8, ignore_eos: true, ..Default::default() };
    let (out, _) =
        generate(&tm.model, &tm.tokenizer, &[ids], &cfg, &Device::Cpu, &mut |_, _| Ok(())).unwrap();
    let want: Vec<u32> = io["greedy"].to_dtype(DType::U32).unwrap().to_vec1().unwrap();
    assert_eq!(out[0].tokens, want);
    assert_eq!(tm.tokenizer.eos_ids(), &[tm.tokenizer.token_to_id("<|im_end|>").unwrap()]);
}

#[test]
fn prompt_longer_than_context_is_an_error_unless_truncated() {
    let (tm, _) = folder();
    let ctx = tm.model.max_positions();
    let long: Vec<u32> = (0..ctx as u32).map(|i| 10 + i % 100).collect();
    let mut cfg = GenerateConfig { max_new_tokens: 4, ..Default::default() };
    let err = generate(
        &tm.model,
        &tm.tokenizer,
        std::slice::from_ref(&long),
        &cfg,
        &Device::Cpu,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("prompt of {ctx} tokens")) && msg.contains("context of 128"),
        "{msg}"
    );
    cfg.truncate = true;
    let (out, _) =
        generate(&tm.model, &tm.tokenizer, &[long], &cfg, &Device::Cpu, &mut |_, _| Ok(()))
            .unwrap();
    assert_eq!(out[0].prompt_tokens, ctx - 4);
}

#[test]
fn nan_generate_sampling_settings() {
    use braid_llm::generate::{generate_embeds, SamplingConfig};
    let (tm, _) = folder();
    let ids = vec![10u32, 11, 12];
    let x = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let embeds = tm.model.embed_tokens(&x).unwrap();
    let bad = [
        (SamplingConfig { temperature: f64::NAN, ..Default::default() }, "`temperature`"),
        (SamplingConfig { temperature: 1.0, top_p: f64::NAN, ..Default::default() }, "`top_p`"),
        (
            SamplingConfig { repetition_penalty: f32::NAN, ..Default::default() },
            "`repetition_penalty`",
        ),
    ];
    for (sampling, want) in bad {
        let cfg = GenerateConfig { max_new_tokens: 4, sampling, ..Default::default() };
        let e = generate(
            &tm.model,
            &tm.tokenizer,
            std::slice::from_ref(&ids),
            &cfg,
            &Device::Cpu,
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains(want) && e.to_string().contains("NaN"), "{e}");
        let e = generate_embeds(
            &tm.model,
            &tm.tokenizer,
            &embeds,
            None,
            std::slice::from_ref(&ids),
            &cfg,
            &mut |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
}
