//! Choosing and loading a backend for a model file.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::candle_lm::{CandleLm, DeviceChoice};
use crate::chat::ChatTemplate;
use crate::fast::{FastLlama, FastOptions};
use crate::generate::Generator;
use crate::gguf::{GgufError, GgufFile};
use crate::lm::{CausalLm, LmError};
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
}

/// A loaded model with facts about the load.
pub struct LoadedModel {
    /// The generator.
    pub generator: Generator,
    /// Model id: the file name without extension.
    pub model_id: String,
    /// How long loading took.
    pub load_time: Duration,
}

/// Opens the GGUF file, builds tokenizer and chat template, and loads the weights on `backend`.
pub fn load_generator(path: &Path, backend: Backend) -> Result<LoadedModel, LoadError> {
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
