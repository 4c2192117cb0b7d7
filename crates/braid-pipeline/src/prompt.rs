//! [`Prompter`]: conversations with media placeholders rendered in the model's own chat
//! template, as prompts for generation and as training [`Sample`]s masked as LLaVA masks
//! them (`llava/train/train.py` `preprocess_*`, `IGNORE_INDEX = -100`): only the
//! assistant's words and the token that ends its turn are learnt; the system prompt, user
//! turns, the placeholders and the template's framing are not. Label spans are found by
//! rendering the template turn by turn and tokenising each prefix (each must be a token
//! prefix of the whole conversation), never by searching the text, so they follow
//! whatever the template writes around a turn.
//!
//! Conversations write the generic placeholders (`<image>`, `<audio>`, `<imu>`, as LLaVA's
//! JSON does); each becomes the model's placeholder token, one id per item, which
//! [`crate::Pipeline`] replaces by the item's projected tokens. A placeholder must be a
//! special token the tokenizer keeps whole: one of its own (LLaVA's `<image>`; the easy-VQA
//! model on SmolLM2 names the StarCoder code-metadata token `<empty_output>`), or one
//! added to the tokenizer when the vocabulary lacks it.

use braid_core::{Error, Modality, Result};
use braid_llm::{ChatTemplate, Message, Tokenizer};

use crate::config::generic_placeholder;
use crate::Input;

/// Label of a token that is not learnt.
pub const IGNORE: i64 = -100;

/// One training sequence: ids with placeholders, a label per id ([`IGNORE`]: not
/// learnt), and the inputs that fill the placeholders in order.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Token ids, placeholders included.
    pub ids: Vec<u32>,
    /// Target per id (the id itself where it is learnt), [`IGNORE`] elsewhere.
    pub labels: Vec<i64>,
    /// Modality inputs, one per placeholder.
    pub inputs: Vec<Input>,
}

/// One modality's placeholder: the generic text conversations write, the model's token.
#[derive(Debug, Clone, PartialEq)]
pub struct Placeholder {
    /// Whose inputs it stands for.
    pub modality: Modality,
    /// The model's placeholder token text.
    pub token: String,
    /// Its id.
    pub id: u32,
}

/// Builds prompts and training samples in one model's chat template.
#[derive(Debug)]
pub struct Prompter {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    placeholders: Vec<Placeholder>,
    system: Option<String>,
}

impl Prompter {
    /// `placeholders`: (modality, the model's token text) per slot, each a special token of
    /// `tokenizer`, or added to it as one when the vocabulary lacks it (the pipeline
    /// replaces a placeholder before the model reads it, so it needs no embedding row).
    /// `system`: a system turn opening every conversation that has none (`None` leaves the
    /// template's default; `Some("")` keeps a short empty one).
    pub fn new(
        mut tokenizer: Tokenizer,
        template: ChatTemplate,
        placeholders: &[(Modality, String)],
        system: Option<String>,
    ) -> Result<Self> {
        let placeholders = placeholders
            .iter()
            .map(|(modality, token)| {
                let field = format!("encoders.{modality}.placeholder");
                if token.trim().is_empty() || token.chars().any(char::is_whitespace) {
                    return Err(Error::config(&field, format!("{token:?}: a placeholder is one token without spaces")));
                }
                // Only markup is added: an added word would swallow that word in any text.
                let markup = token.len() > 2 && ((token.starts_with('<') && token.ends_with('>')) || (token.starts_with('[') && token.ends_with(']')));
                if tokenizer.token_to_id(token).is_none() && !markup {
                    return Err(Error::config(&field, format!("`{token}` is not in the vocabulary; name a special token, or markup such as `<image>` to add")));
                }
                let id = tokenizer.add_special_token(token)?;
                let ids = tokenizer.encode(token, false)?;
                // Special tokens are matched whole before BPE and dropped by a skip-special decode.
                if ids != [id] || !tokenizer.decode(&ids, true)?.is_empty() {
                    return Err(Error::config(field, format!("`{token}` ({id}) is not a special token: it encodes as {ids:?}")));
                }
                Ok(Placeholder { modality: *modality, token: token.clone(), id })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { tokenizer, template, placeholders, system })
    }

    /// The tokenizer the ids come from.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The placeholder id of `modality`, if the model reads it.
    pub fn placeholder_id(&self, modality: Modality) -> Option<u32> {
        self.placeholders.iter().find(|p| p.modality == modality).map(|p| p.id)
    }

    /// The placeholders, one per slot.
    pub fn placeholders(&self) -> &[Placeholder] {
        &self.placeholders
    }

    /// Token ids of `messages` (generic placeholders in their text) with the assistant's
    /// turn opened, for generation.
    pub fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.encode(&self.prepare(messages), true)
    }

    /// A training sample of a whole conversation: every assistant turn and its
    /// end-of-turn token are learnt, nothing else. `inputs` fill the placeholders in the
    /// order they appear (checked against the ids when the pipeline splices them).
    pub fn sample(&self, messages: &[Message], inputs: Vec<Input>) -> Result<Sample> {
        if !messages.iter().any(|m| m.role == "assistant") {
            return Err(Error::Invalid(
                "a training conversation needs at least one assistant turn".into(),
            ));
        }
        let (ids, labels) = self.labelled(&self.prepare(messages))?;
        Ok(Sample { ids, labels, inputs })
    }

    /// The system turn (if configured and absent), generic placeholders swapped for the
    /// model's tokens.
    fn prepare(&self, messages: &[Message]) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
        if let Some(system) =
            self.system.as_ref().filter(|_| !messages.iter().any(|m| m.role == "system"))
        {
            out.push(Message::new("system", system.as_str()));
        }
        for m in messages {
            let mut content = m.content.clone();
            for p in &self.placeholders {
                let generic = generic_placeholder(p.modality);
                if generic != p.token {
                    content = content.replace(&generic, &p.token);
                }
            }
            out.push(Message::new(&m.role, content));
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
        for k in (0..messages.len()).filter(|&k| messages[k].role == "assistant") {
            let prompt = self.encode(&messages[..k], true)?;
            let through = self.encode(&messages[..=k], false)?;
            if !through.starts_with(&prompt) || !ids.starts_with(&through) {
                return Err(Error::Invalid(format!(
                    "the chat template does not render turn {k} as a token prefix of the whole conversation; cannot place its labels"
                )));
            }
            let start = prompt.len();
            let span = &through[start..];
            let end = span
                .iter()
                .position(|id| self.tokenizer.eos_ids().contains(id))
                .map_or(span.len(), |p| p + 1);
            for (i, &id) in span[..end].iter().enumerate() {
                labels[start + i] = i64::from(id);
            }
        }
        Ok((ids, labels))
    }
}

/// Question/answer turns about media as messages: the generic placeholders of `media`
/// (one line each) open the first question, as LLaVA's `"<image>\n" + question`;
/// `pending` is a last question still to be answered.
pub fn qa_messages(
    media: &[Modality],
    turns: &[(&str, &str)],
    pending: Option<&str>,
) -> Vec<Message> {
    let head: String = media.iter().map(|m| format!("{}\n", generic_placeholder(*m))).collect();
    let questions = turns.iter().map(|(q, _)| *q).chain(pending);
    let answers = turns.iter().map(|(_, a)| Some(*a)).chain(pending.map(|_| None));
    let mut out = Vec::new();
    for (i, (q, a)) in questions.zip(answers).enumerate() {
        out.push(Message::new("user", if i == 0 { format!("{head}{q}") } else { q.to_string() }));
        out.extend(a.map(|a| Message::new("assistant", a)));
    }
    out
}

/// `history` with one generic placeholder line per item of `media`, in order, opening the
/// first user turn (the media belong to it, as in LLaVA's conversations); a modality whose
/// placeholder the user already wrote there gets none.
pub fn place_media(history: &[Message], media: &[Modality]) -> Vec<Message> {
    let mut out = history.to_vec();
    if let Some(first) = out.iter_mut().find(|m| m.role == "user") {
        let head: String = media
            .iter()
            .map(|m| generic_placeholder(*m))
            .filter(|p| !first.content.contains(p.as_str()))
            .map(|p| p + "\n")
            .collect();
        first.content = head + &first.content;
    }
    out
}

#[cfg(test)]
mod tests;
