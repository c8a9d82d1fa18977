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
    /// This model as a [`BatchLm`] with (at most) `slots` caches; the current cache becomes
    /// slot 0. Backends without batched kernels answer with one slot ([`SingleSlot`]).
    fn into_batch(self: Box<Self>, slots: usize) -> Box<dyn BatchLm>;
}

/// One sequence's share of a [`BatchLm::forward_batch`] call.
#[derive(Debug, Clone, Copy)]
pub struct SlotRun<'a> {
    /// The cache the sequence lives in.
    pub slot: usize,
    /// Tokens to run.
    pub tokens: &'a [u32],
    /// Position of the first token (at most the slot's cached length; later positions are
    /// dropped first, as in [`CausalLm::forward`]).
    pub start: usize,
    /// Whether the last token's logits are wanted.
    pub logits: bool,
}

/// A model holding several key/value caches ("slots") that runs many sequences' tokens in one
/// pass, so every weight read serves the whole batch.
pub trait BatchLm: Send {
    /// Number of caches.
    fn slots(&self) -> usize;
    /// Positions held in `slot`'s cache.
    fn cached_len(&self, slot: usize) -> usize;
    /// Copies positions `range` of `from`'s cache into `to`, whose first `range.start` positions
    /// must already be the same; `to` then holds `range.end` positions.
    fn copy_prefix(
        &mut self,
        from: usize,
        to: usize,
        range: std::ops::Range<usize>,
    ) -> Result<(), LmError>;
    /// Runs every run (each on its own slot) and returns the last-token logits of the runs that
    /// ask for them, one after another in the order of `runs` (`vocab_size()` values each).
    fn forward_batch(&mut self, runs: &[SlotRun<'_>]) -> Result<Vec<f32>, LmError>;
    /// Gives back the logits of an earlier [`BatchLm::forward_batch`], whose buffer the next
    /// one may fill instead of a fresh one (every step of a batch returns a large buffer: the
    /// vocabulary times the requests). Models that keep nothing drop it.
    fn recycle_logits(&mut self, logits: Vec<f32>) {
        drop(logits);
    }
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// The largest number of positions a slot can hold.
    fn max_positions(&self) -> usize;
}

/// A single-sequence model seen as a [`BatchLm`] of one slot (runs one request at a time).
pub struct SingleSlot(Box<dyn CausalLm>);

impl SingleSlot {
    /// Wraps `lm`.
    pub fn new(lm: Box<dyn CausalLm>) -> SingleSlot {
        SingleSlot(lm)
    }
}

impl BatchLm for SingleSlot {
    fn slots(&self) -> usize {
        1
    }

    fn cached_len(&self, _slot: usize) -> usize {
        self.0.cached_len()
    }

    fn copy_prefix(
        &mut self,
        from: usize,
        to: usize,
        range: std::ops::Range<usize>,
    ) -> Result<(), LmError> {
        if from == to && range.end <= self.0.cached_len() {
            return Ok(());
        }
        Err(LmError::Forward(format!(
            "a single-slot model cannot copy positions {range:?} from slot {from} to slot {to}"
        )))
    }

    fn forward_batch(&mut self, runs: &[SlotRun<'_>]) -> Result<Vec<f32>, LmError> {
        let mut logits = Vec::new();
        for run in runs {
            if run.slot != 0 {
                return Err(LmError::Forward(format!(
                    "slot {} does not exist (one slot)",
                    run.slot
                )));
            }
            let out = self.0.forward(run.tokens, run.start)?;
            if run.logits {
                logits.extend(out);
            }
        }
        Ok(logits)
    }

    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }

    fn max_positions(&self) -> usize {
        self.0.max_positions()
    }
}
