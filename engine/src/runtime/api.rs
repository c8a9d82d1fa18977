//! The types of the engine API: errors, instance and wait views, events, options.
//!
//! Invariant: these are plain data; nothing here touches the store or the running state.

use super::record::{EngineIncident, HistoryRecord, StoredInstance};
use super::versions::Deployed;
use crate::diagnostics::Diagnostic;
use crate::executor::{ExecError, ExecutionHooks};
use crate::model::RetryPolicy;
use crate::rules::Effect as RuleEffect;
use crate::store::StoreError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// Errors of the engine API.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The definitions do not compile.
    #[error("the definitions do not compile:\n{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Compile(Vec<Diagnostic>),
    /// No deployed process has this id.
    #[error("no process `{0}` is deployed")]
    UnknownProcess(String),
    /// No instance has this id.
    #[error("no instance `{0}`")]
    UnknownInstance(String),
    /// The instance has no open wait with this activation.
    #[error("instance `{instance}` has no open {expected} with activation {activation}")]
    NoSuchWait {
        /// The instance.
        instance: String,
        /// The activation asked for.
        activation: u64,
        /// What kind of wait was expected.
        expected: &'static str,
    },
    /// The executor refused the call (guard rejection, instance ended, ...).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Stored data cannot be read by this build.
    #[error("{0}")]
    Decode(String),
}

/// Where a correlated message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Correlation {
    /// It completed this wait.
    Delivered {
        /// The receiving instance.
        instance: String,
        /// The wait's activation.
        activation: u64,
    },
    /// Nobody waited for it, and it started a new instance at a message start event.
    Started {
        /// The new instance.
        instance: String,
    },
    /// Nobody waits for it yet: it is kept until it expires.
    Buffered {
        /// When it expires (ms since the Unix epoch).
        expires_ms: u64,
    },
}

/// A wait as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitInfo {
    /// The activation to complete.
    pub activation: u64,
    /// The waiting node.
    pub node: String,
    /// `job`, `user`, `message`, `timer`, `signal`, `llm`.
    pub kind: &'static str,
    /// The idempotency key.
    pub idempotency_key: String,
}

/// An instance as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceInfo {
    /// Instance id.
    pub id: String,
    /// Process id.
    pub process_id: String,
    /// The deployed version it runs.
    pub version: u32,
    /// `waiting`, `completed`, `failed`, `terminated`.
    pub status: &'static str,
    /// Process variables.
    pub variables: Map<String, Value>,
    /// Completed nodes in order.
    pub path: Vec<String>,
    /// Open waits.
    pub waiting_on: Vec<WaitInfo>,
    /// Executor incidents (`node`, `message`, `at`).
    pub incidents: Vec<crate::executor::Incident>,
    /// Engine incidents awaiting an operator.
    pub engine_incidents: Vec<EngineIncident>,
}

impl InstanceInfo {
    pub(super) fn of(stored: &StoredInstance) -> Self {
        let inst = &stored.instance;
        Self {
            id: inst.id().to_string(),
            process_id: stored.process_id.clone(),
            version: stored.version,
            status: inst.status().as_str(),
            variables: inst.variables().clone(),
            path: inst.path().to_vec(),
            waiting_on: inst
                .waits()
                .iter()
                .map(|w| WaitInfo {
                    activation: w.activation,
                    node: w.node.clone(),
                    kind: w.kind.name(),
                    idempotency_key: w.idempotency_key.clone(),
                })
                .collect(),
            incidents: inst.incidents().to_vec(),
            engine_incidents: stored.incidents.clone(),
        }
    }

    /// Whether the instance has ended (completed, failed or terminated).
    pub fn ended(&self) -> bool {
        !matches!(self.status, "waiting" | "running")
    }
}

/// What [`Engine::subscribe`] streams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineEvent {
    /// The instance concerned.
    pub instance: String,
    /// The history record (already durable when published).
    pub record: HistoryRecord,
}

/// Tunables of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Complete user/manual tasks and jobs without a registered handler at once (as
    /// `flowbot run --auto-complete` does).
    pub auto_complete: bool,
    /// How long a message with no subscriber is kept.
    pub message_ttl: Duration,
    /// Retry policy of service tasks that declare none.
    pub default_retry: RetryPolicy,
    /// Capacity of the event stream of [`Engine::subscribe`] (slow subscribers lag, they never
    /// slow the engine).
    pub event_capacity: usize,
    /// Schedule timer start events: a deployment with a timer start event stores its next tick,
    /// and each tick starts an instance of the latest version. Off for a driver that starts the
    /// one instance it runs itself (`flowbot run`).
    pub schedule_timer_starts: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            auto_complete: false,
            message_ttl: Duration::from_secs(3600),
            default_retry: RetryPolicy {
                retries: 3,
                initial_delay_ms: 1_000,
                max_delay_ms: 60_000,
            },
            event_capacity: 4096,
            schedule_timer_starts: true,
        }
    }
}

/// Hooks shared by the engine's tasks.
pub type SharedHooks = Arc<dyn ExecutionHooks + Send + Sync>;

/// Receives the effects business rules asked for (`notify`, `emit`) once their step is durable,
/// with the instance they came from. An `Err` keeps the entry in the outbox for the next delivery.
pub type EffectSink = Arc<dyn Fn(&str, &RuleEffect) -> Result<(), String> + Send + Sync>;

/// The result of a deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The deployed (or already deployed) version.
    pub deployed: Arc<Deployed>,
    /// `false` when identical content was deployed before and its version is returned.
    pub created: bool,
    /// Warnings from the compiler.
    pub warnings: Vec<Diagnostic>,
}
