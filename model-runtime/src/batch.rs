//! Batched generation: many requests decoded together on one model.
//!
//! A [`BatchGenerator`] owns a model seen as a [`BatchLm`] (one key/value cache per slot) and a
//! worker thread. Callers on any thread submit requests; each waits in a bounded queue until a
//! slot is free, then joins the running batch at the next step (continuous batching). Every step
//! runs the newest token of each active request, and the prompts of requests that just joined,
//! in one forward pass, so each weight read serves the whole batch. A request leaves the batch
//! when it ends (its own stop conditions, budget, constraint, cancellation or timeout) and its
//! slot goes to the next waiting one at once.
//!
//! Each request decodes with the same step machine as [`Generator`] (`decode.rs`), so under
//! greedy sampling it gets the tokens it would get alone. The prefix cache spans slots: a request
//! starts in the free slot whose cache shares the longest prefix with its prompt, and copies a
//! longer shared prefix (the system prompt) from any other slot instead of computing it again.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::chat::{ChatPrompt, ChatTemplate};
use crate::constrain::{Constraint, JsonSchemaMachine, LabelMachine, ObjectSchema};
use crate::decode::{fit, json_answer, label_answer, Decoding, Step};
use crate::generate::{GenerateError, GenerateOptions, Generation, Generator, StopReason};
use crate::lm::{BatchLm, LmError, SlotRun};
use crate::tokenizer::{TextTokenizer, TokenizerError};
use rayon::prelude::*;

/// Sizes of a [`BatchGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Requests decoded together at most (one key/value cache each). Backends without batched
    /// kernels use one.
    pub slots: usize,
    /// Requests that may wait for a slot; one more is refused with
    /// [`GenerateError::QueueFull`].
    pub queue: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            slots: 8,
            queue: 64,
        }
    }
}

/// The tokenizer and chat template, shared by the callers (who render prompts) and the worker.
struct Text {
    tokenizer: TextTokenizer,
    template: ChatTemplate,
}

/// What constrains a request's output, kept so the caller can read the answer back.
enum Machine {
    Json(JsonSchemaMachine),
    Label(LabelMachine),
}

impl Machine {
    fn constraint(&mut self) -> &mut dyn Constraint {
        match self {
            Machine::Json(m) => m,
            Machine::Label(m) => m,
        }
    }
}

/// A finished request: the generation and the machine that constrained it.
type Outcome = Result<(Generation, Option<Machine>), GenerateError>;

/// Streaming sink of a batched request: receives text pieces as they become final, on the
/// worker thread (so it must be quick).
pub type BatchSink = Box<dyn FnMut(&str) + Send>;

/// A submitted request.
struct Job {
    prompt: ChatPrompt,
    decoding: Decoding,
    machine: Option<Machine>,
    sink: Option<BatchSink>,
    reply: mpsc::Sender<Outcome>,
}

impl Job {
    fn finish(mut self, reason: StopReason) {
        let generation = self.decoding.finish(
            reason,
            self.machine.as_mut().map(Machine::constraint),
            self.sink.as_deref_mut().map(|s| s as &mut dyn FnMut(&str)),
        );
        // The caller may have gone (nothing waits for the answer then).
        let _ = self.reply.send(Ok((generation, self.machine)));
    }

    fn fail(self, error: GenerateError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The queue between callers and the worker.
struct Queue {
    waiting: VecDeque<Job>,
    /// Set when the generator is dropped or the worker ended.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A loaded model that decodes concurrent requests together (see the module documentation).
/// Its methods block the calling thread until the request ends; call them from many threads.
pub struct BatchGenerator {
    text: Arc<Text>,
    shared: Arc<Shared>,
    capacity: usize,
    max_positions: usize,
    slots: usize,
    worker: Option<JoinHandle<()>>,
}

impl BatchGenerator {
    /// Turns `generator`'s model into a batch of `options.slots` caches (its current cache
    /// becomes the first) and starts the worker thread.
    pub fn new(generator: Generator, options: BatchOptions) -> BatchGenerator {
        let (lm, tokenizer, template, cached) = generator.into_parts();
        let lm = lm.into_batch(options.slots.max(1));
        let text = Arc::new(Text {
            tokenizer,
            template,
        });
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let max_positions = lm.max_positions();
        let slots = lm.slots();
        let worker = {
            let (text, shared) = (Arc::clone(&text), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("flowbot-batch".into())
                .spawn(move || Worker::new(lm, cached, text, Arc::clone(&shared)).run())
        };
        let worker = match worker {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::error!("cannot start the batch worker: {error}");
                shared.lock().closed = true;
                None
            }
        };
        BatchGenerator {
            text,
            shared,
            capacity: options.queue,
            max_positions,
            slots,
            worker,
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.text.tokenizer
    }

    /// Requests decoded together at most.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Renders the chat prompt ids for `system` and `user`.
    pub fn prompt(&self, system: Option<&str>, user: &str) -> Result<ChatPrompt, TokenizerError> {
        self.text
            .template
            .render(&self.text.tokenizer, system, user)
    }

    /// Free-text generation (as [`Generator::generate`]); `sink` receives the text as it is
    /// produced.
    pub fn generate(
        &self,
        system: Option<&str>,
        user: &str,
        options: &GenerateOptions,
        sink: Option<BatchSink>,
    ) -> Result<Generation, GenerateError> {
        let prompt = self.prompt(system, user)?;
        Ok(self.submit(prompt, options, None, sink)?.0)
    }

    /// Generation of a JSON object valid for `schema` (as [`Generator::generate_json`]).
    pub fn generate_json(
        &self,
        system: Option<&str>,
        user: &str,
        schema: &ObjectSchema,
        options: &GenerateOptions,
    ) -> Result<(serde_json::Value, Generation), GenerateError> {
        let prompt = self.prompt(system, user)?;
        let machine = JsonSchemaMachine::new(schema.clone()).with_source(user);
        let (generation, _) = self.submit(prompt, options, Some(Machine::Json(machine)), None)?;
        Ok((json_answer(schema, &generation)?, generation))
    }

    /// Chooses one of `labels` (as [`Generator::classify`]).
    pub fn classify<S: AsRef<str>>(
        &self,
        system: Option<&str>,
        user: &str,
        labels: &[S],
        options: &GenerateOptions,
    ) -> Result<(String, Generation), GenerateError> {
        if labels.iter().all(|l| l.as_ref().is_empty()) {
            return Err(GenerateError::NoLabels);
        }
        let prompt = self.prompt(system, user)?;
        let machine = Machine::Label(LabelMachine::new(labels));
        let (generation, machine) = self.submit(prompt, options, Some(machine), None)?;
        match machine {
            Some(Machine::Label(machine)) => Ok((label_answer(&machine, &generation)?, generation)),
            _ => Err(GenerateError::Stopped(
                "the worker returned no label machine".into(),
            )),
        }
    }

    /// Queues one request and waits for its end.
    fn submit(
        &self,
        prompt: ChatPrompt,
        options: &GenerateOptions,
        machine: Option<Machine>,
        sink: Option<BatchSink>,
    ) -> Result<(Generation, Option<Machine>), GenerateError> {
        let started = Instant::now();
        let mut warnings = Vec::new();
        let (prompt, budget) = fit(
            prompt,
            options.max_tokens,
            self.max_positions,
            &mut warnings,
        )?;
        let decoding = Decoding::new(options, started, budget, prompt.ids.len(), warnings);
        let (reply, answer) = mpsc::channel();
        {
            let mut queue = self.shared.lock();
            if queue.closed {
                return Err(GenerateError::Stopped(
                    "the batch worker is not running".into(),
                ));
            }
            if queue.waiting.len() >= self.capacity {
                return Err(GenerateError::QueueFull {
                    capacity: self.capacity,
                });
            }
            queue.waiting.push_back(Job {
                prompt,
                decoding,
                machine,
                sink,
                reply,
            });
        }
        self.shared.wake.notify_one();
        answer.recv().unwrap_or_else(|_| {
            Err(GenerateError::Stopped(
                "the batch worker ended before the request".into(),
            ))
        })
    }
}

impl Drop for BatchGenerator {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A request in the batch.
struct Active {
    job: Job,
    /// Tokens to run at the next step (the prompt's uncached part, then one token at a time).
    pending: Vec<u32>,
    /// Position of `pending[0]`.
    start: usize,
}

/// The worker thread's state: the model, what each slot's cache holds, the active requests.
struct Worker {
    lm: Box<dyn BatchLm>,
    text: Arc<Text>,
    shared: Arc<Shared>,
    /// Token ids in each slot's cache (mirrors [`BatchLm::cached_len`]).
    cached: Vec<Vec<u32>>,
    active: Vec<Option<Active>>,
}

impl Worker {
    fn new(lm: Box<dyn BatchLm>, first: Vec<u32>, text: Arc<Text>, shared: Arc<Shared>) -> Self {
        let slots = lm.slots();
        let mut cached = vec![Vec::new(); slots];
        if lm.cached_len(0) == first.len() {
            cached[0] = first;
        }
        Worker {
            lm,
            text,
            shared,
            cached,
            active: (0..slots).map(|_| None).collect(),
        }
    }

    fn run(mut self) {
        while let Some(jobs) = self.next_jobs() {
            for job in jobs {
                self.admit(job);
            }
            self.step();
        }
    }

    /// Waits until there is work; takes as many waiting jobs as there are free slots. `None`
    /// once the generator is closed and nothing is active.
    fn next_jobs(&self) -> Option<Vec<Job>> {
        let busy = self.active.iter().any(Option::is_some);
        let free = self.active.iter().filter(|a| a.is_none()).count();
        let mut queue = self.shared.lock();
        loop {
            if free > 0 && !queue.waiting.is_empty() {
                let take = free.min(queue.waiting.len());
                return Some(queue.waiting.drain(..take).collect());
            }
            if busy {
                return Some(Vec::new());
            }
            if queue.closed {
                return None;
            }
            queue = self
                .shared
                .wake
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Puts `job` in a free slot, reusing or copying the longest cached prefix of its prompt;
    /// runs a system prompt no slot holds on its own first, so the next requests can copy it.
    fn admit(&mut self, job: Job) {
        if let Some(reason) = job.decoding.interrupted() {
            job.finish(reason);
            return;
        }
        let ids = &job.prompt.ids;
        let common = |cached: &Vec<u32>| cached.iter().zip(ids).take_while(|(a, b)| a == b).count();
        let Some((slot, own)) = (0..self.active.len())
            .filter(|&s| self.active[s].is_none())
            .map(|s| (s, common(&self.cached[s])))
            .max_by_key(|&(s, c)| (c, std::cmp::Reverse(s)))
        else {
            job.fail(GenerateError::Stopped(
                "no free slot for the request".into(),
            ));
            return;
        };
        // At least one token must run to get logits.
        let limit = ids.len() - 1;
        let mut have = own.min(limit);
        self.cached[slot].truncate(have);
        if let Some((from, best)) = (0..self.cached.len())
            .filter(|&s| s != slot)
            .map(|s| (s, common(&self.cached[s]).min(limit)))
            .max_by_key(|&(_, c)| c)
        {
            if best > have {
                match self.lm.copy_prefix(from, slot, have..best) {
                    Ok(()) => {
                        have = best;
                        self.cached[slot] = ids[..best].to_vec();
                    }
                    Err(error) => tracing::debug!("prefix not copied: {error}"),
                }
            }
        }
        let reused = have;
        let split = job.prompt.stable_prefix_len;
        if have < split && split < ids.len() {
            let run = SlotRun {
                slot,
                tokens: &ids[have..split],
                start: have,
                logits: false,
            };
            if let Err(error) = self.lm.forward_batch(&[run]) {
                self.cached[slot].clear();
                job.fail(error.into());
                return;
            }
            self.cached[slot] = ids[..split].to_vec();
            have = split;
        }
        let mut job = job;
        job.decoding.set_reused(reused);
        let pending = job.prompt.ids[have..].to_vec();
        self.active[slot] = Some(Active {
            job,
            pending,
            start: have,
        });
    }

    /// Runs every active request's pending tokens in one batch and takes each one's next step.
    fn step(&mut self) {
        let limit = self.lm.max_positions();
        for slot in 0..self.active.len() {
            let full = self.active[slot]
                .as_ref()
                .is_some_and(|a| a.start + a.pending.len() > limit);
            if full {
                if let Some(active) = self.active[slot].take() {
                    active.job.finish(StopReason::MaxTokens);
                }
            }
        }
        let slots: Vec<usize> = (0..self.active.len())
            .filter(|&s| self.active[s].is_some())
            .collect();
        if slots.is_empty() {
            return;
        }
        let runs: Vec<SlotRun<'_>> = slots
            .iter()
            .filter_map(|&slot| {
                self.active[slot].as_ref().map(|a| SlotRun {
                    slot,
                    tokens: &a.pending,
                    start: a.start,
                    logits: true,
                })
            })
            .collect();
        let result = self.lm.forward_batch(&runs);
        drop(runs);
        let mut logits = match result {
            Ok(logits) => logits,
            Err(error) => {
                let message = error.to_string();
                for &slot in &slots {
                    self.cached[slot].clear();
                    if let Some(active) = self.active[slot].take() {
                        active
                            .job
                            .fail(GenerateError::Lm(LmError::Forward(message.clone())));
                    }
                }
                return;
            }
        };
        let vocab = self.lm.vocab_size();
        let mut stepping: Vec<(usize, Active, &mut [f32])> = slots
            .iter()
            .zip(logits.chunks_mut(vocab))
            .filter_map(|(&slot, logits)| Some((slot, self.active[slot].take()?, logits)))
            .collect();
        // Each request picks its next token from its own logits (with a constraint over a large
        // vocabulary, a scan worth spreading over the cores): the same tokens in any order.
        let tokenizer = &self.text.tokenizer;
        let take_step = |(_, active, logits): &mut (usize, Active, &mut [f32])| {
            let job = &mut active.job;
            let constraint = job.machine.as_mut().map(Machine::constraint);
            let sink = job.sink.as_deref_mut().map(|s| s as &mut dyn FnMut(&str));
            job.decoding.step(logits, tokenizer, constraint, sink)
        };
        let steps: Vec<Step> = if stepping.len() > 1 {
            stepping.par_iter_mut().map(take_step).collect()
        } else {
            stepping.iter_mut().map(take_step).collect()
        };
        for ((slot, mut active, _), step) in stepping.into_iter().zip(steps) {
            let cached = &mut self.cached[slot];
            cached.truncate(active.start);
            cached.extend_from_slice(&active.pending);
            let job = &mut active.job;
            match step {
                Step::Token(next) => {
                    active.start = job.decoding.next_position();
                    active.pending = vec![next];
                    self.active[slot] = Some(active);
                }
                Step::Stop(reason) => active.job.finish(reason),
            }
        }
        self.lm.recycle_logits(logits);
    }
}

/// Ends the worker: closes the queue and drops the waiting jobs (their callers get
/// [`GenerateError::Stopped`]), also when the worker panics.
impl Drop for Worker {
    fn drop(&mut self) {
        let waiting = {
            let mut queue = self.shared.lock();
            queue.closed = true;
            std::mem::take(&mut queue.waiting)
        };
        drop(waiting);
    }
}
