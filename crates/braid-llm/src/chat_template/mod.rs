//! Chat templates: the model's own Jinja template rendered with minijinja in the
//! environment `transformers` gives it (`messages`, `add_generation_prompt`, special
//! tokens, `raise_exception`, `strftime_now`, Python string methods, `tojson`).
//! Reference: `transformers.utils.chat_template_utils.render_jinja_template`
//! (`trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off).
//!
//! Templates come with model files, so a render has a budget of executed instructions
//! (minijinja's fuel, [`braid_core::limits::TEMPLATE_FUEL`]): a template that loops
//! without end fails instead of hanging.

mod strftime;

use braid_core::limits::TEMPLATE_FUEL;
use braid_core::{Error, Result};
use minijinja::{context, Environment, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::tokenizer::TokenizerConfig;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A turn by `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self { role: role.to_string(), content: content.into() }
    }
}

/// A compiled chat template with the special tokens it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// Where the template came from, for errors.
    origin: String,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` fill the variables of the same names.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        Self::with_origin(source, bos_token, eos_token, "chat template")
    }

    /// Like [`ChatTemplate::new`], errors naming `origin` (the file the template came from).
    pub fn with_origin(
        source: &str,
        bos_token: &str,
        eos_token: &str,
        origin: &str,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime::strftime_now);
        env.set_fuel(Some(TEMPLATE_FUEL.get()));
        env.add_template_owned("chat", source.to_string()).map_err(|e| {
            Error::Invalid(format!("{origin}: the chat template does not compile: {e}"))
        })?;
        Ok(Self {
            env,
            origin: origin.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template of a tokenizer, or an error saying the model has none.
    pub fn from_config(cfg: &TokenizerConfig) -> Result<Self> {
        let source = cfg.chat_template.as_deref().ok_or_else(|| {
            Error::config("chat_template", "this model's tokenizer has no chat template")
        })?;
        let origin = cfg.chat_template_origin.as_deref().unwrap_or("chat template");
        Self::with_origin(
            source,
            cfg.bos_token.as_deref().unwrap_or(""),
            cfg.eos_token.as_deref().unwrap_or(""),
            origin,
        )
    }

    /// The prompt text for `messages`; `add_generation_prompt` opens the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| Error::Invalid(e.to_string()))?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        tmpl.render(ctx).map_err(|e| match e.kind() {
            ErrorKind::OutOfFuel => Error::Invalid(format!(
                "{}: rendering the chat template stopped at the limit of {} {} (a loop without end?); set {} to raise it",
                self.origin,
                TEMPLATE_FUEL.get(),
                TEMPLATE_FUEL.unit,
                TEMPLATE_FUEL.env
            )),
            _ => Error::Invalid(format!("{}: chat template: {}", self.origin, one_line(&format!("{e:#}")))),
        })
    }
}

/// minijinja's alternate error text spans lines (the template excerpt): joined into one.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let out = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let err = t.render(&[], false).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn hang_chat_template_nested_loops() {
        let nested = "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";
        let cfg = TokenizerConfig {
            chat_template: Some(nested.into()),
            chat_template_origin: Some("/m/model.gguf (tokenizer.chat_template)".into()),
            ..Default::default()
        };
        let t = ChatTemplate::from_config(&cfg).unwrap();
        let start = std::time::Instant::now();
        let err = t.render(&[Message::new("user", "Hi")], true).unwrap_err().to_string();
        assert!(start.elapsed().as_secs() < 20, "took {:?}", start.elapsed());
        assert!(
            err.contains("/m/model.gguf (tokenizer.chat_template)")
                && err.contains("BRAID_MAX_TEMPLATE_FUEL"),
            "{err}"
        );
        assert!(
            err.contains(&format!("limit of {}", TEMPLATE_FUEL.get())) && !err.contains('\n'),
            "{err}"
        );
        // An ordinary conversation stays far below the limit.
        let chat = ChatTemplate::new(CHATML, "", "").unwrap();
        let long: Vec<Message> =
            (0..2000).map(|i| Message::new("user", format!("turn {i}"))).collect();
        assert!(chat.render(&long, true).is_ok());
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new(
            "{{ messages[0]['content'].strip().upper() }}{{ bos_token }}",
            "<s>",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&[Message::new("user", "  hi ")], false).unwrap(), "HI<s>");
    }
}
