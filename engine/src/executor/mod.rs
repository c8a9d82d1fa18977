//! The executor: a deterministic, synchronous state machine that runs one instance of a
//! [`CompiledProcess`] with BPMN token semantics.
//!
//! Invariants:
//! - No I/O, no clock, no randomness, no async: the same calls on the same instance give the same
//!   [`Step`]s, so the durable layer can checkpoint the [`Instance`] (serde) after every call and
//!   replay safely.
//! - Between calls no token is in flight: every live token is parked in a [`Wait`], in a join, or
//!   inside a running subprocess scope.
//! - Tokens are processed first in, first out; gateways fork in document order of their flows;
//!   exclusive gateways test conditions in document order.
//! - Nothing panics on bad input: failing scripts and conditions, unmatched gateways, stuck joins
//!   and runaway loops become [`Incident`]s with `file:line:col`, and the instance fails.
//!
//! Driving it: [`Instance::start`] runs until every token waits or the instance ends; the driver
//! then completes waits with [`Instance::complete`] (user tasks, jobs, messages, timers, signals)
//! or fails jobs with [`Instance::fail_job`]. Each call returns a [`Step`]: what happened, as data.

mod hooks;
mod machine;

pub use hooks::{ExecutionHooks, HookContext, HookUpdates, NoHooks};

use crate::graph::{CompiledProcess, ThrownEvent};
use crate::model::{LlmTask, Timer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The life-cycle state of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStatus {
    /// Tokens are moving (only inside a call).
    Running,
    /// Every live token waits for the driver.
    Waiting,
    /// Ended normally (including through a terminate end event).
    Completed,
    /// An incident stopped it.
    Failed,
    /// Cancelled from outside ([`Instance::terminate`]).
    Terminated,
}

impl InstanceStatus {
    /// Whether the instance can still move.
    pub fn is_active(self) -> bool {
        matches!(self, InstanceStatus::Running | InstanceStatus::Waiting)
    }

    /// The lowercase name (`waiting`, `completed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Running => "running",
            InstanceStatus::Waiting => "waiting",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Terminated => "terminated",
        }
    }
}

/// A live scope: the process itself (id 0) or a running embedded subprocess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeState {
    /// Scope instance id (0: the process).
    pub id: u64,
    /// Enclosing scope instance.
    pub parent: Option<u64>,
    /// The subprocess node that runs this scope.
    pub subprocess: Option<String>,
    /// The activation of that subprocess node.
    pub activation: Option<u64>,
    /// Variables local to the scope.
    pub variables: Map<String, Value>,
    /// For one run of a multi-instance task: which activity and which item.
    #[serde(default)]
    pub run: Option<RunOf>,
    /// The local variables of an activity with input/output mappings (`subprocess` names it).
    #[serde(default)]
    pub io: bool,
}

/// Identifies one run of a multi-instance task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOf {
    /// The activation of the multi-instance task.
    pub activity: u64,
    /// The index of the item (0-based).
    pub index: usize,
}

/// A multi-instance task in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiState {
    /// The task.
    pub node: String,
    /// The scope instance the task runs in.
    pub scope: u64,
    /// The task's activation.
    pub activation: u64,
    /// The items, one per run.
    pub items: Vec<Value>,
    /// How many runs were started.
    pub started: usize,
    /// How many runs completed.
    pub completed: usize,
    /// Each run's output, in item order (`null` until it completes).
    pub outputs: Vec<Value>,
}

/// Tokens that reached a join and wait for the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinState {
    /// The joining gateway.
    pub node: String,
    /// The scope instance.
    pub scope: u64,
    /// How many tokens arrived along each incoming flow (flow id, count).
    pub arrivals: Vec<(String, u32)>,
    /// A complex gateway whose activation condition held: it fired for this wave of tokens and
    /// absorbs the rest of them.
    #[serde(default)]
    pub fired: bool,
}

/// A completed activity that has a compensation handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensable {
    /// The activity.
    pub node: String,
    /// Its compensation handler.
    pub handler: String,
    /// The scope instance it belongs to (an enclosing one, once a subprocess without a handler
    /// of its own completed).
    pub scope: u64,
}

/// A compensation in progress: its handlers run one after another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationRun {
    /// The throwing event.
    pub node: String,
    /// Its activation.
    pub activation: u64,
    /// The scope instance it compensates.
    pub scope: u64,
    /// The handlers still to run, in order (reverse order of completion).
    pub pending: Vec<String>,
    /// The handler running now.
    pub running: Option<String>,
    /// What happens when every handler ran.
    pub then: AfterCompensation,
}

/// What a compensation's thrower does once compensation is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterCompensation {
    /// An intermediate throw event moves on.
    Continue,
    /// An end event ends its token.
    End,
    /// A cancel end event cancels its transaction; the transaction's cancel boundary fires.
    Cancel,
}

/// An activity with a standard loop, between its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// The activity.
    pub node: String,
    /// The scope instance it runs in.
    pub scope: u64,
    /// Runs completed so far.
    pub count: u64,
    /// The activation of the current run.
    pub activation: u64,
}

/// A node waiting for the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wait {
    /// The activation to complete (unique within the instance).
    pub activation: u64,
    /// The waiting node.
    pub node: String,
    /// The scope instance of the waiting token.
    pub scope: u64,
    /// What it waits for.
    pub kind: WaitKind,
    /// `instance/node/activation`: run a job at most once per key.
    pub idempotency_key: String,
    /// For events after an event-based gateway: the gateway's activation. Completing one of
    /// them cancels the others.
    #[serde(default)]
    pub race: Option<u64>,
    /// For a boundary event: the activation of the activity it is attached to. It is cancelled
    /// when the activity ends; firing an interrupting one cancels the activity.
    #[serde(default)]
    pub attached_to: Option<u64>,
}

/// What a wait waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WaitKind {
    /// A service job: the driver runs the handler and completes (or fails) the wait.
    Job {
        /// Handler name; `None` when the task names none.
        handler: Option<String>,
    },
    /// A user or manual task.
    User {
        /// `true` for a manual task.
        manual: bool,
    },
    /// A message, by name and correlation key.
    Message {
        /// Message name.
        name: Option<String>,
        /// The correlation key, evaluated when the wait began.
        correlation_key: Option<String>,
    },
    /// A timer; the durable layer owns time and completes it when due.
    Timer {
        /// The timer as written, or with the text its expression gave when the wait began.
        definition: Timer,
    },
    /// A signal, by name.
    Signal {
        /// Signal name.
        name: Option<String>,
    },
    /// A language-model step, run by the server.
    Llm {
        /// What to ask the model.
        task: Box<LlmTask>,
    },
    /// A call activity's child instance: the driver starts it (an instance of `process` at the
    /// version `binding` picks, with `variables`) and completes this wait with the child's end
    /// variables, or throws the child's uncaught BPMN error on it.
    Call {
        /// The called process id.
        process: String,
        /// Which deployed version runs.
        binding: crate::model::CallBinding,
        /// The child's start variables: those the call activity sees when it starts (its inputs
        /// included).
        variables: Map<String, Value>,
    },
    /// A conditional event; the executor itself re-evaluates it at the end of every step and
    /// fires it when the condition becomes true (nothing for the driver to do).
    Condition {
        /// The condition, as written.
        condition: String,
        /// Whether it held at the last evaluation (it fires on a change to true).
        satisfied: bool,
    },
}

impl Wait {
    /// Whether this is the timer of a non-interrupting boundary event or of a non-interrupting
    /// event subprocess: the kinds of wait that tick repeatedly (see [`Instance::tick_boundary`]).
    pub fn is_non_interrupting_boundary_timer(&self, process: &CompiledProcess) -> bool {
        use crate::graph::{Behavior, EventStart, WaitSpec};
        if !matches!(self.kind, WaitKind::Timer { .. }) {
            return false;
        }
        let Some(node) = process.node_index(&self.node) else {
            return false;
        };
        match &process.node(node).behavior {
            Behavior::Boundary(spec) => self.attached_to.is_some() && !spec.interrupting,
            Behavior::EventStart(EventStart::Wait(WaitSpec::Timer { .. })) => {
                let scope = process.node(node).scope;
                process.scopes[scope].subprocess.is_some_and(|esp| {
                    matches!(&process.node(esp).behavior, Behavior::EventSubProcess(spec) if !spec.interrupting)
                })
            }
            _ => false,
        }
    }
}

impl WaitKind {
    /// What kind of wait this is, without its details.
    pub fn wait_type(&self) -> WaitType {
        match self {
            WaitKind::Job { .. } => WaitType::Job,
            WaitKind::User { .. } => WaitType::User,
            WaitKind::Message { .. } => WaitType::Message,
            WaitKind::Timer { .. } => WaitType::Timer,
            WaitKind::Signal { .. } => WaitType::Signal,
            WaitKind::Llm { .. } => WaitType::Llm,
            WaitKind::Condition { .. } => WaitType::Condition,
            WaitKind::Call { .. } => WaitType::Call,
        }
    }

    /// A short name: `job`, `user`, `message`, `timer`, `signal`, `llm`, `condition`, `call`.
    pub fn name(&self) -> &'static str {
        self.wait_type().as_str()
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for WaitType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a wait waits for, without the details ([`WaitKind`] has them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitType {
    /// A service job.
    Job,
    /// A user or manual task.
    User,
    /// A message.
    Message,
    /// A timer.
    Timer,
    /// A signal.
    Signal,
    /// A language-model step.
    Llm,
    /// A conditional event waiting for its condition to become true.
    Condition,
    /// A call activity waiting for its child instance.
    Call,
}

impl WaitType {
    /// The lowercase name (`job`, `user`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitType::Job => "job",
            WaitType::User => "user",
            WaitType::Message => "message",
            WaitType::Timer => "timer",
            WaitType::Signal => "signal",
            WaitType::Llm => "llm",
            WaitType::Condition => "condition",
            WaitType::Call => "call",
        }
    }
}

/// A problem that stopped the instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The node concerned.
    pub node: String,
    /// What went wrong.
    pub message: String,
    /// `file:line:col` of the cause.
    pub at: String,
    /// The activation concerned, when there is one.
    pub activation: Option<u64>,
}

/// Something that happened during a call, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The instance started with these variables.
    InstanceStarted {
        /// The initial variables.
        variables: Map<String, Value>,
    },
    /// A token entered a node.
    NodeEntered {
        /// Node id.
        node: String,
        /// Activation id.
        activation: u64,
    },
    /// A node completed.
    NodeCompleted {
        /// Node id.
        node: String,
        /// Activation id.
        activation: u64,
    },
    /// A token moved along a flow.
    TokenMoved {
        /// Flow id.
        flow: String,
        /// Source node.
        from: String,
        /// Target node.
        to: String,
    },
    /// Variables changed (in the scope instance `scope`).
    VariablesChanged {
        /// The node that changed them (`None` at start).
        node: Option<String>,
        /// Scope instance.
        scope: u64,
        /// New values.
        changes: Map<String, Value>,
    },
    /// A wait began.
    WaitStarted {
        /// The wait.
        wait: Wait,
    },
    /// A wait was completed by the driver.
    WaitCompleted {
        /// Node id.
        node: String,
        /// Activation id.
        activation: u64,
    },
    /// A wait was dropped without completing (a boundary event of an activity that ended, the
    /// losing events of an event-based gateway, an interrupted or terminated scope).
    WaitCancelled {
        /// Node id.
        node: String,
        /// Activation id.
        activation: u64,
    },
    /// A BPMN error was thrown (by an error end event or a job).
    ErrorThrown {
        /// The throwing node.
        node: String,
        /// The error code.
        code: Option<String>,
    },
    /// An event was thrown to the outside.
    EventThrown {
        /// The throwing node.
        node: String,
        /// The event.
        event: ThrownEvent,
    },
    /// A terminate end event ended its scope.
    ScopeTerminated {
        /// The terminate end event.
        node: String,
        /// Scope instance.
        scope: u64,
    },
    /// An incident stopped the instance.
    IncidentRaised {
        /// The incident.
        incident: Incident,
    },
    /// The instance completed.
    InstanceCompleted,
    /// The instance was cancelled from outside.
    InstanceTerminated,
}

/// What one driving call did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// History, in order.
    pub events: Vec<Event>,
    /// Waits that began during the call (also in `events`).
    pub new_waits: Vec<Wait>,
    /// Whether the instance ended (completed, failed or terminated) during the call.
    pub ended: bool,
}

/// Why a driving call was refused. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The process uses elements the executor does not run yet.
    #[error("{}", .0.join("\n"))]
    Unsupported(Vec<String>),
    /// The process has no start event to start from (no none start event, and not exactly one
    /// triggered start event).
    #[error("process `{0}` has no none start event to start from (choose a start event)")]
    NoStartEvent(String),
    /// `start_at` named something that is not a start event of the process scope.
    #[error("`{0}` is not a start event of the process")]
    NoSuchStart(String),
    /// The instance belongs to another process.
    #[error("instance runs process `{instance}`, not `{given}`")]
    WrongProcess {
        /// The instance's process.
        instance: String,
        /// The process passed in.
        given: String,
    },
    /// The instance is not running or waiting.
    #[error("instance is {0}, it cannot move any more")]
    NotActive(&'static str),
    /// No wait has this activation.
    #[error("no wait with activation {0}")]
    UnknownActivation(u64),
    /// The wait is not a non-interrupting boundary timer (only those tick repeatedly).
    #[error("activation {activation} at `{node}` is not a non-interrupting boundary timer")]
    NotARepeatingBoundary {
        /// Activation id.
        activation: u64,
        /// The waiting node.
        node: String,
    },
    /// The wait is not a job (only jobs can fail).
    #[error("activation {activation} at `{node}` is a {kind} wait, not a job")]
    NotAJob {
        /// Activation id.
        activation: u64,
        /// Node id.
        node: String,
        /// The wait kind.
        kind: &'static str,
    },
    /// A hook refused the start.
    #[error("start refused: {0}")]
    StartRejected(String),
    /// The instance data does not hold together (a damaged or hand-edited checkpoint).
    #[error("instance data is inconsistent: {0}")]
    Inconsistent(String),
    /// A `guard_variable` rule refused variables set from outside.
    #[error("variable change refused: {0}")]
    VariablesRejected(String),
    /// A guard refused the completion.
    #[error("completion of `{node}` refused: {reason}")]
    Rejected {
        /// Node id.
        node: String,
        /// The guard's reason.
        reason: String,
    },
}

/// One running (or ended) process instance. Serializable: this is what the durable layer stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    id: String,
    process_id: String,
    status: InstanceStatus,
    scopes: Vec<ScopeState>,
    waits: Vec<Wait>,
    joins: Vec<JoinState>,
    #[serde(default)]
    multi: Vec<MultiState>,
    #[serde(default)]
    loops: Vec<LoopState>,
    #[serde(default)]
    compensable: Vec<Compensable>,
    #[serde(default)]
    compensations: Vec<CompensationRun>,
    path: Vec<String>,
    incidents: Vec<Incident>,
    activations: BTreeMap<String, u64>,
    next_activation: u64,
    next_scope: u64,
}

impl Instance {
    /// Starts an instance of `process` with id `id` and initial `variables`, and runs it until
    /// every token waits or it ends. It starts at the none start events; a process without one
    /// but with exactly one triggered start event (message, timer, signal) starts there, as if
    /// its trigger had happened. Use [`Instance::start_at`] to choose a triggered start event.
    pub fn start(
        process: &CompiledProcess,
        id: impl Into<String>,
        variables: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<(Instance, Step), ExecError> {
        let root = &process.scopes[0];
        let starts = match (root.starts.as_slice(), root.triggered_starts.as_slice()) {
            ([], [only]) => vec![*only],
            (none, _) => none.to_vec(),
        };
        Self::start_from(process, starts, id.into(), variables, hooks)
    }

    /// Starts an instance at the start event `start` (typically a message or timer start event
    /// whose trigger happened).
    pub fn start_at(
        process: &CompiledProcess,
        start: &str,
        id: impl Into<String>,
        variables: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<(Instance, Step), ExecError> {
        let root = &process.scopes[0];
        let index = process
            .node_index(start)
            .filter(|n| root.starts.contains(n) || root.triggered_starts.contains(n))
            .ok_or_else(|| ExecError::NoSuchStart(start.to_string()))?;
        Self::start_from(process, vec![index], id.into(), variables, hooks)
    }

    fn start_from(
        process: &CompiledProcess,
        starts: Vec<petgraph::graph::NodeIndex>,
        id: String,
        variables: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<(Instance, Step), ExecError> {
        if !process.unsupported.is_empty() {
            let lines = process
                .unsupported
                .iter()
                .map(|d| format!("{} at {}", d.message, d.location()))
                .collect();
            return Err(ExecError::Unsupported(lines));
        }
        if starts.is_empty() {
            return Err(ExecError::NoStartEvent(process.id.clone()));
        }
        let mut instance = Instance {
            id,
            process_id: process.id.clone(),
            status: InstanceStatus::Running,
            scopes: vec![ScopeState {
                id: 0,
                parent: None,
                subprocess: None,
                activation: None,
                variables,
                run: None,
                io: false,
            }],
            waits: Vec::new(),
            joins: Vec::new(),
            multi: Vec::new(),
            loops: Vec::new(),
            compensable: Vec::new(),
            compensations: Vec::new(),
            path: Vec::new(),
            incidents: Vec::new(),
            activations: BTreeMap::new(),
            next_activation: 1,
            next_scope: 1,
        };
        let step = machine::Machine::new(process, hooks, &mut instance).start(&starts)?;
        Ok((instance, step))
    }

    /// Completes the wait `activation` with `outputs` (written as variables in the wait's scope)
    /// and runs on. A guard may refuse it; then nothing changes.
    pub fn complete(
        &mut self,
        process: &CompiledProcess,
        activation: u64,
        outputs: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.complete_all(process, vec![(activation, outputs)], hooks)
    }

    /// Completes several waits in one step, in the given order, before any token moves on (a
    /// driver that finishes a batch of ready tasks at once). Guards are asked for every wait
    /// first; one refusal refuses the whole batch and nothing changes.
    pub fn complete_all(
        &mut self,
        process: &CompiledProcess,
        completions: Vec<(u64, Map<String, Value>)>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        machine::Machine::new(process, hooks, self).complete(completions)
    }

    /// A repeating non-interrupting boundary timer (`R3/PT1H`) ticked: its path runs once more,
    /// and the wait `activation` stays open for the next tick while the activity is active. The
    /// driver completes the wait (with [`Instance::complete`]) at the cycle's last tick.
    pub fn tick_boundary(
        &mut self,
        process: &CompiledProcess,
        activation: u64,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        machine::Machine::new(process, hooks, self).tick_boundary(activation)
    }

    /// Ends the job `activation` with the BPMN error `code` (a business error from its handler,
    /// or an error end event no one caught in a call activity's child instance):
    /// a matching error boundary event on the task, or on an enclosing subprocess, takes the
    /// token; without one the error raises an incident and the instance fails.
    pub fn throw_error(
        &mut self,
        process: &CompiledProcess,
        activation: u64,
        code: Option<&str>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        machine::Machine::new(process, hooks, self).job_error(activation, code)
    }

    /// [`Instance::throw_error`] with `variables` written to the process scope first, so the path
    /// that catches the error reads them (an LLM step's invalid output, say). A refused call
    /// changes nothing.
    pub fn throw_error_with(
        &mut self,
        process: &CompiledProcess,
        activation: u64,
        code: Option<&str>,
        variables: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        let wait = self
            .wait(activation)
            .ok_or(ExecError::UnknownActivation(activation))?;
        if !matches!(wait.kind, WaitKind::Job { .. } | WaitKind::Llm { .. }) {
            return Err(ExecError::NotAJob {
                activation,
                node: wait.node.clone(),
                kind: wait.kind.name(),
            });
        }
        let mut step = if variables.is_empty() {
            Step::default()
        } else {
            self.set_process_variables(variables)
        };
        let thrown = machine::Machine::new(process, hooks, self).job_error(activation, code)?;
        step.events.extend(thrown.events);
        step.new_waits = thrown.new_waits;
        step.ended = thrown.ended;
        Ok(step)
    }

    /// Fails the job `activation` (its handler gave up after its retries; or a call activity's
    /// child failed): raises an incident at the job's node with `message`, and the instance fails.
    pub fn fail_job(
        &mut self,
        process: &CompiledProcess,
        activation: u64,
        message: &str,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        machine::Machine::new(process, hooks, self).fail_job(activation, message)
    }

    /// Sets variables from outside (an API call, not a task): a guard that refuses them refuses
    /// the call ([`ExecError::VariablesRejected`], nothing changes); else they are written to the
    /// process scope, `on_variables_changed` runs, and conditional events whose
    /// condition became true fire, with every token they move, in the returned step.
    pub fn update_variables(
        &mut self,
        process: &CompiledProcess,
        updates: Map<String, Value>,
        hooks: &dyn ExecutionHooks,
    ) -> Result<Step, ExecError> {
        self.check_can_move(process)?;
        machine::Machine::new(process, hooks, self).update_variables(updates)
    }

    /// Sets process-level variables between steps, e.g. the updates of `on_status_change`
    /// policies, which run after the instance status changed (an ended instance keeps them as its
    /// final variables). No hooks run; the returned step records the change.
    pub fn set_process_variables(&mut self, updates: Map<String, Value>) -> Step {
        if let Some(process_scope) = self.scopes.first_mut() {
            process_scope.variables.extend(updates.clone());
        }
        Step {
            events: vec![Event::VariablesChanged {
                node: None,
                scope: 0,
                changes: updates,
            }],
            new_waits: Vec::new(),
            ended: false,
        }
    }

    /// Cancels the instance from outside: every wait and token is dropped.
    pub fn terminate(&mut self) -> Result<Step, ExecError> {
        if !self.status.is_active() {
            return Err(ExecError::NotActive(self.status.as_str()));
        }
        self.waits.clear();
        self.joins.clear();
        self.multi.clear();
        self.loops.clear();
        self.compensable.clear();
        self.compensations.clear();
        self.scopes.truncate(1);
        self.status = InstanceStatus::Terminated;
        Ok(Step {
            events: vec![Event::InstanceTerminated],
            new_waits: Vec::new(),
            ended: true,
        })
    }

    fn check_can_move(&self, process: &CompiledProcess) -> Result<(), ExecError> {
        if process.id != self.process_id {
            return Err(ExecError::WrongProcess {
                instance: self.process_id.clone(),
                given: process.id.clone(),
            });
        }
        if !self.status.is_active() {
            return Err(ExecError::NotActive(self.status.as_str()));
        }
        if self.scopes.first().map(|s| s.id) != Some(0) {
            return Err(ExecError::Inconsistent(
                "its first scope is not the process scope".into(),
            ));
        }
        Ok(())
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id of the process it runs.
    pub fn process_id(&self) -> &str {
        &self.process_id
    }

    /// Its state.
    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    /// The process-level variables.
    pub fn variables(&self) -> &Map<String, Value> {
        static NONE: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
        self.scopes.first().map(|s| &s.variables).unwrap_or(&NONE)
    }

    /// Moves the process variables and the path out of an instance that is not used any more
    /// (an ended one, for its final answer) instead of cloning them; both are empty afterwards.
    pub(crate) fn take_variables_and_path(&mut self) -> (Map<String, Value>, Vec<String>) {
        let variables = self
            .scopes
            .first_mut()
            .map(|s| std::mem::take(&mut s.variables))
            .unwrap_or_default();
        (variables, std::mem::take(&mut self.path))
    }

    /// The live scopes (the process first, then running subprocesses).
    pub fn scopes(&self) -> &[ScopeState] {
        &self.scopes
    }

    /// The open waits, oldest first.
    pub fn waits(&self) -> &[Wait] {
        &self.waits
    }

    /// The wait with this activation.
    pub fn wait(&self, activation: u64) -> Option<&Wait> {
        self.waits.iter().find(|w| w.activation == activation)
    }

    /// Multi-instance tasks in progress.
    pub fn multi_instances(&self) -> &[MultiState] {
        &self.multi
    }

    /// Joins holding tokens.
    pub fn joins(&self) -> &[JoinState] {
        &self.joins
    }

    /// Ids of completed flow nodes in completion order (a subprocess after its inner nodes; a
    /// node completed twice appears twice).
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Incidents raised so far.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    /// How many times each node was entered.
    pub fn activations(&self) -> &BTreeMap<String, u64> {
        &self.activations
    }
}

/// `parts` joined, then `number` in decimal: instance ids (`process-7`) and idempotency keys
/// (`instance/node/3`). Built by hand because `format!` costs about ten times as much, and these
/// are made on every start and every wait.
pub(crate) fn joined_id(parts: &[&str], number: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(number);
    let mut id = String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + digits.len());
    for part in parts {
        id.push_str(part);
    }
    id.push_str(digits);
    id
}

#[cfg(test)]
mod tests;
