//! [`CausalLm`] over candle's llama (`models::llama`) for Hugging Face model directories
//! ([`crate::model_dir`]): f32 on the CPU, bf16 on a GPU.
//!
//! The weights are read into memory (no memory map), checked against `config.json` tensor by
//! tensor, then converted to the compute dtype. candle's llama builds its blocks with `unwrap`, so
//! the check comes first: a missing tensor or a wrong shape is an error naming the tensor, not a
//! panic.
//!
//! Prefix reuse works as in [`crate::candle_lm`]: candle's llama `Cache` cannot be truncated, but it
//! grows by concatenation into fresh tensors and clones cheaply (reference-counted tensors), so a
//! clone taken after a multi-token forward is an immutable snapshot. Rewinding restores the nearest
//! snapshot at or before the requested position and re-runs the tokens between it and that position.
//! The cache also keeps the attention masks it built; restoring a snapshot drops those built since,
//! so they do not pile up across calls that share a system prompt.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Llama};

use crate::candle_lm::{input_tensor, last_logits, Snapshots};
use crate::lm::{candle_message, check_forward, BatchLm, CausalLm, LmError, SingleSlot};
use crate::model_dir::{ModelDir, ModelDirError};

/// The dtype the model computes in on `device`: f32 on the CPU, bf16 on a GPU.
pub fn compute_dtype(device: &Device) -> DType {
    if device.supports_bf16() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// Reads every tensor of the directory's safetensors files (onto the CPU, in their stored dtype).
fn read_tensors(dir: &ModelDir) -> Result<HashMap<String, Tensor>, ModelDirError> {
    let mut tensors = HashMap::new();
    for file in &dir.weight_files {
        let bytes = std::fs::read(file).map_err(|source| ModelDirError::Io {
            path: file.clone(),
            source,
        })?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            ModelDirError::Safetensors {
                path: file.clone(),
                message: candle_message(&e),
            }
        })?;
        for (name, tensor) in loaded {
            if tensors.contains_key(&name) {
                tracing::warn!(tensor = %name, file = %file.display(), "tensor found in two shards; the first one is used");
                continue;
            }
            tensors.insert(name, tensor);
        }
    }
    Ok(tensors)
}

/// Checks that every tensor the config calls for is present with the implied shape.
fn check_tensors(dir: &ModelDir, tensors: &HashMap<String, Tensor>) -> Result<(), ModelDirError> {
    for (name, expected) in dir.expected_tensors() {
        let Some(tensor) = tensors.get(&name) else {
            return Err(ModelDirError::MissingTensor {
                dir: dir.path.clone(),
                tensor: name,
            });
        };
        if tensor.dims() != expected.as_slice() {
            return Err(ModelDirError::ShapeMismatch {
                dir: dir.path.clone(),
                tensor: name,
                expected,
                found: tensor.dims().to_vec(),
            });
        }
    }
    Ok(())
}

/// candle's llama with prefix snapshots of its KV cache.
pub struct SafetensorsLm {
    model: Llama,
    cache: Cache,
    /// The cache with nothing in it (candle's llama cache cannot be cleared in place).
    empty_cache: Cache,
    device: Device,
    vocab_size: usize,
    max_positions: usize,
    /// Tokens whose keys/values are in the cache.
    history: Vec<u32>,
    /// Copies of the KV cache after multi-token forwards.
    snapshots: Snapshots<Cache>,
}

impl SafetensorsLm {
    /// Loads the weights of the model directory onto `device`, in [`compute_dtype`].
    pub fn load(dir: &ModelDir, device: Device) -> Result<Self, ModelDirError> {
        let tensors = read_tensors(dir)?;
        check_tensors(dir, &tensors)?;
        let dtype = compute_dtype(&device);
        let config = dir.config.clone().into_config(false);
        let build = |e: candle_core::Error| ModelDirError::Build {
            dir: dir.path.clone(),
            message: candle_message(&e),
        };
        let weights = VarBuilder::from_tensors(tensors, dtype, &device);
        let model = Llama::load(weights, &config).map_err(build)?;
        let cache = Cache::new(true, dtype, &config, &device).map_err(build)?;
        tracing::debug!(dir = %dir.path.display(), ?dtype, "llama weights loaded from safetensors");
        Ok(Self {
            model,
            empty_cache: cache.clone(),
            cache,
            device,
            vocab_size: config.vocab_size,
            max_positions: config.max_position_embeddings,
            history: Vec::new(),
            snapshots: Snapshots::default(),
        })
    }

    fn run(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        let input = input_tensor(tokens, &self.device)?;
        let logits = last_logits(self.model.forward(&input, start, &mut self.cache))?;
        self.history.truncate(start);
        self.history.extend_from_slice(tokens);
        Ok(logits)
    }

    /// Brings the cache back to exactly `start` positions (`start <= cached_len()`).
    fn rewind(&mut self, start: usize) -> Result<(), LmError> {
        if start == self.history.len() {
            return Ok(());
        }
        let (from, cache) = self
            .snapshots
            .nearest(start)
            .unwrap_or((0, &self.empty_cache));
        self.cache = cache.clone();
        let replay = self.history[from..start].to_vec();
        self.history.truncate(from);
        if !replay.is_empty() {
            tracing::debug!(
                from,
                start,
                "safetensors backend replays tokens to rewind its cache"
            );
            self.run(&replay, from)?;
        }
        Ok(())
    }

    /// Forgets everything cached (after a failed forward left the cache half-updated).
    fn reset(&mut self) {
        self.cache = self.empty_cache.clone();
        self.history.clear();
        self.snapshots.clear();
    }

    fn forward_from(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        self.snapshots.forget_after(start);
        self.rewind(start)?;
        let logits = self.run(tokens, start)?;
        if tokens.len() > 1 {
            self.snapshots.keep(self.history.len(), self.cache.clone());
        }
        Ok(logits)
    }
}

impl CausalLm for SafetensorsLm {
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        check_forward(tokens, start, self.history.len(), self.max_positions)?;
        let result = self.forward_from(tokens, start);
        if matches!(result, Err(LmError::Forward(_))) {
            self.reset();
        }
        result
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
