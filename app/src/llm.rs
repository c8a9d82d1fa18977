//! The engine's [`TextGenerator`] served by the model runtime: a local model (GGUF file or model
//! directory), or an OpenAI-compatible server; and [`ModelSlot`], the generator the engine is
//! built with, which the application fills when a deployed process needs a model.
//!
//! The local model decodes concurrent requests together ([`BatchGenerator`]): LLM steps of several
//! instances that run at the same time share one batch, each with its own cache, sampling,
//! constraint and stop conditions. When more requests wait than the queue holds, a step fails at
//! once with a retryable "busy" backend error.
//!
//! Invariant: the engine sees text, JSON values and labels, never tokens; a step that runs before
//! any model is loaded fails as a retryable backend error, never panics.

use crate::error::AppError;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use flowbot_engine::llm::{
    LlmError, LlmMode, LlmOptions, LlmOutput, LlmRequest, LlmResponse, TextGenerator,
};
use flowbot_model_runtime::batch::{BatchGenerator, BatchOptions};
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::openai::OpenAiClient;
use flowbot_model_runtime::{
    load_adapted, model_sha256, Backend, GenerateOptions, SamplingOptions,
};

/// Default token budget of an LLM step.
const DEFAULT_MAX_TOKENS: usize = 256;

/// A local model (GGUF file or model directory) behind the engine's generator trait; concurrent
/// calls are decoded together in one batch.
pub struct LocalTextGenerator {
    generator: BatchGenerator,
    model_id: String,
    model_sha256: Option<String>,
}

impl LocalTextGenerator {
    /// Loads the model at `path` (a GGUF file or a model directory) on `backend`, decoding up to
    /// `batch.slots` concurrent calls together with `batch.queue` more waiting.
    pub fn load(path: &Path, backend: Backend, batch: BatchOptions) -> Result<Self, AppError> {
        Self::load_adapted(path, None, backend, batch)
    }

    /// [`LocalTextGenerator::load`] with the LoRA adapter file `adapter` applied at run time.
    pub fn load_adapted(
        path: &Path,
        adapter: Option<&Path>,
        backend: Backend,
        batch: BatchOptions,
    ) -> Result<Self, AppError> {
        let loaded = load_adapted(path, adapter, backend).map_err(|e| {
            let with = adapter
                .map(|a| format!(" with the adapter {}", a.display()))
                .unwrap_or_default();
            AppError::unavailable(format!(
                "the model {}{with} cannot be loaded: {e}",
                path.display()
            ))
        })?;
        let model_sha256 = model_sha256(path).ok();
        Ok(Self {
            generator: BatchGenerator::new(loaded.generator, batch),
            model_id: loaded.model_id,
            model_sha256,
        })
    }
}

/// Turns step options into runtime options.
pub fn generate_options(options: &LlmOptions) -> GenerateOptions {
    let defaults = SamplingOptions::default();
    GenerateOptions {
        max_tokens: options.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        sampling: SamplingOptions {
            temperature: options.temperature.unwrap_or(defaults.temperature),
            top_k: options.top_k.unwrap_or(defaults.top_k),
            top_p: options.top_p.unwrap_or(defaults.top_p),
            repetition_penalty: options
                .repetition_penalty
                .unwrap_or(defaults.repetition_penalty),
            seed: options.seed.unwrap_or(defaults.seed),
            ..defaults
        },
        stop: options.stop.clone(),
        timeout: options.timeout_ms.map(Duration::from_millis),
        cancel: None,
        ignore_eos: false,
    }
}

impl TextGenerator for LocalTextGenerator {
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let options = generate_options(&request.options);
        let generator = &self.generator;
        let system = request.system.as_deref();
        let backend = |e: flowbot_model_runtime::GenerateError| match e {
            flowbot_model_runtime::GenerateError::InvalidOutput { reason, output } => {
                LlmError::InvalidOutput { reason, output }
            }
            other => LlmError::Backend(other.to_string()),
        };
        let (output, generation) = match request.mode {
            LlmMode::Generate => {
                let g = generator
                    .generate(system, &request.prompt, &options, None)
                    .map_err(backend)?;
                (LlmOutput::Text(g.text.clone()), g)
            }
            LlmMode::Extract => {
                let schema = request
                    .schema
                    .as_ref()
                    .ok_or_else(|| LlmError::InvalidRequest("extract needs a schema".into()))?;
                let schema = ObjectSchema::from_json_schema(schema)
                    .map_err(|e| LlmError::InvalidRequest(e.to_string()))?;
                let (value, g) = generator
                    .generate_json(system, &request.prompt, &schema, &options)
                    .map_err(backend)?;
                (LlmOutput::Json(value), g)
            }
            LlmMode::Classify => {
                if request.labels.is_empty() {
                    return Err(LlmError::InvalidRequest("classify needs labels".into()));
                }
                let (label, g) = generator
                    .classify(system, &request.prompt, &request.labels, &options)
                    .map_err(backend)?;
                (LlmOutput::Label(label), g)
            }
        };
        Ok(LlmResponse {
            output,
            model_id: self.model_id.clone(),
            model_sha256: self.model_sha256.clone(),
            prompt_tokens: generation.prompt_tokens,
            completion_tokens: generation.tokens.len(),
            elapsed: generation.elapsed,
            warnings: generation.warnings,
        })
    }
}

/// An OpenAI-compatible chat-completions server behind the engine's generator trait.
pub struct RemoteTextGenerator {
    client: OpenAiClient,
}

impl RemoteTextGenerator {
    /// A generator for `base_url` (e.g. `http://gpu-1:8000/v1`) and `model`; the API key comes from
    /// `$OPENAI_API_KEY` when set.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            client: OpenAiClient::new(base_url, model, std::env::var("OPENAI_API_KEY").ok()),
        }
    }
}

impl TextGenerator for RemoteTextGenerator {
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let options = generate_options(&request.options);
        let system = request.system.as_deref();
        let backend = |e: flowbot_model_runtime::openai::OpenAiError| match e {
            flowbot_model_runtime::openai::OpenAiError::Invalid { reason, output } => {
                LlmError::InvalidOutput { reason, output }
            }
            other => LlmError::Backend(other.to_string()),
        };
        let (output, completion) = match request.mode {
            LlmMode::Generate => {
                let c = self
                    .client
                    .generate(
                        system,
                        &request.prompt,
                        options.max_tokens,
                        &options.sampling,
                    )
                    .map_err(backend)?;
                (LlmOutput::Text(c.text.clone()), c)
            }
            LlmMode::Extract => {
                let json_schema = request
                    .schema
                    .as_ref()
                    .ok_or_else(|| LlmError::InvalidRequest("extract needs a schema".into()))?;
                let schema = ObjectSchema::from_json_schema(json_schema)
                    .map_err(|e| LlmError::InvalidRequest(e.to_string()))?;
                let (value, c) = self
                    .client
                    .generate_json(
                        system,
                        &request.prompt,
                        &schema,
                        json_schema,
                        options.max_tokens,
                        &options.sampling,
                    )
                    .map_err(backend)?;
                (LlmOutput::Json(value), c)
            }
            LlmMode::Classify => {
                if request.labels.is_empty() {
                    return Err(LlmError::InvalidRequest("classify needs labels".into()));
                }
                let (label, c) = self
                    .client
                    .classify(system, &request.prompt, &request.labels, &options.sampling)
                    .map_err(backend)?;
                (LlmOutput::Label(label), c)
            }
        };
        Ok(LlmResponse {
            output,
            model_id: completion.model,
            model_sha256: None,
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            elapsed: completion.elapsed,
            warnings: Vec::new(),
        })
    }
}

/// The generator an application's engine is built with: empty until the application loads a
/// model (at start, or when a reload deploys the first process with an LLM step).
#[derive(Default)]
pub struct ModelSlot {
    loaded: RwLock<Option<Arc<dyn TextGenerator>>>,
}

impl ModelSlot {
    /// Puts `generator` in the slot (replacing any earlier one).
    pub fn fill(&self, generator: Arc<dyn TextGenerator>) {
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(generator);
    }

    /// Whether a model is loaded.
    pub fn is_filled(&self) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
}

impl TextGenerator for ModelSlot {
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let loaded = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match loaded {
            Some(generator) => generator.generate(request),
            None => Err(LlmError::Backend("no language model is loaded".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowbot_engine::llm::LlmOptions;
    use flowbot_model_runtime::fast::FastOptions;
    use flowbot_model_runtime::tiny_model::write_tiny_llama;

    fn request(mode: LlmMode, prompt: &str) -> LlmRequest {
        LlmRequest {
            mode,
            system: Some("Answer about orders.".into()),
            prompt: prompt.into(),
            schema: (mode == LlmMode::Extract).then(|| {
                serde_json::json!({
                    "type": "object",
                    "properties": {"order_id": {"type": "string", "maxLength": 10}},
                    "required": ["order_id"]
                })
            }),
            labels: if mode == LlmMode::Classify {
                vec!["order".into(), "other".into()]
            } else {
                Vec::new()
            },
            options: LlmOptions {
                max_tokens: Some(12),
                ..Default::default()
            },
        }
    }

    /// LLM steps that run at the same time are decoded together and each gets the answer it
    /// gets alone (greedy).
    #[test]
    fn concurrent_steps_share_a_batch_and_answer_as_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        write_tiny_llama(&path, 5).unwrap();
        let backend = || Backend::Fast(FastOptions::default());
        let requests = [
            request(LlmMode::Generate, "order SO-1 arrived"),
            request(LlmMode::Extract, "order SO-22 arrived"),
            request(LlmMode::Classify, "where is SO-333?"),
            request(LlmMode::Generate, "order SO-4444 is late"),
        ];
        let alone = LocalTextGenerator::load(&path, backend(), BatchOptions { slots: 1, queue: 4 })
            .unwrap();
        let expected: Vec<LlmOutput> = requests
            .iter()
            .map(|r| alone.generate(r).unwrap().output)
            .collect();
        let batched = LocalTextGenerator::load(&path, backend(), BatchOptions::default()).unwrap();
        let start = std::sync::Barrier::new(requests.len());
        let got: Vec<LlmOutput> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .map(|r| {
                    let (batched, start) = (&batched, &start);
                    scope.spawn(move || {
                        start.wait();
                        batched.generate(r).unwrap().output
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, expected);
    }
}
