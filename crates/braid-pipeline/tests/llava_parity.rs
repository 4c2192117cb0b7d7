//! Parity of [`Llava`] with transformers 5.24 `LlavaForConditionalGeneration` on a tiny
//! random checkpoint (fixtures/pipeline/llava_tiny, scripts/fixtures/llava_tiny.py).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use braid_core::checkpoint::Checkpoint;
use braid_pipeline::Llava;
use candle_core::{DType, Device, Tensor};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pipeline/llava_tiny")
}

fn case(name: &str) -> (Tensor, Tensor, Tensor) {
    let io = Checkpoint::open(dir().join("io.safetensors")).unwrap();
    let get = |k: &str| io.tensor(&format!("{name}.{k}"), DType::F32, &Device::Cpu).unwrap();
    let ids = get("input_ids").to_dtype(DType::U32).unwrap();
    (ids, get("pixel_values"), get("logits"))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn logits_match_transformers_with_one_and_two_images() {
    let (model, report) = Llava::load(&dir(), DType::F32, &Device::Cpu).unwrap();
    assert!(report.is_clean(), "{report:?}");
    for name in ["one", "two"] {
        let (ids, px, want) = case(name);
        let got = model.forward(&ids, Some(&px)).unwrap();
        let diff = max_diff(&got, &want);
        println!("{name}: max abs diff {diff:e}");
        assert!(diff < 1e-4, "{name}: max abs diff {diff}");
    }
}

#[test]
fn placeholder_count_must_match_images() {
    let (model, _) = Llava::load(&dir(), DType::F32, &Device::Cpu).unwrap();
    let (ids, px, _) = case("two");
    let err = model.forward(&ids, Some(&px.narrow(0, 0, 1).unwrap())).unwrap_err().to_string();
    assert!(err.contains("2 image placeholders") && err.contains("1 images"), "{err}");
    let (ids, _, _) = case("one");
    let err = model.forward(&ids, None).unwrap_err().to_string();
    assert!(err.contains("1 image placeholders") && err.contains("0 images"), "{err}");
}

#[test]
fn multimodal_model_opens_the_folder_and_expands_one_image_id_per_image() {
    use braid_llm::LanguageModel;
    use braid_pipeline::MultimodalModel;
    let model = MultimodalModel::open(&dir(), &Device::Cpu).unwrap();
    let token = model.image_token_id().unwrap();
    let (ids, px, want) = case("two");
    let mut short: Vec<u32> = ids.squeeze(0).unwrap().to_vec1().unwrap();
    short.dedup_by(|a, b| *a == token && *b == token);
    let images: Vec<braid_pipeline::Input> = (0..2)
        .map(|i| braid_pipeline::Input {
            modality: braid_core::Modality::Image,
            data: px.narrow(0, i, 1).unwrap(),
            mask: None,
        })
        .collect();
    let embeds = model.embed_prompt(&short, &images).unwrap();
    let got = model.llm().unwrap().forward_embeds(&embeds, None, None).unwrap().logits;
    assert!(max_diff(&got, &want) < 1e-4);
}
