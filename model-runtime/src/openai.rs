//! A client for OpenAI-compatible chat-completions servers (vLLM, llama.cpp server, TGI): the
//! remote alternative to the local model. JSON output is requested with `response_format`
//! (`json_schema`) and validated here; classification answers are matched to the labels.
//!
//! Plain HTTP by default; the `https` cargo feature adds TLS.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::constrain::ObjectSchema;
use crate::sampling::SamplingOptions;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    /// Transport or HTTP status error.
    #[error("{url}: {message}")]
    Http {
        /// The endpoint.
        url: String,
        /// What failed.
        message: String,
    },
    /// The answer is not a chat completion.
    #[error("{url}: unexpected response: {message}")]
    Response {
        /// The endpoint.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The answer does not fit the schema or the labels.
    #[error("the server's answer is not valid: {reason}: {output}")]
    Invalid {
        /// What is wrong with it.
        reason: String,
        /// The answer's text.
        output: String,
    },
}

/// One completion from the server.
#[derive(Debug, Clone)]
pub struct RemoteCompletion {
    /// The assistant message.
    pub text: String,
    /// Prompt tokens as reported by the server.
    pub prompt_tokens: usize,
    /// Completion tokens as reported by the server.
    pub completion_tokens: usize,
    /// The model the server says it used.
    pub model: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// A chat-completions client.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    base_url: String,
    model: String,
    api_key: Option<String>,
    timeout: Duration,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `http://gpu-1:8000/v1`) and `model`.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key,
            timeout: Duration::from_secs(120),
        }
    }

    /// Sets the request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The model name sent to the server.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn messages(system: Option<&str>, user: &str) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": user}));
        Value::Array(messages)
    }

    /// Sends one chat-completions request with extra body fields.
    fn complete(
        &self,
        system: Option<&str>,
        user: &str,
        max_tokens: usize,
        sampling: &SamplingOptions,
        extra: Value,
    ) -> Result<RemoteCompletion, OpenAiError> {
        let url = format!("{}/chat/completions", self.base_url);
        let mut body = json!({
            "model": self.model,
            "messages": Self::messages(system, user),
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "seed": sampling.seed,
        });
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), extra) {
            map.extend(extra);
        }
        let started = Instant::now();
        let mut request = ureq::post(&url).timeout(self.timeout);
        if let Some(key) = &self.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let response = request.send_json(body).map_err(|e| OpenAiError::Http {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let answer: Value = response.into_json().map_err(|e| OpenAiError::Response {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let text = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| OpenAiError::Response {
                url: url.clone(),
                message: "no choices[0].message.content".into(),
            })?
            .to_owned();
        let usage = |k: &str| {
            answer
                .pointer(&format!("/usage/{k}"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize
        };
        Ok(RemoteCompletion {
            text,
            prompt_tokens: usage("prompt_tokens"),
            completion_tokens: usage("completion_tokens"),
            model: answer
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or(&self.model)
                .to_owned(),
            elapsed: started.elapsed(),
        })
    }

    /// Free text.
    pub fn generate(
        &self,
        system: Option<&str>,
        user: &str,
        max_tokens: usize,
        sampling: &SamplingOptions,
    ) -> Result<RemoteCompletion, OpenAiError> {
        self.complete(system, user, max_tokens, sampling, json!({}))
    }

    /// A JSON object valid for `schema` (`json_schema` is the schema's JSON form).
    pub fn generate_json(
        &self,
        system: Option<&str>,
        user: &str,
        schema: &ObjectSchema,
        json_schema: &Value,
        max_tokens: usize,
        sampling: &SamplingOptions,
    ) -> Result<(Value, RemoteCompletion), OpenAiError> {
        let format = json!({"response_format": {"type": "json_schema", "json_schema": {"name": "output", "strict": true, "schema": json_schema}}});
        let completion = self.complete(system, user, max_tokens, sampling, format)?;
        let invalid = |reason: String| OpenAiError::Invalid {
            reason,
            output: completion.text.clone(),
        };
        let value: Value =
            serde_json::from_str(completion.text.trim()).map_err(|e| invalid(e.to_string()))?;
        schema
            .validate(&value)
            .map_err(|e| invalid(e.to_string()))?;
        Ok((value, completion))
    }

    /// One of `labels`: the answer must equal a label (ignoring case, surrounding space and quotes).
    pub fn classify(
        &self,
        system: Option<&str>,
        user: &str,
        labels: &[String],
        sampling: &SamplingOptions,
    ) -> Result<(String, RemoteCompletion), OpenAiError> {
        let prompt = format!(
            "{user}\n\nAnswer with exactly one of: {}",
            labels.join(", ")
        );
        let completion = self.complete(system, &prompt, 16, sampling, json!({}))?;
        let answer = completion
            .text
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == '.')
            .to_lowercase();
        let label = labels
            .iter()
            .find(|l| l.to_lowercase() == answer)
            .cloned()
            .ok_or_else(|| OpenAiError::Invalid {
                reason: format!("not one of the labels {labels:?}"),
                output: completion.text.clone(),
            })?;
        Ok((label, completion))
    }
}
