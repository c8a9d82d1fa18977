//! Choosing and loading a backend for a model: a GGUF file runs on candle's quantized llama or the
//! fast CPU backend; a Hugging Face model directory (safetensors) runs on candle's llama.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::candle_lm::{CandleLm, DeviceChoice};
use crate::chat::ChatTemplate;
use crate::fast::{FastLlama, FastOptions};
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
    if path.is_dir() {
        load_model_dir(path, backend)
    } else {
        load_gguf(path, backend)
    }
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

/// Opens the GGUF file, builds tokenizer and chat template, and loads the weights on `backend`.
fn load_gguf(path: &Path, backend: Backend) -> Result<LoadedModel, LoadError> {
    let started = Instant::now();
    let mut file = GgufFile::open(path)?;
    let tokenizer = TextTokenizer::for_model(&file)?;
    let template = ChatTemplate::detect(
        file.metadata().opt_string("tokenizer.chat_template"),
        &tokenizer,
    );
    let lm: Box<dyn CausalLm> = match backend {
        Backend::Candle(device) => Box::new(CandleLm::load(&mut file, device.open()?)?),
        Backend::Fast(options) => match FastLlama::load(path, &options) {
            Ok(fast) => Box::new(fast),
            Err(e) => {
                tracing::info!(error = %e, "fast backend cannot run this model; using candle on the CPU");
                Box::new(CandleLm::load(&mut file, DeviceChoice::Cpu.open()?)?)
            }
        },
    };
    let model_id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let load_time = started.elapsed();
    tracing::info!(model = %model_id, ?backend, load_ms = load_time.as_millis() as u64, "model loaded");
    Ok(LoadedModel {
        generator: Generator::new(lm, tokenizer, template),
        model_id,
        load_time,
    })
}
