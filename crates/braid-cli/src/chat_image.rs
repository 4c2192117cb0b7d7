//! `braid chat --image`: a conversation about images with a multimodal model folder (a
//! Hugging Face LLaVA checkpoint or a Braid model directory with `pipeline.toml`). The
//! images belong to the first user turn, as in LLaVA's conversations: one `<image>` per
//! image before its text unless the text already places them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use braid_core::Modality;
use braid_data::image::{load_rgb, ImageProcessor};
use braid_llm::generate::{generate_embeds, GenerateConfig, Generation, Timing};
use braid_llm::{ChatTemplate, Message, Tokenizer};
use braid_pipeline::{generic_placeholder, MultimodalModel};
use candle_core::{Device, Tensor};

/// A multimodal model, the conversation's images preprocessed for it, and, for a LLaVA
/// folder, its tokenizer and chat template (a Braid model directory's own pipeline builds
/// its prompts).
pub struct VisionChat {
    model: MultimodalModel,
    /// One [3, H, W] tensor per image.
    images: Vec<Tensor>,
    llava: Option<(Tokenizer, ChatTemplate)>,
}

impl VisionChat {
    /// Opens the model folder `dir` and preprocesses `images` as the model says (a Braid
    /// directory's `pipeline.toml`, a LLaVA folder's `preprocessor_config.json`).
    pub fn open(dir: &Path, images: &[PathBuf]) -> anyhow::Result<Self> {
        if !dir.is_dir() {
            anyhow::bail!(
                "{}: --image needs a model folder that reads images (a LLaVA checkpoint or a Braid model directory)",
                dir.display()
            );
        }
        let device = Device::Cpu;
        let model = MultimodalModel::open(dir, &device)
            .with_context(|| format!("loading {}", dir.display()))?;
        if let MultimodalModel::Pipeline(p) = &model {
            let images = images
                .iter()
                .map(|path| Ok(p.load_input(Modality::Image, path)?.data.squeeze(0)?))
                .collect::<braid_core::Result<Vec<_>>>()?;
            return Ok(Self { model, images, llava: None });
        }
        let tokenizer = Tokenizer::from_folder(dir)?;
        let template = ChatTemplate::from_config(tokenizer.config())?;
        let processor = ImageProcessor::from_json_file(&dir.join("preprocessor_config.json"))?;
        let images = images
            .iter()
            .map(|p| processor.preprocess(&load_rgb(p)?, &device))
            .collect::<braid_core::Result<Vec<_>>>()?;
        Ok(Self { model, images, llava: Some((tokenizer, template)) })
    }

    fn tokenizer(&self) -> anyhow::Result<&Tokenizer> {
        Ok(match (&self.model, &self.llava) {
            (_, Some((t, _))) => t,
            (MultimodalModel::Pipeline(p), None) => p.prompter()?.tokenizer(),
            (MultimodalModel::Llava(_), None) => {
                anyhow::bail!("a LLaVA model without its tokenizer")
            }
        })
    }

    /// The prompt ids for `history` (`<image>` once per image, opening the first user
    /// turn unless placed by the user).
    fn prompt_ids(&self, history: &[Message]) -> anyhow::Result<Vec<u32>> {
        let messages =
            with_placeholders(history, self.images.len(), &generic_placeholder(Modality::Image));
        Ok(match (&self.model, &self.llava) {
            (_, Some((tokenizer, template))) => {
                tokenizer.encode(&template.render(&messages, true)?, false)?
            }
            (MultimodalModel::Pipeline(p), None) => p.prompter()?.prompt_ids(&messages)?,
            (MultimodalModel::Llava(_), None) => {
                anyhow::bail!("a LLaVA model without its chat template")
            }
        })
    }

    /// The prompt ids for `history` and the generated answer; `on_text` receives the
    /// answer as it becomes final.
    pub fn generate(
        &self,
        history: &[Message],
        cfg: &GenerateConfig,
        on_text: &mut dyn FnMut(usize, &str) -> braid_core::Result<()>,
    ) -> anyhow::Result<(Vec<u32>, Generation, Timing)> {
        let ids = self.prompt_ids(history)?;
        let embeds = self.model.embed_prompt(&ids, &self.images)?;
        let (gens, timing) = generate_embeds(
            self.model.llm()?,
            self.tokenizer()?,
            &embeds,
            None,
            std::slice::from_ref(&ids),
            cfg,
            on_text,
        )?;
        let generation = gens.into_iter().next().context("the model generated no answer row")?;
        Ok((ids, generation, timing))
    }

    /// One assistant turn for `history`, streamed to stdout; returns the text.
    pub fn reply(
        &self,
        history: &[Message],
        cfg: &GenerateConfig,
    ) -> anyhow::Result<(String, Timing)> {
        let mut out = std::io::stdout().lock();
        let mut stream = |_: usize, piece: &str| -> braid_core::Result<()> {
            write!(out, "{piece}")
                .and_then(|_| out.flush())
                .map_err(|e| braid_core::Error::Invalid(e.to_string()))
        };
        let (_, generation, timing) = self.generate(history, cfg, &mut stream)?;
        println!();
        Ok((generation.text.trim().to_string(), timing))
    }
}

/// `history` with `n` image placeholders opening the first user turn, unless the user
/// already wrote them there.
fn with_placeholders(history: &[Message], n: usize, placeholder: &str) -> Vec<Message> {
    let mut out = history.to_vec();
    if let Some(first) = out.iter_mut().find(|m| m.role == "user") {
        if n > 0 && !first.content.contains(placeholder) {
            first.content = format!("{}{}", format!("{placeholder}\n").repeat(n), first.content);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pipeline/llava_chat_tiny")
    }

    fn greedy(max_new_tokens: usize) -> GenerateConfig {
        GenerateConfig { max_new_tokens, ..Default::default() }
    }

    /// The whole `braid chat --image` path (template, tokenizer, CLIP preprocessing,
    /// LLaVA splice, cached greedy decoding) against transformers
    /// (scripts/fixtures/llava_chat_tiny.py).
    #[test]
    fn answers_like_transformers() {
        let dir = fixture();
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let chat = VisionChat::open(&dir, &[dir.join("image.png")]).unwrap();
        let history = [Message::new("user", want["question"].as_str().unwrap())];
        let n = want["max_new_tokens"].as_u64().unwrap() as usize;
        let (ids, generation, _) = chat.generate(&history, &greedy(n), &mut |_, _| Ok(())).unwrap();
        let ids_of = |k: &str| -> Vec<u32> {
            want[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
        };
        assert_eq!(ids, ids_of("prompt_ids"));
        assert_eq!(generation.tokens, ids_of("answer_ids"));
    }

    #[test]
    fn placeholder_count_must_match_the_images() {
        let dir = fixture();
        let chat = VisionChat::open(&dir, &[dir.join("image.png")]).unwrap();
        let history = [Message::new("user", "<image> and <image>?")];
        let err = chat.generate(&history, &greedy(2), &mut |_, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains('2') && err.contains('1'), "{err}");
    }

    #[test]
    fn a_text_only_model_is_refused() {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
        let err = VisionChat::open(&dir, &[fixture().join("image.png")]).err().unwrap();
        assert!(format!("{err:#}").contains("LLaVA"), "{err:#}");
        let gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/llm/qwen2_chat_tiny/config.json");
        let err = VisionChat::open(&gguf, &[fixture().join("image.png")]).err().unwrap();
        assert!(format!("{err:#}").contains("needs a model folder that reads images"), "{err:#}");
    }

    #[test]
    fn images_open_the_first_user_turn() {
        const IMAGE: &str = "<image>";
        let h = vec![
            Message::new("system", "be brief"),
            Message::new("user", "what is it?"),
            Message::new("user", "and?"),
        ];
        let got = with_placeholders(&h, 2, IMAGE);
        assert_eq!(got[1].content, "<image>\n<image>\nwhat is it?");
        assert_eq!(got[2].content, "and?");
        let placed = vec![Message::new("user", "compare <image> with <image>")];
        assert_eq!(with_placeholders(&placed, 2, IMAGE)[0].content, "compare <image> with <image>");
    }
}
