//! `braid chat --image/--audio/--imu`: a conversation about media with a multimodal model
//! folder (a Braid model directory with `pipeline.toml`, whose slots say how each
//! modality is read; or a Hugging Face LLaVA checkpoint, images only). The media belong to
//! the first user turn, as in LLaVA's conversations: one placeholder per item (`<image>`,
//! `<audio>`, `<imu>`, in the order given) opening its text, unless the text already
//! places that modality's.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use braid_core::Modality;
use braid_data::image::{load_rgb, ImageProcessor};
use braid_llm::generate::{generate_embeds, GenerateConfig, Generation, Timing};
use braid_llm::{ChatTemplate, Message, Tokenizer};
use braid_pipeline::{place_media, Input, MultimodalModel};
use candle_core::Device;

/// A multimodal model, the conversation's media preprocessed for it, and, for a LLaVA
/// folder, its tokenizer and chat template (a Braid model directory's own pipeline builds
/// its prompts).
pub struct MediaChat {
    model: MultimodalModel,
    /// One input (batch 1) per item, in the order given.
    inputs: Vec<Input>,
    llava: Option<(Tokenizer, ChatTemplate)>,
}

impl MediaChat {
    /// Opens the model folder `dir` and reads each `(modality, file)` of `media` as the
    /// model says (a Braid directory's `pipeline.toml` slot, a LLaVA folder's
    /// `preprocessor_config.json`); errors name the file, or the modality the model lacks.
    pub fn open(dir: &Path, media: &[(Modality, PathBuf)]) -> anyhow::Result<Self> {
        let flags = || {
            let mut f: Vec<String> = media.iter().map(|(m, _)| format!("--{m}")).collect();
            f.dedup();
            f.join(", ")
        };
        if !dir.is_dir() {
            anyhow::bail!(
                "{}: {} needs a multimodal model folder (a Braid model directory, or a LLaVA checkpoint for images)",
                dir.display(),
                flags()
            );
        }
        let device = Device::Cpu;
        let model = MultimodalModel::open(dir, &device)
            .with_context(|| format!("loading {}", dir.display()))?;
        if let MultimodalModel::Pipeline(p) = &model {
            let inputs = media
                .iter()
                .map(|(m, path)| p.load_input(*m, path))
                .collect::<braid_core::Result<Vec<_>>>()?;
            return Ok(Self { model, inputs, llava: None });
        }
        if let Some((m, path)) = media.iter().find(|(m, _)| *m != Modality::Image) {
            anyhow::bail!(
                "{}: a LLaVA checkpoint reads images only, not --{m} {}",
                dir.display(),
                path.display()
            );
        }
        let tokenizer = Tokenizer::from_folder(dir)?;
        let template = ChatTemplate::from_config(tokenizer.config())?;
        let processor = ImageProcessor::from_json_file(&dir.join("preprocessor_config.json"))?;
        let inputs = media
            .iter()
            .map(|(m, p)| {
                let data = processor.preprocess(&load_rgb(p)?, &device)?.unsqueeze(0)?;
                Ok(Input { modality: *m, data, mask: None })
            })
            .collect::<braid_core::Result<Vec<_>>>()?;
        Ok(Self { model, inputs, llava: Some((tokenizer, template)) })
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

    /// The prompt ids for `history` (one placeholder per item opening the first user turn,
    /// unless placed by the user).
    fn prompt_ids(&self, history: &[Message]) -> anyhow::Result<Vec<u32>> {
        let kinds: Vec<Modality> = self.inputs.iter().map(|x| x.modality).collect();
        let messages = place_media(history, &kinds);
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
        let embeds = self.model.embed_prompt(&ids, &self.inputs)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pipeline/llava_chat_tiny")
    }

    fn image(dir: &Path) -> Vec<(Modality, PathBuf)> {
        vec![(Modality::Image, dir.join("image.png"))]
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
        let chat = MediaChat::open(&dir, &image(&dir)).unwrap();
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
        let chat = MediaChat::open(&dir, &image(&dir)).unwrap();
        let history = [Message::new("user", "<image> and <image>?")];
        let err = chat.generate(&history, &greedy(2), &mut |_, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains('2') && err.contains('1'), "{err}");
    }

    #[test]
    fn a_text_only_model_is_refused() {
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
        let err = MediaChat::open(&dir, &image(&fixture())).err().unwrap();
        assert!(format!("{err:#}").contains("LLaVA"), "{err:#}");
        let gguf = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/llm/qwen2_chat_tiny/config.json");
        let err = MediaChat::open(&gguf, &image(&fixture())).err().unwrap();
        let err = format!("{err:#}");
        assert!(err.contains("--image needs a multimodal model folder"), "{err}");
    }

    #[test]
    fn a_llava_checkpoint_refuses_other_modalities_naming_the_file() {
        let dir = fixture();
        let media = [(Modality::Image, dir.join("image.png")), (Modality::Imu, "rec.csv".into())];
        let err = format!("{:#}", MediaChat::open(&dir, &media).err().unwrap());
        assert!(err.contains("images only") && err.contains("--imu rec.csv"), "{err}");
    }
}
