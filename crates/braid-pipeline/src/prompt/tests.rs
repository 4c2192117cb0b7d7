#![allow(clippy::unwrap_used)]
use std::path::PathBuf;

use braid_core::checkpoint::Gguf;
use candle_core::{Device, Tensor};

use super::*;

fn image() -> Input {
    Input {
        modality: Modality::Image,
        data: Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
        mask: None,
    }
}

/// The tiny ChatML Qwen2 folder; `<|endoftext|>` (its pad token) stands for the image.
fn tiny(system: Option<&str>) -> Prompter {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
    let tok = Tokenizer::from_folder(&dir).unwrap();
    let template = ChatTemplate::from_config(tok.config()).unwrap();
    Prompter::new(
        tok,
        template,
        &[(Modality::Image, "<|endoftext|>".into())],
        system.map(String::from),
    )
    .unwrap()
}

/// SmolLM2-135M-Instruct's GGUF tokenizer; `None` with a note when it is not fetched
/// (a failure when BRAID_REQUIRE_ASSETS=1).
fn smollm2(system: Option<&str>) -> Option<Prompter> {
    let path = match braid_hub::resolve_model("smollm2") {
        Ok(p) => p,
        Err(e) => {
            assert!(
                std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"),
                "BRAID_REQUIRE_ASSETS=1 but {e}"
            );
            eprintln!("note: skipping: {e}");
            return None;
        }
    };
    let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let template = ChatTemplate::from_config(tok.config()).unwrap();
    Some(
        Prompter::new(
            tok,
            template,
            &[(Modality::Image, "<empty_output>".into())],
            system.map(String::from),
        )
        .unwrap(),
    )
}

/// The labelled runs of a sample, decoded with special tokens kept.
fn learnt(s: &Prompter, sample: &Sample) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut open = false;
    for (&id, &label) in sample.ids.iter().zip(&sample.labels) {
        if label == IGNORE {
            open = false;
            continue;
        }
        assert_eq!(label, i64::from(id), "a label differs from its id");
        if !open {
            runs.push(Vec::new());
            open = true;
        }
        runs.last_mut().unwrap().push(id);
    }
    runs.iter().map(|r| s.tokenizer().decode(r, false).unwrap()).collect()
}

fn check_masking(s: &Prompter, eot: &str) {
    let id = s.placeholder_id(Modality::Image).unwrap();
    let caption = s
        .sample(
            &qa_messages(&[Modality::Image], &[("Describe the image.", "a blue rectangle")], None),
            vec![image()],
        )
        .unwrap();
    assert_eq!(learnt(s, &caption), [format!("a blue rectangle{eot}")]);
    let turns = [
        ("what color is the shape?", "blue"),
        ("is there a circle?", "no"),
        ("what shape is present?", "rectangle"),
    ];
    let sample = s.sample(&qa_messages(&[Modality::Image], &turns, None), vec![image()]).unwrap();
    let want: Vec<String> = turns.iter().map(|(_, a)| format!("{a}{eot}")).collect();
    assert_eq!(learnt(s, &sample), want);
    assert_eq!((sample.ids.len(), sample.inputs.len()), (sample.labels.len(), 1));
    let at = sample.ids.iter().position(|&i| i == id).unwrap();
    assert_eq!(sample.labels[at], IGNORE);
    assert_eq!(sample.ids.iter().filter(|&&i| i == id).count(), 1);
    // The generation prompt of a turn is exactly the conversation up to its answer.
    let prompt =
        s.prompt_ids(&qa_messages(&[Modality::Image], &turns[..2], Some(turns[2].0))).unwrap();
    assert!(sample.ids.starts_with(&prompt));
    assert_eq!(sample.labels[prompt.len() - 1], IGNORE);
    assert_ne!(sample.labels[prompt.len()], IGNORE);
    // Two images: two placeholders.
    let two = s
        .prompt_ids(&qa_messages(&[Modality::Image, Modality::Image], &[], Some("same?")))
        .unwrap();
    assert_eq!(two.iter().filter(|&&i| i == id).count(), 2);
}

#[test]
fn tiny_template_learns_only_answers_and_end_of_turn() {
    check_masking(&tiny(None), "<|im_end|>");
    check_masking(&tiny(Some("Answer in one word.")), "<|im_end|>");
}

#[test]
fn placeholder_must_be_one_special_token() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
    let tok = Tokenizer::from_folder(&dir).unwrap();
    let template = || ChatTemplate::from_config(tok.config()).unwrap();
    let err = Prompter::new(tok.clone(), template(), &[(Modality::Image, "hello".into())], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoders.image.placeholder"), "{err}");
    let err =
        Prompter::new(tok.clone(), template(), &[(Modality::Audio, "two words".into())], None)
            .unwrap_err()
            .to_string();
    assert!(err.contains("encoders.audio.placeholder"), "{err}");
    // A placeholder the vocabulary lacks is added as a special token past the vocabulary.
    let added =
        Prompter::new(tok.clone(), template(), &[(Modality::Image, "<image>".into())], None)
            .unwrap();
    let id = added.placeholder_id(Modality::Image).unwrap();
    assert_eq!(id as usize, tok.vocab_size());
    let ids = added.prompt_ids(&qa_messages(&[Modality::Image], &[], Some("what is it?"))).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == id).count(), 1);
    assert!(tiny(None).sample(&[Message::new("user", "<image>\nhi")], vec![image()]).is_err());
}

#[test]
fn smollm2_template_learns_only_answers_and_end_of_turn() {
    let Some(s) = smollm2(None) else { return };
    assert_eq!(s.placeholder_id(Modality::Image), Some(16));
    assert_eq!(s.tokenizer().eos_ids(), [2]);
    check_masking(&s, "<|im_end|>");
    check_masking(&smollm2(Some("")).unwrap(), "<|im_end|>");
    let caption = s
        .sample(
            &qa_messages(&[Modality::Image], &[("Describe the image.", "a red circle")], None),
            vec![image()],
        )
        .unwrap();
    let text = s.tokenizer().decode(&caption.ids, false).unwrap();
    assert!(
        text.contains("<|im_start|>user\n<empty_output>\nDescribe the image.<|im_end|>"),
        "{text}"
    );
}

#[test]
fn media_open_the_first_user_turn_in_the_order_given() {
    use braid_core::Modality;
    let h = vec![
        Message::new("system", "be brief"),
        Message::new("user", "what is it?"),
        Message::new("user", "and?"),
    ];
    let got = place_media(&h, &[Modality::Image, Modality::Image]);
    assert_eq!(got[1].content, "<image>\n<image>\nwhat is it?");
    assert_eq!(got[2].content, "and?");
    let mixed = place_media(&h, &[Modality::Imu, Modality::Audio, Modality::Imu]);
    assert_eq!(mixed[1].content, "<imu>\n<audio>\n<imu>\nwhat is it?");
    let placed = vec![Message::new("user", "compare <image> with <image>")];
    let got = place_media(&placed, &[Modality::Image, Modality::Image, Modality::Audio]);
    assert_eq!(got[0].content, "<audio>\ncompare <image> with <image>");
}
