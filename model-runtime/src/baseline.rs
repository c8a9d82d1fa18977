//! candle's `quantized_llama` behind [`CausalLm`], kept as the baseline the fast backend is
//! measured and checked against (`flowbot model bench --backend candle`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};

use crate::lm::{CausalLm, LmError};

/// candle's quantized llama on the CPU. It cannot drop part of its cache: `forward` accepts
/// `start == cached_len()` (continue) or `start == 0` (a fresh sequence, cache cleared).
pub struct CandleBaseline {
    model: ModelWeights,
    vocab: usize,
    cached: usize,
}

impl CandleBaseline {
    /// Loads a GGUF file (read through a buffer).
    pub fn load(path: &Path) -> Result<CandleBaseline, LmError> {
        let err = |e: &dyn std::fmt::Display| LmError::Load(format!("{}: {e}", path.display()));
        let mut reader = BufReader::new(File::open(path).map_err(|e| err(&e))?);
        let content = Content::read(&mut reader).map_err(|e| err(&e))?;
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|info| info.shape.dims()[0])
            .ok_or_else(|| err(&"tensor token_embd.weight is missing"))?;
        let model =
            ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).map_err(|e| err(&e))?;
        Ok(CandleBaseline {
            model,
            vocab,
            cached: 0,
        })
    }
}

impl CausalLm for CandleBaseline {
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        let fail = |e: candle_core::Error| LmError::Forward(e.to_string());
        if tokens.is_empty() {
            return Err(LmError::Forward("no tokens to run".into()));
        }
        if start != 0 && start != self.cached {
            return Err(LmError::Forward(format!(
                "candle cannot rewind to position {start} (cached {}); only 0 or the cache end",
                self.cached
            )));
        }
        if start + tokens.len() > MAX_SEQ_LEN {
            return Err(LmError::ContextFull {
                position: MAX_SEQ_LEN.max(start),
                limit: MAX_SEQ_LEN,
            });
        }
        // quantized_llama resets its cache when it runs from position 0.
        let input = Tensor::new(tokens, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(fail)?;
        let logits = self
            .model
            .forward(&input, start)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_vec1())
            .map_err(fail)?;
        self.cached = start + tokens.len();
        Ok(logits)
    }

    fn cached_len(&self) -> usize {
        self.cached
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn max_positions(&self) -> usize {
        MAX_SEQ_LEN
    }
}
