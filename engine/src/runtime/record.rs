//! What the engine writes into the store: instance envelopes, history records, table entries.
//!
//! Encoded as compact MessagePack: structs as arrays of their fields in declaration order, no
//! field names. JSON cost about half of the CPU time of a short instance, nearly all of it
//! writing and escaping field names; this form writes only values. The price: positions must
//! hold, so only a struct's *last* field may be skipped when empty (and it needs
//! `#[serde(default)]`), and a change to a stored type's fields changes the store layout, so it
//! bumps [`crate::store::SCHEMA_VERSION`].

use crate::executor::{Event, Instance};
use crate::llm::LlmOutput;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The stored form of an instance: the executor's state plus what the engine keeps beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredInstance {
    /// The process the instance runs.
    pub process_id: String,
    /// The deployed version it started on (it keeps it for life).
    pub version: u32,
    /// The executor state.
    pub instance: Instance,
    /// Number of history entries written so far (one per turn, each holding that turn's records).
    pub history_len: u64,
    /// Engine incidents (handler retries exhausted, bad timer definitions) awaiting an operator.
    pub incidents: Vec<EngineIncident>,
    /// Armed timers of open timer waits.
    pub timers: Vec<ArmedTimer>,
    /// Failed calls of jobs still open, so that a restart keeps their retry budget and backoff.
    pub attempts: Vec<JobAttempts>,
    /// The business key given at start (an order number, ...), for finding the instance.
    pub business_key: Option<String>,
    /// When the instance started (ms since the Unix epoch, engine clock).
    pub started_ms: u64,
    /// When it ended, once it has.
    pub ended_ms: Option<u64>,
    /// When each open wait began (what a task list shows as "created").
    #[serde(default)]
    pub opened: Vec<WaitOpened>,
    /// For a call activity's child instance: the call activity's wait in the calling instance.
    /// (A trailing field with a default: snapshots written before it read as `None`.)
    #[serde(default)]
    pub caller: Option<CallerLink>,
}

/// Where a child instance reports its end: the calling instance's call-activity wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallerLink {
    /// The calling instance.
    pub instance: String,
    /// The call activity's wait in it.
    pub activation: u64,
    /// How deep the call chain is: 1 for a child of a top-level instance.
    pub depth: u32,
}

/// When a wait began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WaitOpened {
    /// The wait's activation.
    pub activation: u64,
    /// When it began (ms since the Unix epoch, engine clock).
    pub at_ms: u64,
}

/// The failed calls of an open job (or LLM step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JobAttempts {
    /// The job's activation.
    pub activation: u64,
    /// How many calls failed so far.
    pub failed: u32,
    /// When the next call is due (ms since the Unix epoch).
    pub retry_at_ms: u64,
}

/// The next tick of a timer start event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredSchedule {
    /// The process.
    pub process_id: String,
    /// The version whose instances the ticks start (the latest deployed).
    pub version: u32,
    /// The timer start event.
    pub node: String,
    /// The timer as written (a redeployment with the same timer keeps the schedule's place).
    pub timer: crate::model::Timer,
    /// When the next tick is due (ms since the Unix epoch).
    pub next_due_ms: u64,
    /// Which occurrence of the timer that tick is (1-based; bounded cycles stop after the last).
    pub occurrence: u32,
}

/// An armed timer of a timer wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ArmedTimer {
    /// The timer wait's activation.
    pub activation: u64,
    /// When it is due (ms since the Unix epoch).
    pub due_ms: u64,
    /// Which occurrence of the timer that is (1-based; a repeating boundary timer counts up).
    #[serde(default = "first_occurrence")]
    pub occurrence: u32,
}

fn first_occurrence() -> u32 {
    1
}

/// A problem the engine could not get past by itself; an operator retries or resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineIncident {
    /// The wait concerned.
    pub activation: u64,
    /// Its node.
    pub node: String,
    /// What went wrong (the handler's last error).
    pub message: String,
    /// How many calls were made.
    pub attempts: u32,
}

/// One entry of an instance's history (audit log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// When it happened (ms since the Unix epoch, engine clock).
    pub at_ms: u64,
    /// What happened.
    pub entry: HistoryEntry,
}

/// What a history record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum HistoryEntry {
    /// Something the executor did (node entered/completed, token moved, variables changed...).
    Executor {
        /// The executor's event.
        event: Event,
    },
    /// A handler call failed.
    JobFailed {
        /// The service task.
        node: String,
        /// Its activation.
        activation: u64,
        /// Which call failed (1-based).
        attempt: u32,
        /// The handler's error.
        error: String,
        /// When the next call is due, if any.
        retry_at_ms: Option<u64>,
    },
    /// A language-model step was answered (recorded in the turn that completes its wait).
    LlmCalled {
        /// The LLM task.
        node: String,
        /// Its activation.
        activation: u64,
        /// Which call succeeded (1-based).
        attempt: u32,
        /// The rendered prompt.
        prompt: String,
        /// What the model produced.
        output: LlmOutput,
        /// Model identifier.
        model_id: String,
        /// SHA-256 of the model file, when known.
        model_sha256: Option<String>,
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
        /// Wall time of the call in milliseconds.
        elapsed_ms: u64,
        /// The generator's warnings (truncated input, forced completion).
        warnings: Vec<String>,
    },
    /// A handler reported a business error: the BPMN error `code` was thrown on its task.
    JobErrorThrown {
        /// The service task.
        node: String,
        /// Its activation.
        activation: u64,
        /// The BPMN error code.
        code: String,
        /// The handler's message.
        message: String,
    },
    /// An incident was raised.
    IncidentRaised {
        /// The incident.
        incident: EngineIncident,
    },
    /// A business rule asked for a notification or event during the turn (it is in the turn's
    /// outbox too).
    RuleEffect {
        /// What the rule asked for.
        effect: crate::rules::Effect,
    },
    /// An operator retried an incident.
    IncidentRetried {
        /// The wait concerned.
        activation: u64,
    },
    /// An operator resolved an incident by completing its wait.
    IncidentResolved {
        /// The wait concerned.
        activation: u64,
    },
    /// A timer was armed.
    TimerArmed {
        /// The timer node.
        node: String,
        /// Its activation.
        activation: u64,
        /// When it is due.
        due_ms: u64,
    },
    /// A timer start event's tick started the instance.
    StartedByTimer {
        /// The timer start event.
        node: String,
        /// The tick (its due time, ms since the Unix epoch).
        due_ms: u64,
        /// Which occurrence of the timer it is (1-based).
        occurrence: u32,
    },
    /// A message no instance waited for started the instance at a message start event.
    StartedByMessage {
        /// The message start event.
        node: String,
        /// Message name.
        name: String,
        /// Correlation key given with the message.
        correlation_key: Option<String>,
    },
    /// A broadcast signal started the instance at a signal start event.
    StartedBySignal {
        /// The signal start event.
        node: String,
        /// Signal name.
        name: String,
    },
    /// A timer fired.
    TimerFired {
        /// The timer node.
        node: String,
        /// Its activation.
        activation: u64,
    },
    /// A message was correlated to a wait.
    MessageCorrelated {
        /// Message name.
        name: String,
        /// Correlation key.
        correlation_key: Option<String>,
        /// The wait that received it.
        activation: u64,
    },
    /// A signal reached a wait.
    SignalReceived {
        /// Signal name.
        name: String,
        /// The wait that received it.
        activation: u64,
    },
}

impl HistoryEntry {
    /// The record of a language-model call that answered `wait` (call number `attempt`).
    pub fn llm_called(
        wait: &crate::executor::Wait,
        attempt: u32,
        prompt: String,
        response: crate::llm::LlmResponse,
    ) -> Self {
        HistoryEntry::LlmCalled {
            node: wait.node.clone(),
            activation: wait.activation,
            attempt,
            prompt,
            output: response.output,
            model_id: response.model_id,
            model_sha256: response.model_sha256,
            prompt_tokens: response.prompt_tokens,
            completion_tokens: response.completion_tokens,
            elapsed_ms: response.elapsed.as_millis() as u64,
            warnings: response.warnings,
        }
    }
}

/// How one turn's history is stored: the turn's time once, then its entries in order
/// (read back as one [`HistoryRecord`] per entry).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredTurn {
    /// When the turn was committed (ms since the Unix epoch, engine clock).
    pub at_ms: u64,
    /// What happened, in order.
    pub entries: Vec<HistoryEntry>,
}

impl StoredTurn {
    /// The turn's entries as history records.
    pub fn into_records(self) -> impl Iterator<Item = HistoryRecord> {
        let at_ms = self.at_ms;
        self.entries
            .into_iter()
            .map(move |entry| HistoryRecord { at_ms, entry })
    }
}

/// A message kept until a subscriber arrives or it expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BufferedMessage {
    /// The payload variables.
    pub variables: Map<String, Value>,
    /// When it expires (ms since the Unix epoch).
    pub expires_ms: u64,
}

/// A deployed definition as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredDeployment {
    pub process_id: String,
    pub version: u32,
    pub content_hash: String,
    pub definitions: crate::model::Definitions,
    /// When it was deployed (ms since the Unix epoch, engine clock).
    pub deployed_ms: u64,
}

/// Encodes a record.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    thread_local! {
        /// Scratch space: encoding into a grown buffer and copying the result out once costs
        /// less than growing a fresh vector a few bytes at a time, and the stored copy is exact.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut buffer = scratch.borrow_mut();
        buffer.clear();
        // Serializing these plain data types into a Vec cannot fail (no custom serializers that
        // error, no sequences of unknown length).
        rmp_serde::encode::write(&mut *buffer, value)
            .unwrap_or_else(|e| panic!("encoding a store record failed: {e}"));
        let encoded = buffer.to_vec();
        if buffer.capacity() > 1 << 20 {
            *buffer = Vec::new(); // do not keep one huge record's worth of memory per thread
        }
        encoded
    })
}

/// Decodes a record, naming what it was on failure.
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("stored {what} cannot be read: {e}"))
}

/// Key of a message subscription: `m`, name, correlation key, instance, activation.
pub(crate) fn message_subscription_key(
    name: &str,
    key: Option<&str>,
    instance: &str,
    activation: u64,
) -> Vec<u8> {
    let mut k = message_subscription_prefix(name, key);
    k.extend_from_slice(instance.as_bytes());
    k.push(0);
    k.extend_from_slice(&activation.to_be_bytes());
    k
}

/// Prefix of the message subscriptions for a name and correlation key.
pub(crate) fn message_subscription_prefix(name: &str, key: Option<&str>) -> Vec<u8> {
    let mut k = b"m\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(key.unwrap_or("").as_bytes());
    k.push(0);
    k
}

/// Key of a signal subscription: `s`, name, instance, activation.
pub(crate) fn signal_subscription_key(name: &str, instance: &str, activation: u64) -> Vec<u8> {
    let mut k = signal_subscription_prefix(name);
    k.extend_from_slice(instance.as_bytes());
    k.push(0);
    k.extend_from_slice(&activation.to_be_bytes());
    k
}

/// Prefix of the signal subscriptions for a name.
pub(crate) fn signal_subscription_prefix(name: &str) -> Vec<u8> {
    let mut k = b"s\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// A subscription's value: who waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Subscriber {
    pub instance: String,
    pub activation: u64,
}

/// Key of an inbox entry: the shard of the waiting instance (one byte, so an owner reads its
/// shards' entries by prefix), the instance, a zero byte and the wait's activation. A wait takes
/// one message or signal, so it has at most one entry.
pub(crate) fn inbox_key(instance: &str, activation: u64) -> Vec<u8> {
    let mut k = vec![crate::shard::shard_of(instance) as u8];
    k.extend_from_slice(instance.as_bytes());
    k.push(0);
    k.extend_from_slice(&activation.to_be_bytes());
    k
}

/// A message or signal for a wait in a shard another engine owns, kept in the inbox until the
/// owner delivers it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InboxEntry {
    /// Who waits.
    pub to: Subscriber,
    /// What arrives.
    pub delivery: Delivery,
    /// The variables it carries.
    pub variables: Map<String, Value>,
}

/// What an inbox entry delivers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Delivery {
    /// A correlated message.
    Message {
        name: String,
        correlation_key: Option<String>,
    },
    /// A broadcast signal.
    Signal { name: String },
    /// A request to look for a buffered message (sent by an engine that buffered one while the
    /// wait was being subscribed on another).
    CheckBuffered {
        name: String,
        correlation_key: Option<String>,
    },
}

/// Prefix of buffered messages for a name and correlation key.
pub(crate) fn buffered_prefix(name: &str, key: Option<&str>) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.unwrap_or("").as_bytes());
    k.push(0);
    k
}
