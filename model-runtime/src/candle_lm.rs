//! [`CausalLm`] over candle's quantized tensors: candle's llama (`quantized_llama::ModelWeights`)
//! for `llama` GGUF files and our Gemma 3 ([`crate::candle_gemma3`]) for `gemma3` files; the
//! portable backend, on the CPU or on a CUDA device.
//!
//! candle's KV cache cannot be truncated, but it grows by concatenation into fresh tensors and the
//! model is cheaply clonable (tensors are reference-counted), so a clone taken after a prompt
//! prefill is an immutable snapshot of the cache. Rewinding restores the nearest snapshot at or
//! before the requested position and re-runs the few tokens between it and that position.

use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama;

use crate::candle_gemma3::Gemma3;
use crate::gguf::GgufFile;
use crate::lm::{candle_message, check_forward, BatchLm, CausalLm, LmError, SingleSlot};

/// Which device runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` feature).
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;

    /// Parses `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| format!("`{s}`: the GPU ordinal after `cuda:` must be a number")),
                None => Err(format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
            },
        }
    }
}

impl DeviceChoice {
    /// Opens the candle device; a clear error when CUDA support is not compiled in or fails.
    pub fn open(self) -> Result<Device, LmError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(ordinal) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(LmError::Load(
                        "this flowbot was built without CUDA support: rebuild with `--features cuda` (needs nvcc) or use --device cpu".into(),
                    ));
                }
                Device::new_cuda(ordinal).map_err(|e| {
                    LmError::Load(format!(
                        "cannot open cuda:{ordinal}: {}",
                        candle_message(&e)
                    ))
                })
            }
        }
    }
}

/// The candle model of a GGUF file's architecture.
#[derive(Clone)]
enum Weights {
    Llama(quantized_llama::ModelWeights),
    Gemma3(Gemma3),
}

/// The most positions a Gemma 3 context holds on this backend (its rotary tables are computed
/// for them at load).
const GEMMA3_MAX_POSITIONS: usize = 8192;

impl Weights {
    /// The architectures candle runs here (`general.architecture`).
    const ARCHITECTURES: &'static str = "llama or gemma3";

    /// The longest context this backend runs for `arch`, if it runs it.
    fn max_seq_len(arch: &str) -> Option<usize> {
        match arch {
            "llama" => Some(quantized_llama::MAX_SEQ_LEN),
            "gemma3" => Some(GEMMA3_MAX_POSITIONS),
            _ => None,
        }
    }

    fn load(
        arch: &str,
        content: candle_core::quantized::gguf_file::Content,
        reader: &mut std::io::BufReader<std::fs::File>,
        max_positions: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        if arch == "gemma3" {
            Gemma3::from_gguf(&content, reader, max_positions, device).map(Self::Gemma3)
        } else {
            quantized_llama::ModelWeights::from_gguf(content, reader, device).map(Self::Llama)
        }
    }

    /// The last position's logits of `input` (a batch of one) placed at `start`.
    fn forward(&mut self, input: &Tensor, start: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Llama(model) => model.forward(input, start),
            Self::Gemma3(model) => model.forward(input, start),
        }
    }
}

/// candle's quantized model of the file's architecture, with prefix snapshots.
pub struct CandleLm {
    model: Weights,
    device: Device,
    vocab_size: usize,
    max_positions: usize,
    /// Tokens whose keys/values are in the model's cache.
    history: Vec<u32>,
    /// Copies of the model (its KV cache inside) after multi-token forwards.
    snapshots: Snapshots<Weights>,
}

impl CandleLm {
    /// Loads the weights of an opened `llama` or `gemma3` GGUF file onto `device`.
    pub fn load(file: &mut GgufFile, device: Device) -> Result<Self, LmError> {
        let md = file.metadata();
        let arch = md
            .opt_string("general.architecture")
            .unwrap_or("")
            .to_owned();
        let Some(max_seq_len) = Weights::max_seq_len(&arch) else {
            return Err(LmError::Load(format!(
                "{}: architecture `{arch}` is not supported by the candle backend ({} GGUF files only)",
                file.path.display(),
                Weights::ARCHITECTURES,
            )));
        };
        let declared_context = md
            .opt_u64(&format!("{arch}.context_length"))
            .map(|v| v as usize)
            .unwrap_or(max_seq_len);
        let vocab_size = md
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.len())
            .or_else(|| {
                file.content
                    .tensor_infos
                    .get("token_embd.weight")
                    .map(|t| t.shape.dims()[0])
            })
            .ok_or_else(|| {
                LmError::Load(format!(
                    "{}: cannot tell the vocabulary size",
                    file.path.display()
                ))
            })?;
        let content = std::mem::replace(
            &mut file.content,
            candle_core::quantized::gguf_file::Content {
                magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
                metadata: Default::default(),
                tensor_infos: Default::default(),
                tensor_data_offset: 0,
            },
        );
        let max_positions = declared_context.min(max_seq_len);
        let result = Weights::load(&arch, content, &mut file.reader, max_positions, &device);
        let model = result.map_err(|e| {
            LmError::Load(format!("{}: {}", file.path.display(), candle_message(&e)))
        })?;
        Ok(Self {
            model,
            device,
            vocab_size,
            max_positions,
            history: Vec::new(),
            snapshots: Snapshots::default(),
        })
    }

    fn run(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        let input = input_tensor(tokens, &self.device)?;
        let logits = last_logits(self.model.forward(&input, start))?;
        self.history.truncate(start);
        self.history.extend_from_slice(tokens);
        Ok(logits)
    }

    /// Brings the cache back to exactly `start` positions.
    fn rewind(&mut self, start: usize) -> Result<(), LmError> {
        if start == self.history.len() || start == 0 {
            return Ok(());
        }
        let from = match self.snapshots.nearest(start) {
            Some((len, model)) => {
                self.model = model.clone();
                len
            }
            None => 0,
        };
        if from < start {
            let replay: Vec<u32> = self.history[from..start].to_vec();
            tracing::debug!(
                from,
                start,
                "candle backend replays tokens to rewind its cache"
            );
            self.run(&replay, from)?;
        }
        self.history.truncate(start);
        Ok(())
    }
}

/// Most cache copies a candle backend keeps.
const MAX_SNAPSHOTS: usize = 4;

/// Copies of a candle backend's cache state taken at the end of multi-token runs (prompts), so a
/// later call that shares a prefix restarts from the nearest copy instead of position 0.
pub(crate) struct Snapshots<S> {
    /// `(positions, state)`, oldest first.
    kept: Vec<(usize, S)>,
}

impl<S> Default for Snapshots<S> {
    fn default() -> Self {
        Self { kept: Vec::new() }
    }
}

impl<S> Snapshots<S> {
    /// Drops the copies holding positions past `start` (the next run overwrites them).
    pub(crate) fn forget_after(&mut self, start: usize) {
        self.kept.retain(|(len, _)| *len <= start);
    }

    /// The copy with the most positions, none past `start`.
    pub(crate) fn nearest(&self, start: usize) -> Option<(usize, &S)> {
        self.kept
            .iter()
            .filter(|(len, _)| *len <= start)
            .max_by_key(|(len, _)| *len)
            .map(|(len, state)| (*len, state))
    }

    /// Keeps a copy taken at `len` positions; the oldest goes when the store is full.
    pub(crate) fn keep(&mut self, len: usize, state: S) {
        if self.kept.len() == MAX_SNAPSHOTS {
            self.kept.remove(0);
        }
        self.kept.push((len, state));
    }

    /// Drops every copy.
    pub(crate) fn clear(&mut self) {
        self.kept.clear();
    }
}

/// `tokens` as a batch of one, the input of candle's llama models.
pub(crate) fn input_tensor(tokens: &[u32], device: &Device) -> Result<Tensor, LmError> {
    Tensor::new(tokens, device)
        .and_then(|t| t.unsqueeze(0))
        .map_err(|e| LmError::Forward(candle_message(&e)))
}

/// The last position's logits of a candle llama forward pass, as f32 values.
pub(crate) fn last_logits(logits: candle_core::Result<Tensor>) -> Result<Vec<f32>, LmError> {
    logits
        .and_then(|l| l.squeeze(0))
        .and_then(|l| l.to_dtype(candle_core::DType::F32))
        .and_then(|l| l.to_vec1::<f32>())
        .map_err(|e| LmError::Forward(candle_message(&e)))
}

impl CausalLm for CandleLm {
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        check_forward(tokens, start, self.history.len(), self.max_positions)?;
        self.snapshots.forget_after(start);
        self.rewind(start)?;
        let logits = self.run(tokens, start)?;
        if tokens.len() > 1 {
            self.snapshots.keep(self.history.len(), self.model.clone());
        }
        Ok(logits)
    }

    fn cached_len(&self) -> usize {
        self.history.len()
    }

    fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    fn max_positions(&self) -> usize {
        self.max_positions
    }

    fn into_batch(self: Box<Self>, _slots: usize) -> Box<dyn BatchLm> {
        Box::new(SingleSlot::new(self))
    }
}
