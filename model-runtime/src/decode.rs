//! One request's decoding as a step machine: given the logits after the last token, choose the
//! next token (sampling, constraint, end-of-sequence, stop sequences, budget, cancellation,
//! timeout, streaming) or say why generation ends, and build the [`Generation`] at the end.
//!
//! The single-sequence [`crate::Generator`] and the batched [`crate::batch::BatchGenerator`]
//! drive the same machine, so a request decodes to the same tokens either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chat::ChatPrompt;
use crate::constrain::{Constraint, LabelMachine, ObjectSchema};
use crate::generate::{GenerateError, GenerateOptions, Generation, StopReason};
use crate::sampling::Sampler;
use crate::tokenizer::TextTokenizer;

/// How many allowed tokens constrained sampling draws from (the most likely ones).
const CONSTRAINED_CANDIDATES: usize = 40;

/// What the caller does after [`Decoding::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run this token through the model (at [`Decoding::next_position`]) and call `step` again
    /// with the logits.
    Token(u32),
    /// Generation ends.
    Stop(StopReason),
}

/// The state of one request between decoding steps.
pub(crate) struct Decoding {
    started: Instant,
    deadline: Option<Instant>,
    budget: usize,
    prompt_tokens: usize,
    reused: usize,
    warnings: Vec<String>,
    sampler: Sampler,
    tokens: Vec<u32>,
    bytes: Vec<u8>,
    streamed: usize,
    first_token_at: Option<Duration>,
    stop: Vec<String>,
    max_stop: usize,
    cancel: Option<Arc<AtomicBool>>,
    ignore_eos: bool,
}

impl Decoding {
    /// A request whose prompt of `prompt_tokens` ids is in the model, `reused` of them from the
    /// cache; `budget` is the (already fitted) token budget, `started` when the call began.
    pub(crate) fn new(
        options: &GenerateOptions,
        started: Instant,
        budget: usize,
        prompt_tokens: usize,
        warnings: Vec<String>,
    ) -> Decoding {
        Decoding {
            started,
            deadline: options.timeout.map(|t| started + t),
            budget,
            prompt_tokens,
            reused: 0,
            warnings,
            sampler: Sampler::new(options.sampling.clone()),
            tokens: Vec::new(),
            bytes: Vec::new(),
            streamed: 0,
            first_token_at: None,
            max_stop: options.stop.iter().map(String::len).max().unwrap_or(0),
            stop: options.stop.clone(),
            cancel: options.cancel.clone(),
            ignore_eos: options.ignore_eos,
        }
    }

    /// Records how many prompt tokens came from the cache.
    pub(crate) fn set_reused(&mut self, reused: usize) {
        self.reused = reused;
    }

    /// Cancellation or timeout, checked before any work for the request.
    pub(crate) fn interrupted(&self) -> Option<StopReason> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Some(StopReason::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(StopReason::Timeout);
        }
        None
    }

    /// The position at which the token returned by the last [`Step::Token`] runs.
    pub(crate) fn next_position(&self) -> usize {
        self.prompt_tokens + self.tokens.len() - 1
    }

    /// Chooses what follows the prompt and the tokens so far, given the model's `logits` for
    /// the next position (modified in place by penalties and masks).
    pub(crate) fn step(
        &mut self,
        logits: &mut [f32],
        tokenizer: &TextTokenizer,
        constraint: Option<&mut (dyn Constraint + '_)>,
        sink: Option<&mut (dyn FnMut(&str) + '_)>,
    ) -> Step {
        if let Some(reason) = self.interrupted() {
            return Step::Stop(reason);
        }
        if self.tokens.len() >= self.budget {
            return Step::Stop(StopReason::MaxTokens);
        }
        // The penalty looks at generated tokens only: extraction must be free to copy input.
        self.sampler.penalize(logits, &self.tokens);
        if self.ignore_eos && constraint.is_none() {
            for &id in tokenizer.eos_ids() {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let next = match constraint.as_deref() {
            None => self.sampler.pick_from_logits(logits),
            Some(c) => pick_constrained(tokenizer, &mut self.sampler, logits, c),
        };
        let Some(next) = next else {
            return Step::Stop(StopReason::Complete);
        };
        self.first_token_at
            .get_or_insert_with(|| self.started.elapsed());
        if tokenizer.eos_ids().contains(&next) {
            return Step::Stop(if constraint.is_some() {
                StopReason::Complete
            } else {
                StopReason::EndOfSequence
            });
        }
        self.tokens.push(next);
        let piece = tokenizer.token_bytes(next);
        self.bytes.extend_from_slice(piece);
        if let Some(c) = constraint {
            c.advance(piece);
            if c.is_complete() {
                return Step::Stop(StopReason::Complete);
            }
        }
        if self.max_stop > 0 {
            let text = String::from_utf8_lossy(&self.bytes);
            if let Some(pos) = self.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
                self.bytes.truncate(pos);
                return Step::Stop(StopReason::StopSequence);
            }
        }
        if let Some(sink) = sink {
            self.streamed =
                stream_ready(&self.bytes, self.streamed, self.max_stop, &self.stop, sink);
        }
        Step::Token(next)
    }

    /// Ends the request: completes constrained output that stopped early with defaults, sends the
    /// rest of the text to `sink` and returns the result.
    pub(crate) fn finish(
        mut self,
        stop_reason: StopReason,
        constraint: Option<&mut (dyn Constraint + '_)>,
        sink: Option<&mut (dyn FnMut(&str) + '_)>,
    ) -> Generation {
        if let Some(c) = constraint {
            if !c.is_complete() && !c.may_end() {
                let tail = c.completion();
                let message = format!(
                    "output completed with defaults after {:?}: {}",
                    stop_reason,
                    String::from_utf8_lossy(&tail)
                );
                tracing::warn!("{message}");
                self.warnings.push(message);
                c.advance(&tail);
                self.bytes.extend(tail);
            }
        }
        let text = String::from_utf8_lossy(&self.bytes).into_owned();
        if let Some(sink) = sink {
            if self.streamed < text.len() {
                sink(&text[self.streamed..]);
            }
        }
        Generation {
            text,
            tokens: self.tokens,
            prompt_tokens: self.prompt_tokens,
            reused_prompt_tokens: self.reused,
            stop_reason,
            warnings: self.warnings,
            time_to_first_token: self
                .first_token_at
                .unwrap_or_else(|| self.started.elapsed()),
            elapsed: self.started.elapsed(),
        }
    }
}

/// Fits the prompt and the token budget into a context of `limit` positions, cutting the end of
/// the user text; returns the prompt and the budget.
pub(crate) fn fit(
    mut prompt: ChatPrompt,
    max_tokens: usize,
    limit: usize,
    warnings: &mut Vec<String>,
) -> Result<(ChatPrompt, usize), GenerateError> {
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
            let message = format!(
                "max_tokens lowered from {budget} to {room} to fit the context of {limit} positions"
            );
            tracing::warn!("{message}");
            warnings.push(message);
            budget = room;
        }
    }
    Ok((prompt, budget))
}

/// The JSON value of a constrained generation, parsed and checked against `schema`.
pub(crate) fn json_answer(
    schema: &ObjectSchema,
    generation: &Generation,
) -> Result<serde_json::Value, GenerateError> {
    let invalid = |reason: String| GenerateError::InvalidOutput {
        reason,
        output: generation.text.clone(),
    };
    let value: serde_json::Value =
        serde_json::from_str(&generation.text).map_err(|e| invalid(e.to_string()))?;
    schema
        .validate(&value)
        .map_err(|e| invalid(e.to_string()))?;
    Ok(value)
}

/// The label a classification chose.
pub(crate) fn label_answer(
    machine: &LabelMachine,
    generation: &Generation,
) -> Result<String, GenerateError> {
    match machine.label() {
        Some(label) => Ok(label.to_owned()),
        None => Err(GenerateError::InvalidOutput {
            reason: "not one of the labels".into(),
            output: generation.text.clone(),
        }),
    }
}

/// The best allowed token(s) by logit, then the sampler's choice among them. Scans the most
/// likely tokens first ([`Ranked`]) and the rest of the vocabulary only when they hold too few
/// allowed ones.
fn pick_constrained(
    tokenizer: &TextTokenizer,
    sampler: &mut Sampler,
    logits: &[f32],
    constraint: &dyn Constraint,
) -> Option<u32> {
    let wanted = if sampler.options().temperature <= 0.0 {
        1
    } else {
        CONSTRAINED_CANDIDATES
    };
    let ranked = Ranked::new(logits);
    let may_end = constraint.may_end();
    let allowed_token = |id: u32| {
        if tokenizer.is_special(id) {
            may_end && tokenizer.eos_ids().contains(&id)
        } else {
            let piece = tokenizer.token_bytes(id);
            !piece.is_empty() && constraint.accepts(piece)
        }
    };
    let mut allowed: Vec<(u32, f32)> = Vec::with_capacity(wanted);
    for &id in ranked.head() {
        if allowed_token(id) {
            allowed.push((id, logits[id as usize]));
            if allowed.len() == wanted {
                return sampler.pick(&mut allowed);
            }
        }
    }
    for id in ranked.rest() {
        if allowed_token(id) {
            allowed.push((id, logits[id as usize]));
            if allowed.len() == wanted {
                break;
            }
        }
    }
    sampler.pick(&mut allowed)
}

/// About how many of the most likely tokens [`Ranked`] puts first.
const HEAD: usize = 512;
/// [`Ranked`] estimates the [`HEAD`]-th largest logit from every this-many-th one.
const SAMPLE_STRIDE: usize = 64;

/// The vocabulary in the order constrained picking scans it, logit descending then id
/// ascending, in two parts: the head, every id whose logit is at least a threshold estimated
/// from a sample of the logits (about [`HEAD`] ids), sorted at once; and the rest, sorted only
/// when asked for. Every id of the head ranks before every id of the rest, so the two read one
/// after the other are the whole order. (One pass over a large vocabulary instead of selecting
/// over all of it: Gemma 3 has 262,144 tokens, and a batch picks for every request in turn.)
struct Ranked<'a> {
    logits: &'a [f32],
    head: Vec<u32>,
    /// The threshold's [`order_key`]; `None` when the head holds the whole vocabulary.
    threshold: Option<i32>,
}

impl<'a> Ranked<'a> {
    fn new(logits: &'a [f32]) -> Self {
        let rank = HEAD / SAMPLE_STRIDE;
        let (mut head, threshold) = if logits.len() <= 2 * HEAD {
            ((0..logits.len() as u32).collect::<Vec<u32>>(), None)
        } else {
            let mut sample: Vec<f32> = logits.iter().step_by(SAMPLE_STRIDE).copied().collect();
            sample.select_nth_unstable_by(rank - 1, |a, b| b.total_cmp(a));
            let threshold = order_key(sample[rank - 1]);
            (ids_where(logits, |key| key >= threshold), Some(threshold))
        };
        head.sort_unstable_by(by_logit(logits));
        Ranked {
            logits,
            head,
            threshold,
        }
    }

    /// The most likely ids, in order.
    fn head(&self) -> &[u32] {
        &self.head
    }

    /// Every other id, in order.
    fn rest(&self) -> Vec<u32> {
        let Some(threshold) = self.threshold else {
            return Vec::new();
        };
        let mut rest = ids_where(self.logits, |key| key < threshold);
        rest.sort_unstable_by(by_logit(self.logits));
        rest
    }
}

/// The order constrained picking reads ids in: logit descending, then id ascending.
fn by_logit(logits: &[f32]) -> impl Fn(&u32, &u32) -> std::cmp::Ordering + '_ {
    |a, b| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    }
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

/// `value`'s place in [`f32::total_cmp`]'s order, as an integer compared the same way.
#[inline(always)]
fn order_key(value: f32) -> i32 {
    let bits = value.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// The ids whose logit's [`order_key`] passes `keep`, in id order: 32 logits give a bit mask at a
/// time (compiled to vector compares), then the set bits are read out.
fn ids_where(logits: &[f32], keep: impl Fn(i32) -> bool) -> Vec<u32> {
    const LANES: usize = 32;
    let mut ids = Vec::with_capacity(2 * HEAD);
    let mut chunks = logits.chunks_exact(LANES);
    for (c, chunk) in (&mut chunks).enumerate() {
        let mut mask = 0u32;
        for (i, &logit) in chunk.iter().enumerate() {
            mask |= u32::from(keep(order_key(logit))) << i;
        }
        while mask != 0 {
            ids.push((c * LANES) as u32 + mask.trailing_zeros());
            mask &= mask - 1;
        }
    }
    let tail = logits.len() - chunks.remainder().len();
    for (i, &logit) in chunks.remainder().iter().enumerate() {
        if keep(order_key(logit)) {
            ids.push((tail + i) as u32);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The head and then the rest are the whole vocabulary by logit descending, id ascending,
    /// with ties (logits on a coarse grid) and vocabularies below and above the sampling size.
    #[test]
    fn ranked_reads_the_vocabulary_in_logit_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for size in [1, 7, 1_024, 1_025, 5_000, 262_144] {
            // Some masked out, as a penalty or a refused end of sequence leaves them.
            let logits: Vec<f32> = (0..size)
                .map(|i| match i % 97 {
                    3 => f32::NEG_INFINITY,
                    _ => (rng.gen_range(-30.0f32..30.0) * 4.0).round() / 4.0,
                })
                .collect();
            let ranked = Ranked::new(&logits);
            let mut read = ranked.head().to_vec();
            read.extend(ranked.rest());
            // A full sort, stable, by logit alone: ties keep id order.
            let mut expected: Vec<u32> = (0..size as u32).collect();
            expected.sort_by(|a, b| logits[*b as usize].total_cmp(&logits[*a as usize]));
            assert_eq!(read, expected, "{size} logits");
            if size >= 100_000 {
                // A large vocabulary is split near the HEAD-th logit.
                let head = ranked.head().len();
                assert!((HEAD / 4..4 * HEAD).contains(&head), "a head of {head}");
            }
        }
    }
}
