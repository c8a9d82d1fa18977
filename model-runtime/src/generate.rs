//! Text generation above [`CausalLm`]: chat prompt, prefix-cache reuse, sampling, stop sequences,
//! token budget, streaming, cancellation, timeout, and constrained (JSON / label) output.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::chat::{ChatPrompt, ChatTemplate};
use crate::constrain::{Constraint, JsonSchemaMachine, LabelMachine, ObjectSchema, SchemaError};
use crate::lm::{CausalLm, LmError};
use crate::sampling::{Sampler, SamplingOptions};
use crate::tokenizer::{TextTokenizer, TokenizerError};

/// How many allowed tokens constrained sampling draws from (the most likely ones).
const CONSTRAINED_CANDIDATES: usize = 40;

/// Errors of a generation call.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The backend failed.
    #[error(transparent)]
    Lm(#[from] LmError),
    /// Tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The JSON schema is not usable.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The request cannot fit the context even with the user text removed.
    #[error(
        "the system prompt alone ({tokens} tokens) does not fit the context of {limit} positions"
    )]
    SystemTooLong {
        /// Tokens of the prompt without user text.
        tokens: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// Classification needs labels.
    #[error("classification needs at least one non-empty label")]
    NoLabels,
    /// Constrained output did not parse or validate (a bug in the constraint if it happens).
    #[error("constrained output is not valid: {0}")]
    InvalidOutput(String),
}

/// Per-call options.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampling: SamplingOptions,
    /// Generation stops before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Wall-clock limit for the call.
    pub timeout: Option<Duration>,
    /// Set to true (from any thread) to stop the call.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Never stop at end-of-sequence tokens (benchmarks decode a fixed number of tokens).
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingOptions::default(),
            stop: Vec::new(),
            timeout: None,
            cancel: None,
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-turn token.
    EndOfSequence,
    /// A stop sequence appeared.
    StopSequence,
    /// The token budget (or the context) ran out.
    MaxTokens,
    /// The constrained output was complete.
    Complete,
    /// The cancel flag was set.
    Cancelled,
    /// The timeout passed.
    Timeout,
}

/// The result of a generation call.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// The generated text (stop sequence excluded).
    pub text: String,
    /// Generated token ids.
    pub tokens: Vec<u32>,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Prompt tokens taken from the cache instead of being computed.
    pub reused_prompt_tokens: usize,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Things the caller should know (truncated input, forced completion).
    pub warnings: Vec<String>,
    /// Time to the first generated token.
    pub time_to_first_token: Duration,
    /// Total time.
    pub elapsed: Duration,
}

/// A loaded model ready to generate: backend, tokenizer and chat template.
pub struct Generator {
    lm: Box<dyn CausalLm>,
    tokenizer: TextTokenizer,
    template: ChatTemplate,
    /// Ids currently in the backend's cache (mirrors `lm.cached_len()`).
    cached: Vec<u32>,
}

/// Streaming sink: receives text pieces as they become final.
pub type TokenSink<'a> = &'a mut dyn FnMut(&str);

impl Generator {
    /// Combines a backend with its tokenizer and chat template.
    pub fn new(lm: Box<dyn CausalLm>, tokenizer: TextTokenizer, template: ChatTemplate) -> Self {
        Self {
            lm,
            tokenizer,
            template,
            cached: Vec::new(),
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The chat template in use.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Renders the chat prompt ids for `system` and `user`.
    pub fn prompt(&self, system: Option<&str>, user: &str) -> Result<ChatPrompt, TokenizerError> {
        self.template.render(&self.tokenizer, system, user)
    }

    /// Free-text generation; `sink` receives the text as it is produced.
    pub fn generate(
        &mut self,
        system: Option<&str>,
        user: &str,
        options: &GenerateOptions,
        sink: Option<TokenSink<'_>>,
    ) -> Result<Generation, GenerateError> {
        let prompt = self.prompt(system, user)?;
        self.run(prompt, options, None, sink)
    }

    /// Generation of a JSON object valid for `schema`; returns the parsed value. Fields marked
    /// `x-copy` take their value from `user` (see [`crate::constrain::CopySource`]).
    pub fn generate_json(
        &mut self,
        system: Option<&str>,
        user: &str,
        schema: &ObjectSchema,
        options: &GenerateOptions,
    ) -> Result<(serde_json::Value, Generation), GenerateError> {
        let prompt = self.prompt(system, user)?;
        // `x-copy` fields copy from the user text.
        let mut machine = JsonSchemaMachine::new(schema.clone()).with_source(user);
        let generation = self.run(prompt, options, Some(&mut machine), None)?;
        let value: serde_json::Value = serde_json::from_str(&generation.text)
            .map_err(|e| GenerateError::InvalidOutput(format!("{e}: {}", generation.text)))?;
        schema
            .validate(&value)
            .map_err(|e| GenerateError::InvalidOutput(format!("{e}: {}", generation.text)))?;
        Ok((value, generation))
    }

    /// Chooses one of `labels`.
    pub fn classify<S: AsRef<str>>(
        &mut self,
        system: Option<&str>,
        user: &str,
        labels: &[S],
        options: &GenerateOptions,
    ) -> Result<(String, Generation), GenerateError> {
        if labels.iter().all(|l| l.as_ref().is_empty()) {
            return Err(GenerateError::NoLabels);
        }
        let mut machine = LabelMachine::new(labels);
        let prompt = self.prompt(system, user)?;
        let generation = self.run(prompt, options, Some(&mut machine), None)?;
        match machine.label() {
            Some(label) => Ok((label.to_owned(), generation)),
            None => Err(GenerateError::InvalidOutput(format!(
                "`{}` is not one of the labels",
                generation.text
            ))),
        }
    }

    /// Fits the prompt and the token budget into the context, cutting the end of the user text.
    fn fit(
        &self,
        mut prompt: ChatPrompt,
        max_tokens: usize,
        warnings: &mut Vec<String>,
    ) -> Result<(ChatPrompt, usize), GenerateError> {
        let limit = self.lm.max_positions();
        let fixed = prompt.ids.len() - prompt.user_range.len();
        if fixed + 1 >= limit {
            return Err(GenerateError::SystemTooLong {
                tokens: fixed,
                limit,
            });
        }
        let mut budget = max_tokens.max(1);
        if prompt.ids.len() + budget > limit {
            // Keep at least a quarter of the context for the user text when the budget is large.
            let user_room = (limit - fixed)
                .saturating_sub(budget)
                .max((limit - fixed) / 4)
                .min(limit - fixed - 1);
            if prompt.user_range.len() > user_room {
                let cut = prompt.user_range.len() - user_room;
                let end = prompt.user_range.end;
                prompt.ids.drain(end - cut..end);
                prompt.user_range.end -= cut;
                let message = format!("input truncated: {cut} tokens of user text cut to fit the context of {limit} positions");
                tracing::warn!("{message}");
                warnings.push(message);
            }
            let room = limit - prompt.ids.len();
            if budget > room {
                let message = format!("max_tokens lowered from {budget} to {room} to fit the context of {limit} positions");
                tracing::warn!("{message}");
                warnings.push(message);
                budget = room;
            }
        }
        Ok((prompt, budget))
    }

    /// Runs the prompt through the backend, reusing the cached prefix; returns the last logits.
    fn prefill(&mut self, prompt: &ChatPrompt) -> Result<(Vec<f32>, usize), GenerateError> {
        let ids = &prompt.ids;
        let common = self
            .cached
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must run to get logits.
        let reuse = common.min(ids.len() - 1);
        let split = prompt.stable_prefix_len;
        let mut start = reuse;
        if start < split && split < ids.len() {
            // Prefill the system part on its own so backends can keep it for the next call.
            self.lm.forward(&ids[start..split], start)?;
            start = split;
        }
        let logits = self.lm.forward(&ids[start..], start)?;
        self.cached = ids.clone();
        Ok((logits, reuse))
    }

    fn run(
        &mut self,
        prompt: ChatPrompt,
        options: &GenerateOptions,
        mut constraint: Option<&mut dyn Constraint>,
        mut sink: Option<TokenSink<'_>>,
    ) -> Result<Generation, GenerateError> {
        let started = Instant::now();
        let deadline = options.timeout.map(|t| started + t);
        let mut warnings = Vec::new();
        let (prompt, budget) = self.fit(prompt, options.max_tokens, &mut warnings)?;
        let prompt_tokens = prompt.ids.len();
        let (mut logits, reused) = match self.prefill(&prompt) {
            Ok(v) => v,
            Err(e) => {
                self.cached.clear();
                return Err(e);
            }
        };
        let mut sampler = Sampler::new(options.sampling.clone());
        let mut tokens: Vec<u32> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        let mut streamed = 0usize;
        let mut first_token_at = None;
        let max_stop = options.stop.iter().map(String::len).max().unwrap_or(0);
        let stop_reason = loop {
            if options
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                break StopReason::Cancelled;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break StopReason::Timeout;
            }
            if tokens.len() >= budget {
                break StopReason::MaxTokens;
            }
            // The penalty looks at generated tokens only: extraction must be free to copy input.
            sampler.penalize(&mut logits, &tokens);
            if options.ignore_eos && constraint.is_none() {
                for &id in self.tokenizer.eos_ids() {
                    if let Some(l) = logits.get_mut(id as usize) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
            let next = match constraint.as_deref() {
                None => sampler.pick_from_logits(&logits),
                Some(c) => self.pick_constrained(&mut sampler, &logits, c),
            };
            let Some(next) = next else {
                break StopReason::Complete;
            };
            first_token_at.get_or_insert_with(|| started.elapsed());
            if self.tokenizer.eos_ids().contains(&next) {
                break if constraint.is_some() {
                    StopReason::Complete
                } else {
                    StopReason::EndOfSequence
                };
            }
            tokens.push(next);
            let piece = self.tokenizer.token_bytes(next);
            bytes.extend_from_slice(piece);
            if let Some(c) = constraint.as_deref_mut() {
                c.advance(piece);
                if c.is_complete() {
                    break StopReason::Complete;
                }
            }
            if max_stop > 0 {
                let text = String::from_utf8_lossy(&bytes);
                if let Some(pos) = options
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    bytes.truncate(pos);
                    break StopReason::StopSequence;
                }
            }
            if let Some(sink) = sink.as_deref_mut() {
                streamed = stream_ready(&bytes, streamed, max_stop, &options.stop, sink);
            }
            let position = prompt_tokens + tokens.len() - 1;
            match self.lm.forward(&[next], position) {
                Ok(l) => logits = l,
                Err(LmError::ContextFull { .. }) => break StopReason::MaxTokens,
                Err(e) => {
                    self.cached.clear();
                    return Err(e.into());
                }
            }
            self.cached.push(next);
        };
        if let Some(c) = constraint.as_mut() {
            if !c.is_complete() && !c.may_end() {
                let tail = c.completion();
                let message = format!(
                    "output completed with defaults after {:?}: {}",
                    stop_reason,
                    String::from_utf8_lossy(&tail)
                );
                tracing::warn!("{message}");
                warnings.push(message);
                c.advance(&tail);
                bytes.extend(tail);
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(sink) = sink.as_mut() {
            if streamed < text.len() {
                sink(&text[streamed..]);
            }
        }
        Ok(Generation {
            text,
            tokens,
            prompt_tokens,
            reused_prompt_tokens: reused,
            stop_reason,
            warnings,
            time_to_first_token: first_token_at.unwrap_or_else(|| started.elapsed()),
            elapsed: started.elapsed(),
        })
    }

    /// The best allowed token(s) by logit, then the sampler's choice among them. Scans the 512
    /// most likely tokens first and the whole vocabulary only when they hold too few allowed ones.
    fn pick_constrained(
        &self,
        sampler: &mut Sampler,
        logits: &[f32],
        constraint: &dyn Constraint,
    ) -> Option<u32> {
        let wanted = if sampler_is_greedy(sampler) {
            1
        } else {
            CONSTRAINED_CANDIDATES
        };
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let head = 512.min(order.len());
        if head < order.len() {
            order.select_nth_unstable_by(head - 1, by_logit);
        }
        order[..head].sort_unstable_by(by_logit);
        let may_end = constraint.may_end();
        let allowed_token = |id: u32| {
            if self.tokenizer.is_special(id) {
                may_end && self.tokenizer.eos_ids().contains(&id)
            } else {
                let piece = self.tokenizer.token_bytes(id);
                !piece.is_empty() && constraint.accepts(piece)
            }
        };
        let mut allowed: Vec<(u32, f32)> = Vec::with_capacity(wanted);
        for &id in &order[..head] {
            if allowed_token(id) {
                allowed.push((id, logits[id as usize]));
                if allowed.len() == wanted {
                    return sampler.pick(&mut allowed);
                }
            }
        }
        order[head..].sort_unstable_by(by_logit);
        for &id in &order[head..] {
            if allowed_token(id) {
                allowed.push((id, logits[id as usize]));
                if allowed.len() == wanted {
                    break;
                }
            }
        }
        sampler.pick(&mut allowed)
    }
}

fn sampler_is_greedy(sampler: &Sampler) -> bool {
    sampler.options().temperature <= 0.0
}

/// Sends the part of `bytes` after `streamed` that is valid UTF-8 and cannot be the start of a
/// stop sequence; returns the new streamed length.
fn stream_ready(
    bytes: &[u8],
    streamed: usize,
    max_stop: usize,
    stops: &[String],
    sink: &mut dyn FnMut(&str),
) -> usize {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s.len(),
        Err(e) => e.valid_up_to(),
    };
    let text = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
    let mut ready = valid;
    if max_stop > 0 {
        // Hold back a suffix that could still grow into a stop sequence.
        for start in (valid.saturating_sub(max_stop - 1)..valid).rev() {
            if text.is_char_boundary(start) && stops.iter().any(|s| s.starts_with(&text[start..])) {
                ready = ready.min(start);
            }
        }
    }
    if ready > streamed && text.is_char_boundary(ready) && text.is_char_boundary(streamed) {
        sink(&text[streamed..ready]);
        return ready;
    }
    streamed
}
