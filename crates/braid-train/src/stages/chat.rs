//! Training [`Sample`]s from image conversations in the model's own chat template, masked
//! as LLaVA masks them (`llava/train/train.py` `preprocess_*`, `IGNORE_INDEX = -100`):
//! only the assistant's words and the token that ends its turn are learnt; the system
//! prompt, user turns, the image placeholder and the template's framing are not. Label
//! spans are found by rendering the template turn by turn and tokenising each prefix
//! (each must be a token prefix of the whole conversation), never by searching the text,
//! so they follow whatever the template writes around a turn.
//!
//! The image enters as one placeholder id before the first question (LLaVA's
//! `"<image>\n" + question`); [`braid_pipeline::Pipeline`] replaces it by the projected
//! image tokens. The id must be a special token the tokenizer keeps whole and the
//! conversation never uses: SmolLM2 has no `<image>` token and no reserved ones, so Braid
//! takes [`SMOLLM2_IMAGE_TOKEN`], one of its StarCoder code-metadata tokens.

use braid_core::{Error, Result};
use braid_llm::{ChatTemplate, Message, Tokenizer};
use braid_pipeline::Input;

use super::Sample;

/// SmolLM2's image placeholder: `<empty_output>` (id 16), a special token of its
/// StarCoder-derived vocabulary (Jupyter empty-cell marker) that chat never produces.
pub const SMOLLM2_IMAGE_TOKEN: &str = "<empty_output>";

/// The user's request of the `align` stage.
pub const CAPTION_PROMPT: &str = "Describe the image.";

/// Label of a token that is not learnt.
const IGNORE: i64 = -100;

/// Builds token ids and labels of image conversations in one model's chat template.
#[derive(Debug)]
pub struct ChatSampler {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    image_token_id: u32,
    image_token: String,
    system: Option<String>,
}

impl ChatSampler {
    /// `image_token_id` is the placeholder id (see [`SMOLLM2_IMAGE_TOKEN`]); it must be a
    /// special token. `system`: a system turn opening every conversation; `None` leaves
    /// the template's default (SmolLM2's adds its own system prompt; `Some("")` keeps a
    /// short empty one).
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate, image_token_id: u32, system: Option<String>) -> Result<Self> {
        let bad = |msg: String| Error::config("image_token_id", msg);
        let image_token = tokenizer.id_to_token(image_token_id).ok_or_else(|| bad(format!("{image_token_id} is not in the vocabulary")))?;
        let ids = tokenizer.encode(&image_token, false)?;
        // Special tokens are matched whole before BPE and dropped by a skip-special decode.
        if ids != [image_token_id] || !tokenizer.decode(&ids, true)?.is_empty() {
            return Err(bad(format!("`{image_token}` ({image_token_id}) is not a special token: it encodes as {ids:?}")));
        }
        Ok(Self { tokenizer, template, image_token_id, image_token, system })
    }

    /// The placeholder id.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// The tokenizer the ids come from.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// `align` stage: the user sends the image and [`CAPTION_PROMPT`], the assistant answers
    /// `caption`; only the caption and its end-of-turn token are learnt.
    pub fn caption_sample(&self, caption: &str, image: Input) -> Result<Sample> {
        self.conversation_sample(&[(CAPTION_PROMPT, caption)], image)
    }

    /// `instruct` stage: `turns` of (question, answer) about one image, the image before the
    /// first question; every answer and its end-of-turn token are learnt, nothing else.
    pub fn conversation_sample(&self, turns: &[(&str, &str)], image: Input) -> Result<Sample> {
        if turns.is_empty() {
            return Err(Error::Invalid("a conversation sample needs at least one (question, answer) turn".into()));
        }
        let messages = self.messages(turns, None);
        let (ids, labels) = self.labelled(&messages)?;
        self.check_one_placeholder(&ids)?;
        Ok(Sample { ids, labels, inputs: vec![image] })
    }

    /// The prompt for generating the answer to `question` after `turns_so_far` (the image
    /// placeholder before the first question), ending with the opened assistant turn.
    pub fn prompt_ids(&self, turns_so_far: &[(&str, &str)], question: &str) -> Result<Vec<u32>> {
        let ids = self.encode(&self.messages(turns_so_far, Some(question)), true)?;
        self.check_one_placeholder(&ids)?;
        Ok(ids)
    }

    /// System turn (if any), then user/assistant turns, then the pending question.
    fn messages(&self, turns: &[(&str, &str)], pending: Option<&str>) -> Vec<Message> {
        let mut out: Vec<Message> = self.system.iter().map(|s| Message::new("system", s.as_str())).collect();
        let questions = turns.iter().map(|(q, _)| *q).chain(pending);
        let answers = turns.iter().map(|(_, a)| Some(*a)).chain(pending.map(|_| None));
        for (i, (q, a)) in questions.zip(answers).enumerate() {
            let content = if i == 0 { format!("{}\n{q}", self.image_token) } else { q.to_string() };
            out.push(Message::new("user", content));
            out.extend(a.map(|a| Message::new("assistant", a)));
        }
        out
    }

    fn encode(&self, messages: &[Message], add_generation_prompt: bool) -> Result<Vec<u32>> {
        // The template writes the special tokens itself.
        self.tokenizer.encode(&self.template.render(messages, add_generation_prompt)?, false)
    }

    /// Ids of the whole conversation and labels on each assistant turn: the tokens between
    /// the rendered prompt that opens the turn and the rendered conversation through it,
    /// cut after the first end-of-turn id (the tokenizer's EOS ids) so the template's
    /// trailing newline stays unlearnt.
    fn labelled(&self, messages: &[Message]) -> Result<(Vec<u32>, Vec<i64>)> {
        let ids = self.encode(messages, false)?;
        let mut labels = vec![IGNORE; ids.len()];
        let not_prefix = |k: usize| {
            Error::Invalid(format!(
                "the chat template does not render turn {k} as a token prefix of the whole conversation; cannot place its labels"
            ))
        };
        for k in (0..messages.len()).filter(|&k| messages[k].role == "assistant") {
            let prompt = self.encode(&messages[..k], true)?;
            let through = self.encode(&messages[..=k], false)?;
            if !through.starts_with(&prompt) || !ids.starts_with(&through) {
                return Err(not_prefix(k));
            }
            let start = prompt.len();
            let span = &through[start..];
            let end = span.iter().position(|id| self.tokenizer.eos_ids().contains(id)).map_or(span.len(), |p| p + 1);
            for (i, &id) in span[..end].iter().enumerate() {
                labels[start + i] = i64::from(id);
            }
        }
        Ok((ids, labels))
    }

    fn check_one_placeholder(&self, ids: &[u32]) -> Result<()> {
        let n = ids.iter().filter(|&&id| id == self.image_token_id).count();
        if n != 1 {
            return Err(Error::Invalid(format!(
                "the conversation has {n} image placeholders (`{}`); expected 1 (does a turn contain the placeholder text?)",
                self.image_token
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use braid_core::checkpoint::Gguf;
    use braid_core::Modality;
    use candle_core::{Device, Tensor};

    use super::*;

    fn image() -> Input {
        Input { modality: Modality::Image, data: Tensor::zeros((3, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(), mask: None }
    }

    /// The tiny ChatML Qwen2 folder; `<|endoftext|>` (its pad token) stands for the image.
    fn tiny(system: Option<&str>) -> ChatSampler {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
        let tok = Tokenizer::from_folder(&dir).unwrap();
        let template = ChatTemplate::from_config(tok.config()).unwrap();
        let id = tok.token_to_id("<|endoftext|>").unwrap();
        ChatSampler::new(tok, template, id, system.map(String::from)).unwrap()
    }

    /// SmolLM2-135M-Instruct's GGUF tokenizer; `None` with a note when it is not fetched
    /// (a failure when BRAID_REQUIRE_ASSETS=1).
    fn smollm2(system: Option<&str>) -> Option<ChatSampler> {
        let home = std::env::var_os("BRAID_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/braid"));
        let dir = home.join("models/smollm2");
        let gguf = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|x| x == "gguf"))
        });
        let Some(path) = gguf else {
            assert!(std::env::var("BRAID_REQUIRE_ASSETS").as_deref() != Ok("1"), "BRAID_REQUIRE_ASSETS=1 but {} has no GGUF", dir.display());
            eprintln!("note: skipping: no GGUF in {} (run `braid fetch smollm2`)", dir.display());
            return None;
        };
        let tok = Tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
        let template = ChatTemplate::from_config(tok.config()).unwrap();
        let id = tok.token_to_id(SMOLLM2_IMAGE_TOKEN).unwrap();
        Some(ChatSampler::new(tok, template, id, system.map(String::from)).unwrap())
    }

    /// The labelled runs of a sample, decoded with special tokens kept.
    fn learnt(s: &ChatSampler, sample: &Sample) -> Vec<String> {
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

    fn check_masking(s: &ChatSampler, eot: &str) {
        let sample = s.caption_sample("a blue rectangle", image()).unwrap();
        assert_eq!(learnt(s, &sample), [format!("a blue rectangle{eot}")]);
        let turns = [("what color is the shape?", "blue"), ("is there a circle?", "no"), ("what shape is present?", "rectangle")];
        let sample = s.conversation_sample(&turns, image()).unwrap();
        let want: Vec<String> = turns.iter().map(|(_, a)| format!("{a}{eot}")).collect();
        assert_eq!(learnt(s, &sample), want);
        assert_eq!((sample.ids.len(), sample.labels.len(), sample.inputs.len()), (sample.labels.len(), sample.ids.len(), 1));
        let at = sample.ids.iter().position(|&id| id == s.image_token_id()).unwrap();
        assert_eq!(sample.labels[at], IGNORE);
        // The generation prompt of a turn is exactly the conversation up to its answer.
        let prompt = s.prompt_ids(&turns[..2], turns[2].0).unwrap();
        assert!(sample.ids.starts_with(&prompt));
        assert_eq!(sample.labels[prompt.len() - 1], IGNORE);
        assert_ne!(sample.labels[prompt.len()], IGNORE);
        assert_eq!(s.prompt_ids(&[], turns[0].0).unwrap().iter().filter(|&&i| i == s.image_token_id()).count(), 1);
    }

    #[test]
    fn tiny_template_learns_only_answers_and_end_of_turn() {
        check_masking(&tiny(None), "<|im_end|>");
        check_masking(&tiny(Some("Answer in one word.")), "<|im_end|>");
    }

    #[test]
    fn placeholder_must_be_one_special_token_used_once() {
        let s = tiny(None);
        let (tok, template) = (s.tokenizer().clone(), ChatTemplate::from_config(s.tokenizer().config()).unwrap());
        let plain = tok.encode("hello", false).unwrap()[0];
        let err = ChatSampler::new(tok, template, plain, None).unwrap_err().to_string();
        assert!(err.contains("image_token_id"), "{err}");
        let err = s.conversation_sample(&[("what is <|endoftext|>?", "no")], image()).unwrap_err().to_string();
        assert!(err.contains("2 image placeholders"), "{err}");
        assert!(s.conversation_sample(&[], image()).is_err());
    }

    #[test]
    fn smollm2_template_learns_only_answers_and_end_of_turn() {
        let Some(s) = smollm2(None) else { return };
        assert_eq!(s.image_token_id(), 16);
        assert_eq!(s.tokenizer().eos_ids(), [2]);
        check_masking(&s, "<|im_end|>");
        check_masking(&smollm2(Some("")).unwrap(), "<|im_end|>");
        let caption = s.caption_sample("a red circle", image()).unwrap();
        let text = s.tokenizer().decode(&caption.ids, false).unwrap();
        assert!(text.contains("<|im_start|>user\n<empty_output>\nDescribe the image.<|im_end|>"), "{text}");
    }
}
