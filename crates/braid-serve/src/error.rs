//! Errors as OpenAI's error object with the HTTP status that fits: 400 for a request that
//! cannot be served as written, 401 for a wrong key, 404 for an unknown model, 413 for a
//! body over the limit, 503 (with `Retry-After`) for a full queue.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::openai::{ErrorBody, ErrorDetail};

/// An error answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    status: StatusCode,
    detail: ErrorDetail,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        let detail =
            ErrorDetail { message: message.into(), kind: kind.into(), param: None, code: None };
        Self { status, detail }
    }

    /// A 400 naming the request field at fault, if one is.
    pub(crate) fn bad_request(message: String, param: Option<&str>) -> Self {
        let e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        match param {
            Some(p) => e.param(p),
            None => e,
        }
    }

    pub(crate) fn param(mut self, param: &str) -> Self {
        self.detail.param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: &str) -> Self {
        self.detail.code = Some(code.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let busy = self.status == StatusCode::SERVICE_UNAVAILABLE;
        let mut r = (self.status, Json(ErrorBody { error: self.detail })).into_response();
        if busy {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
