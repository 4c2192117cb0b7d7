//! Request types of the OpenAI HTTP API that Braid serves
//! (<https://platform.openai.com/docs/api-reference>).

use serde::{Deserialize, Serialize};

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Model name or path.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Stream tokens as server-sent events.
    #[serde(default)]
    pub stream: bool,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// Model name or path.
    pub model: String,
    /// One text or several.
    pub input: EmbeddingsInput,
}

/// The `input` of an embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingsInput {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_rejected() {
        let ok = r#"{"model":"smollm2","messages":[{"role":"user","content":"hi"}]}"#;
        let req: ChatRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(req.messages[0].content, "hi");
        let bad = r#"{"model":"smollm2","messages":[],"temprature":0.5}"#;
        let err = serde_json::from_str::<ChatRequest>(bad).unwrap_err().to_string();
        assert!(err.contains("temprature"), "{err}");
        let e: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"minilm","input":["a","b"]}"#).unwrap();
        assert_eq!(e.input, EmbeddingsInput::Many(vec!["a".into(), "b".into()]));
    }
}
