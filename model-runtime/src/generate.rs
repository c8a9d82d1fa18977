//! Text generation above [`CausalLm`]: chat prompt, prefix-cache reuse, sampling, stop sequences,
//! token budget, streaming, cancellation, timeout, and constrained (JSON / label) output.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::chat::{ChatPrompt, ChatTemplate};
use crate::constrain::{Constraint, JsonSchemaMachine, LabelMachine, ObjectSchema, SchemaError};
use crate::decode::{fit, json_answer, label_answer, Decoding, Step};
use crate::lm::{CausalLm, LmError};
use crate::sampling::SamplingOptions;
use crate::tokenizer::{TextTokenizer, TokenizerError};

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
    /// Constrained output did not parse or validate: the token budget ran out before the
    /// value was complete, or (a bug in the constraint) it does not fit the schema or labels.
    #[error("constrained output is not valid: {reason}: {output}")]
    InvalidOutput {
        /// What is wrong with it.
        reason: String,
        /// The text the model wrote.
        output: String,
    },
    /// The batched generator's queue is full (the caller should try again later; an HTTP
    /// service answers 503).
    #[error("the model is busy: its queue already holds the most waiting requests it takes ({capacity}); try again later")]
    QueueFull {
        /// The queue's bound.
        capacity: usize,
    },
    /// The batched generator stopped (shut down, or its worker failed).
    #[error("the generator stopped: {0}")]
    Stopped(String),
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

    /// Takes the generator apart: backend, tokenizer, template and the ids in the backend's
    /// cache.
    pub(crate) fn into_parts(self) -> (Box<dyn CausalLm>, TextTokenizer, ChatTemplate, Vec<u32>) {
        (self.lm, self.tokenizer, self.template, self.cached)
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
        Ok((json_answer(schema, &generation)?, generation))
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
        Ok((label_answer(&machine, &generation)?, generation))
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
        let mut warnings = Vec::new();
        let (prompt, budget) = fit(
            prompt,
            options.max_tokens,
            self.lm.max_positions(),
            &mut warnings,
        )?;
        let prompt_tokens = prompt.ids.len();
        let mut decoding = Decoding::new(options, started, budget, prompt_tokens, warnings);
        let (mut logits, reused) = match self.prefill(&prompt) {
            Ok(v) => v,
            Err(e) => {
                self.cached.clear();
                return Err(e);
            }
        };
        decoding.set_reused(reused);
        let stop_reason = loop {
            let step = decoding.step(
                &mut logits,
                &self.tokenizer,
                constraint.as_deref_mut(),
                sink.as_deref_mut(),
            );
            let next = match step {
                Step::Token(next) => next,
                Step::Stop(reason) => break reason,
            };
            match self.lm.forward(&[next], decoding.next_position()) {
                Ok(l) => logits = l,
                Err(LmError::ContextFull { .. }) => break StopReason::MaxTokens,
                Err(e) => {
                    self.cached.clear();
                    return Err(e.into());
                }
            }
            self.cached.push(next);
        };
        Ok(decoding.finish(stop_reason, constraint, sink))
    }
}
