//! Choosing and loading a backend for a model: a GGUF file runs on candle's quantized llama or the
//! fast CPU backend; a Hugging Face model directory (safetensors) runs on candle's llama.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::candle_lm::{CandleLm, DeviceChoice};
use crate::chat::ChatTemplate;
use crate::fast::{FastLlama, FastOptions, LoraAdapter};
use crate::generate::Generator;
use crate::gguf::{GgufError, GgufFile};
use crate::lm::{CausalLm, LmError};
use crate::model_dir::{ModelDir, ModelDirError};
use crate::safetensors_lm::SafetensorsLm;
use crate::tokenizer::{TextTokenizer, TokenizerError};

/// Which implementation computes the logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// candle's quantized llama on the given device.
    Candle(DeviceChoice),
    /// Flowbot's own CPU forward pass with hand-written quantized kernels ([`crate::fast`]),
    /// falling back to candle on the CPU for files it does not support.
    Fast(FastOptions),
}

impl Backend {
    /// The backend for a `--device` choice: the fast CPU backend on the CPU, candle on a GPU.
    /// `FLOWBOT_BACKEND=candle` forces candle on the CPU too.
    pub fn for_device(device: DeviceChoice) -> Self {
        let forced_candle = std::env::var("FLOWBOT_BACKEND").is_ok_and(|b| b == "candle");
        match device {
            DeviceChoice::Cpu if !forced_candle => Self::Fast(FastOptions::default()),
            other => Self::Candle(other),
        }
    }
}

/// Errors loading a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The tokenizer could not be built.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The backend refused the model.
    #[error(transparent)]
    Lm(#[from] LmError),
    /// The model directory is incomplete or not a supported llama.
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
}

/// A loaded model with facts about the load.
pub struct LoadedModel {
    /// The generator.
    pub generator: Generator,
    /// Model id: the file name without extension, or the directory name.
    pub model_id: String,
    /// How long loading took.
    pub load_time: Duration,
}

/// Loads the model at `path`: a directory is a Hugging Face model directory (config.json,
/// *.safetensors, tokenizer.json) run by candle's llama on the backend's device (the CPU for
/// [`Backend::Fast`]); anything else is a GGUF file.
pub fn load_generator(path: &Path, backend: Backend) -> Result<LoadedModel, LoadError> {
    load_adapted(path, None, backend)
}

/// Loads the model at `path` as [`load_generator`] does, with the LoRA adapter file `adapter`
/// (when given) applied at run time by the fast CPU backend. The adapter must fit the model:
/// same architecture and shapes, and the same file when it records the SHA-256 of the model it
/// was trained on. Candle and model directories take no adapter (use the merged model instead).
pub fn load_adapted(
    path: &Path,
    adapter: Option<&Path>,
    backend: Backend,
) -> Result<LoadedModel, LoadError> {
    match (path.is_dir(), adapter) {
        (true, None) => load_model_dir(path, backend),
        (true, Some(adapter)) => Err(LmError::Load(format!(
            "{}: an adapter is applied to a GGUF model file; {} is a model directory",
            adapter.display(),
            path.display()
        ))
        .into()),
        (false, adapter) => load_gguf(path, adapter, backend),
    }
}

/// The adapter at `adapter_path`, checked to be trained on the model at `model_path` when it
/// says which model that was.
fn open_adapter(model_path: &Path, adapter_path: &Path) -> Result<LoraAdapter, LoadError> {
    let adapter = LoraAdapter::load(adapter_path)?;
    if let Some(expected) = adapter.base_sha256() {
        let actual = crate::gguf::sha256_file(model_path)?;
        if actual != expected {
            return Err(LmError::Load(format!(
                "{}: the adapter was trained on the model with SHA-256 {expected}, but {} has \
                 {actual}",
                adapter_path.display(),
                model_path.display()
            ))
            .into());
        }
    }
    Ok(adapter)
}

/// The SHA-256 that identifies the model at `path`: of the file, or the fingerprint of a model
/// directory's files ([`ModelDir::sha256`]).
pub fn model_sha256(path: &Path) -> Result<String, LoadError> {
    if path.is_dir() {
        Ok(ModelDir::open(path)?.sha256()?)
    } else {
        Ok(crate::gguf::sha256_file(path)?)
    }
}

fn load_model_dir(path: &Path, backend: Backend) -> Result<LoadedModel, LoadError> {
    let started = Instant::now();
    let dir = ModelDir::open(path)?;
    let tokenizer = TextTokenizer::for_model_dir(&dir)?;
    if tokenizer.vocab_size() > dir.config.vocab_size {
        return Err(ModelDirError::VocabularyMismatch {
            dir: dir.path.clone(),
            tokenizer: tokenizer.vocab_size(),
            model: dir.config.vocab_size,
        }
        .into());
    }
    let template = ChatTemplate::detect(dir.tokenizer_config.chat_template.as_deref(), &tokenizer);
    let device = match backend {
        Backend::Candle(device) => device.open()?,
        Backend::Fast(_) => DeviceChoice::Cpu.open()?,
    };
    let lm = SafetensorsLm::load(&dir, device)?;
    // `.` or `..` have no name of their own: use the resolved directory's.
    let model_id = path
        .canonicalize()
        .unwrap_or_else(|_| path.to_owned())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let load_time = started.elapsed();
    tracing::info!(model = %model_id, load_ms = load_time.as_millis() as u64, "model directory loaded on candle's llama");
    Ok(LoadedModel {
        generator: Generator::new(Box::new(lm), tokenizer, template),
        model_id,
        load_time,
    })
}

/// Opens the GGUF file, builds tokenizer and chat template, and loads the weights on `backend`
/// with `adapter` applied.
fn load_gguf(
    path: &Path,
    adapter: Option<&Path>,
    backend: Backend,
) -> Result<LoadedModel, LoadError> {
    let started = Instant::now();
    let lora = adapter
        .map(|adapter| open_adapter(path, adapter))
        .transpose()?;
    let mut file = GgufFile::open(path)?;
    let tokenizer = TextTokenizer::for_model(&file)?;
    let template = ChatTemplate::detect(
        file.metadata().opt_string("tokenizer.chat_template"),
        &tokenizer,
    );
    let lm: Box<dyn CausalLm> = match (backend, &lora) {
        (Backend::Candle(_), Some(_)) => {
            return Err(LmError::Load(
                "an adapter is applied by the fast CPU backend only (--device cpu); on candle \
                 use the merged model that fine-tuning writes beside it (model.gguf)"
                    .into(),
            )
            .into())
        }
        (Backend::Candle(device), None) => Box::new(CandleLm::load(&mut file, device.open()?)?),
        (Backend::Fast(options), Some(lora)) => {
            Box::new(FastLlama::load(path, &options)?.with_adapter(lora)?)
        }
        (Backend::Fast(options), None) => match FastLlama::load(path, &options) {
            Ok(fast) => Box::new(fast),
            Err(e) => {
                tracing::info!(error = %e, "fast backend cannot run this model; using candle on the CPU");
                Box::new(CandleLm::load(&mut file, DeviceChoice::Cpu.open()?)?)
            }
        },
    };
    let stem = |path: &Path| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let model_id = match adapter {
        Some(adapter) => format!("{}+{}", stem(path), stem(adapter)),
        None => stem(path),
    };
    let load_time = started.elapsed();
    tracing::info!(model = %model_id, ?backend, load_ms = load_time.as_millis() as u64, "model loaded");
    Ok(LoadedModel {
        generator: Generator::new(lm, tokenizer, template),
        model_id,
        load_time,
    })
}
