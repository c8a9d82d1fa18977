//! The one interface between text generation and the network that computes logits.
//!
//! Two backends implement [`CausalLm`]: candle's quantized llama (any device, CUDA included) and
//! Flowbot's own CPU forward pass with hand-written quantized kernels. Everything above this
//! trait (tokenizer, sampling, constrained decoding, prefix cache) is backend-agnostic.

/// candle's error message without the backtrace candle attaches when `RUST_BACKTRACE` is set.
pub fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

/// Errors a backend reports.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The model file is unreadable or not a supported llama-family model.
    #[error("cannot load model: {0}")]
    Load(String),
    /// A forward pass failed.
    #[error("forward pass failed: {0}")]
    Forward(String),
    /// The request goes past the model's position limit.
    #[error("position {position} is past the context limit of {limit}")]
    ContextFull {
        /// The first position that did not fit.
        position: usize,
        /// The backend's limit.
        limit: usize,
    },
}

/// Checks a [`CausalLm::forward`] call against a backend's state: some tokens, `start` within the
/// `cached` positions, and the run within the `limit` positions.
pub fn check_forward(
    tokens: &[u32],
    start: usize,
    cached: usize,
    limit: usize,
) -> Result<(), LmError> {
    if tokens.is_empty() {
        return Err(LmError::Forward("forward called without tokens".into()));
    }
    if start > cached {
        return Err(LmError::Forward(format!(
            "start position {start} is past the {cached} cached positions"
        )));
    }
    if start + tokens.len() > limit {
        return Err(LmError::ContextFull {
            position: limit.max(start),
            limit,
        });
    }
    Ok(())
}

/// A causal language model with its own key/value cache.
///
/// The cache holds the positions `0..cached_len()`. `forward(tokens, start)` requires
/// `start <= cached_len()`; it first drops cached positions `>= start` (so a caller can rewind to a
/// shared prompt prefix and reuse it), then runs `tokens` at positions `start..start + tokens.len()`
/// and returns the logits of the last token (`vocab_size()` values).
pub trait CausalLm: Send {
    /// Runs `tokens` from position `start` and returns the last token's logits.
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError>;
    /// Number of positions currently held in the KV cache.
    fn cached_len(&self) -> usize;
    /// Vocabulary size (length of the logits).
    fn vocab_size(&self) -> usize;
    /// The largest number of positions the backend can hold.
    fn max_positions(&self) -> usize;
}
