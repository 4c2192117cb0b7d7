//! Request and response bodies of the OpenAI HTTP API that Braid serves
//! (<https://platform.openai.com/docs/api-reference>): chat completions (whole or as
//! server-sent chunks), completions, embeddings, models, and the error object. Unknown
//! request fields are refused, so a misspelt parameter is an error, not a silent default.

use serde::{Deserialize, Serialize};

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// A string, or an array of content parts.
    pub content: Content,
    /// A participant name (accepted, not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts (`{"type": "text", "text": ...}`, ...).
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (a `data:` URI; other URLs are refused).
    ImageUrl {
        /// `{"url": ...}`.
        image_url: serde_json::Value,
    },
    /// An audio clip (`{"data": base64, "format": "wav"}`).
    InputAudio {
        /// The clip.
        input_audio: serde_json::Value,
    },
    /// Braid's extension: an IMU recording as rows of channel values, in the channel
    /// order of the model's IMU slot (`{"rows": [[ax, ay, az, gx, gy, gz], ...],
    /// "rate_hz": 50}`; `rate_hz` optional, checked against the model's when given).
    InputImu {
        /// The recording.
        input_imu: ImuPart,
    },
}

/// The body of an `input_imu` content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuPart {
    /// Samples, one row per time step.
    pub rows: Vec<Vec<f32>>,
    /// Samples per second.
    #[serde(default)]
    pub rate_hz: Option<f64>,
}

/// Stop strings: one or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The strings.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// The sampling parameters chat and completions share (their own fields in each request:
/// serde cannot refuse unknown fields of a flattened struct).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_tokens: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Strings that end the answer.
    pub stop: Option<Stop>,
    /// Seed of the sampler.
    pub seed: Option<u64>,
}

/// The sampling fields of a request.
macro_rules! sampling_of {
    ($t:ty) => {
        impl $t {
            /// The sampling parameters.
            pub fn sampling(&self) -> Sampling {
                Sampling {
                    max_tokens: self.max_tokens,
                    temperature: self.temperature,
                    top_p: self.top_p,
                    stop: self.stop.clone(),
                    seed: self.seed,
                }
            }
        }
    };
}
sampling_of!(ChatRequest);
sampling_of!(CompletionRequest);

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// Model id (as `/v1/models` lists it).
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (`max_completion_tokens` is the newer name).
    #[serde(default, alias = "max_completion_tokens")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy (the default here).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Strings that end the answer.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Accepted and ignored: a client's user tag.
    #[serde(default)]
    pub user: Option<String>,
    /// Only 1 is supported.
    #[serde(default)]
    pub n: Option<usize>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Model id.
    pub model: String,
    /// The text to continue.
    pub prompt: String,
    /// Most tokens to generate (`max_completion_tokens` is the newer name).
    #[serde(default, alias = "max_completion_tokens")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy (the default here).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Strings that end the answer.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed of the sampler.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stream the continuation as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Accepted and ignored: a client's user tag.
    #[serde(default)]
    pub user: Option<String>,
    /// Only 1 is supported.
    #[serde(default)]
    pub n: Option<usize>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// Model id.
    pub model: String,
    /// One text or several.
    pub input: EmbeddingsInput,
    /// Only `float` is supported.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Accepted and ignored: a client's user tag.
    #[serde(default)]
    pub user: Option<String>,
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

impl EmbeddingsInput {
    /// The texts.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Token counts of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

/// Braid's timings of a response (llama.cpp's server reports the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds waiting in the queue.
    pub queued_s: f64,
    /// Seconds of its prompt's processing (its prefill).
    pub prompt_s: f64,
    /// Seconds from its prefill to its last token.
    pub decode_s: f64,
    /// The largest batch it was decoded in (itself included).
    pub batch: usize,
}

/// The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, ...).
    pub code: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_parse_as_clients_send_them() {
        let ok = r#"{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stop":"\n"}"#;
        let req: ChatRequest = serde_json::from_str(ok).unwrap();
        assert_eq!(req.messages[0].content, Content::Text("hi".into()));
        assert_eq!(req.sampling().max_tokens, Some(8));
        assert_eq!(req.sampling().stop.unwrap().strings(), ["\n"]);
        let parts = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}]}"#;
        let req: ChatRequest = serde_json::from_str(parts).unwrap();
        assert!(matches!(&req.messages[0].content, Content::Parts(p) if p.len() == 2));
        let e: EmbeddingsRequest =
            serde_json::from_str(r#"{"model":"minilm","input":["a","b"]}"#).unwrap();
        assert_eq!(e.input.texts(), ["a", "b"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let bad = r#"{"model":"smollm2","messages":[],"temprature":0.5}"#;
        let err = serde_json::from_str::<ChatRequest>(bad).unwrap_err().to_string();
        assert!(err.contains("temprature"), "{err}");
    }
}
