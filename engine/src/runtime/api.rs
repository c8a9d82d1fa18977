//! The types of the engine API: errors, instance and wait views, events, options.
//!
//! Invariant: these are plain data; nothing here touches the store or the running state.

use super::record::{EngineIncident, HistoryRecord, StoredInstance};
use super::retention::Retention;
use super::versions::Deployed;
use crate::diagnostics::Diagnostic;
use crate::executor::{ExecError, ExecutionHooks, InstanceStatus, Wait, WaitKind, WaitType};
use crate::model::RetryPolicy;
use crate::rules::Effect as RuleEffect;
use crate::shard::ShardSet;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Errors of the engine API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    /// The instance lives in a shard this engine does not own: another engine sharing the store
    /// serves it (or nobody, until one takes the shard).
    #[error("instance `{instance}` is in shard {shard}, which this engine does not own")]
    NotOwned {
        /// The instance.
        instance: String,
        /// Its shard.
        shard: u32,
    },
    /// The engine owns no shard, so it cannot start instances.
    #[error("this engine owns no shard, so it cannot start instances")]
    NoShards,
}

/// Where a correlated message went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
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
    /// The instance waiting for it lives in a shard another engine owns: it is kept in the
    /// store's inbox, and that engine delivers it.
    Queued {
        /// The receiving instance.
        instance: String,
        /// The wait's activation.
        activation: u64,
    },
    /// Nobody waits for it yet: it is kept until it expires.
    Buffered {
        /// When it expires (ms since the Unix epoch).
        expires_ms: u64,
    },
}

/// A wait as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitInfo {
    /// The activation to complete.
    pub activation: u64,
    /// The waiting node.
    pub node: String,
    /// What it waits for.
    pub kind: WaitType,
    /// The idempotency key (`instance/node/activation`).
    pub idempotency_key: String,
    /// When the wait began (ms since the Unix epoch), when known.
    pub since_ms: Option<u64>,
    /// Handler name of a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Message name of a message wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Correlation key of a message wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// Signal name of a signal wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// The condition as written, for a conditional-event wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The timer as written (or as its expression gave it when the wait began), for a timer wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<String>,
    /// When an armed timer is due (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<u64>,
    /// For a call activity: the child instance it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

/// An instance as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Instance id.
    pub id: String,
    /// Process id.
    pub process_id: String,
    /// The deployed version it runs.
    pub version: u32,
    /// The business key given at start.
    pub business_key: Option<String>,
    /// Where it stands.
    pub status: InstanceStatus,
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
    /// When it started (ms since the Unix epoch, engine clock).
    pub started_ms: u64,
    /// When it ended, once it has.
    pub ended_ms: Option<u64>,
    /// Incidents of the instances its call activities wait for (and of those they call in
    /// turn): a called instance's incident shows on its caller. Filled in where the engine reads
    /// an instance ([`crate::runtime::Engine::instance`], listings); empty in the answers of
    /// turns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub child_incidents: Vec<ChildIncident>,
}

/// An incident of a called instance, as its caller shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildIncident {
    /// The caller's call activity that waits for it.
    pub call: String,
    /// The instance that has the incident: the child, or an instance the child calls.
    pub instance: String,
    /// The node concerned, in that instance.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// For an engine incident (a job that ran out of retries), its wait in `instance`, to retry
    /// or resolve there; `None` for an executor incident (a failed step).
    pub activation: Option<u64>,
}

impl InstanceInfo {
    pub(super) fn of(stored: &StoredInstance) -> Self {
        let inst = &stored.instance;
        Self {
            id: inst.id().to_string(),
            process_id: stored.process_id.clone(),
            version: stored.version,
            business_key: stored.business_key.clone(),
            status: inst.status(),
            variables: inst.variables().clone(),
            path: inst.path().to_vec(),
            waiting_on: inst
                .waits()
                .iter()
                .map(|wait| WaitInfo::of(stored, wait))
                .collect(),
            incidents: inst.incidents().to_vec(),
            engine_incidents: stored.incidents.clone(),
            started_ms: stored.started_ms,
            ended_ms: stored.ended_ms,
            child_incidents: Vec::new(),
        }
    }

    /// The answer for an instance whose record is dropped next (it ended in this turn): its
    /// variables and path are moved into the answer, not cloned.
    pub(super) fn of_final(stored: &mut StoredInstance) -> Self {
        let (variables, path) = stored.instance.take_variables_and_path();
        Self {
            variables,
            path,
            ..Self::of(stored)
        }
    }

    /// Whether the instance has ended (completed, failed or terminated).
    pub fn ended(&self) -> bool {
        !self.status.is_active()
    }
}

impl WaitInfo {
    fn of(stored: &StoredInstance, wait: &Wait) -> Self {
        let mut info = WaitInfo {
            activation: wait.activation,
            node: wait.node.clone(),
            kind: wait.kind.wait_type(),
            idempotency_key: wait.idempotency_key.clone(),
            since_ms: stored
                .opened
                .iter()
                .find(|o| o.activation == wait.activation)
                .map(|o| o.at_ms),
            handler: None,
            message: None,
            correlation_key: None,
            signal: None,
            condition: None,
            timer: None,
            due_ms: None,
            child: None,
        };
        match &wait.kind {
            WaitKind::Job { handler } => info.handler = handler.clone(),
            WaitKind::Message {
                name,
                correlation_key,
            } => {
                info.message = name.clone();
                info.correlation_key = correlation_key.clone();
            }
            WaitKind::Signal { name } => info.signal = name.clone(),
            WaitKind::Timer { definition } => {
                info.timer = Some(definition.expression.source.clone());
                info.due_ms = stored
                    .timers
                    .iter()
                    .find(|t| t.activation == wait.activation)
                    .map(|t| t.due_ms);
            }
            WaitKind::Condition { condition, .. } => info.condition = Some(condition.clone()),
            WaitKind::Call { .. } => {
                info.child = Some(super::calls::child_instance_id(
                    stored.instance.id(),
                    wait.activation,
                ))
            }
            WaitKind::User { .. } | WaitKind::Llm { .. } => {}
        }
        info
    }
}

/// Which instances a listing returns; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceFilter {
    /// Only instances in this state.
    pub status: Option<InstanceStatus>,
    /// Only instances of this process.
    pub process_id: Option<String>,
    /// Only instances with this business key.
    pub business_key: Option<String>,
}

impl InstanceFilter {
    /// Whether `info` passes the filter.
    pub fn matches(&self, info: &InstanceInfo) -> bool {
        self.status.is_none_or(|status| status == info.status)
            && self
                .process_id
                .as_deref()
                .is_none_or(|p| p == info.process_id)
            && self
                .business_key
                .as_deref()
                .is_none_or(|k| info.business_key.as_deref() == Some(k))
    }
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// Pass it as the cursor of the next call; `None` when this was the last page. A page may
    /// hold fewer items than asked for (each call examines a bounded number of records) and
    /// still have a next one.
    pub next_cursor: Option<String>,
}

/// What starts an instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartRequest {
    /// The process (its latest deployed version starts).
    pub process_id: String,
    /// The starting variables.
    pub variables: Map<String, Value>,
    /// A key of the business (an order number, ...) to find the instance by.
    pub business_key: Option<String>,
}

/// An open user, manual or language-model task, as a task list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's id: `instance:activation`.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// Its process.
    pub process_id: String,
    /// The instance's business key.
    pub business_key: Option<String>,
    /// The task's node.
    pub node: String,
    /// The node's name, when it has one.
    pub name: Option<String>,
    /// `user`, or `llm` for a language-model step that waits for a person (no model attached).
    pub kind: WaitType,
    /// When it opened (ms since the Unix epoch).
    pub created_ms: Option<u64>,
    /// The activation to complete.
    pub activation: u64,
    /// The task's form (the node's `form`): each variable with its current value, `null` when
    /// unset, in the order the process lists them.
    pub form: Map<String, Value>,
}

/// Which tasks a listing returns; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only tasks of this process.
    pub process_id: Option<String>,
    /// Only tasks at this node.
    pub node: Option<String>,
    /// Only tasks of this instance.
    pub instance: Option<String>,
}

/// An open incident (a job whose retries ran out, a timer that cannot be armed), as an
/// operator's list shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentInfo {
    /// The incident's id: `instance:activation`.
    pub id: String,
    /// The instance.
    pub instance: String,
    /// Its process.
    pub process_id: String,
    /// The instance's business key.
    pub business_key: Option<String>,
    /// The incident.
    #[serde(flatten)]
    pub incident: EngineIncident,
}

/// The id of a task or incident: its instance and activation, `instance:activation`.
pub fn wait_id(instance: &str, activation: u64) -> String {
    format!("{instance}:{activation}")
}

/// Splits a task or incident id from [`wait_id`] into instance and activation.
pub fn parse_wait_id(id: &str) -> Option<(&str, u64)> {
    let (instance, activation) = id.rsplit_once(':')?;
    Some((instance, activation.parse().ok()?)).filter(|(instance, _)| !instance.is_empty())
}

/// What [`Engine::subscribe`] streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineEvent {
    /// The instance concerned.
    pub instance: String,
    /// The history record (already durable when published).
    pub record: HistoryRecord,
}

/// Completes at once the waits that need nothing from outside: user, manual and receive tasks,
/// and jobs without a registered handler (what `flowbot run --auto-complete` does).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AutoComplete {
    /// The variables a task is completed with, by node id (what a clerk would fill in).
    pub outputs: HashMap<String, Map<String, Value>>,
}

/// Tunables of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Auto-completion (off by default).
    pub auto_complete: Option<AutoComplete>,
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
    /// How long ended instances and notifications are kept.
    pub retention: Retention,
    /// The shards whose instances the engine serves from the start (all of them by default;
    /// several engines on one store each own some, see [`Engine::acquire_shards`]).
    pub shards: ShardSet,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            auto_complete: None,
            message_ttl: Duration::from_secs(3600),
            default_retry: RetryPolicy {
                retries: 3,
                initial_delay_ms: 1_000,
                max_delay_ms: 60_000,
            },
            event_capacity: 4096,
            schedule_timer_starts: true,
            retention: Retention::default(),
            shards: ShardSet::ALL,
        }
    }
}

/// Hooks shared by the engine's tasks.
pub type SharedHooks = Arc<dyn ExecutionHooks + Send + Sync>;

/// Receives the effects business rules asked for (`notify`, `emit`) once their step is durable,
/// with the instance they came from, in notification-log order, at least once. An `Err` offers
/// the same entry again a second later.
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
