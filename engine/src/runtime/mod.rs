//! The embedding API: an [`Engine`] runs many process instances concurrently on tokio, durably.
//!
//! The executor ([`crate::executor`]) is a synchronous state machine; the engine drives it:
//! every executor call (plus the auto-completions that need nothing from outside) forms one
//! *turn*, whose changes — snapshot, history, outbox, timers, subscriptions, completion records —
//! go to the [`Store`] in one atomic commit. Only when the commit is durable does the engine act
//! on it: run handlers, arm timers in memory, deliver notifications, publish events, answer the
//! caller. A crash therefore loses at most turns nobody heard of.
//!
//! On start the engine reloads unfinished instances, re-arms their timers, redelivers pending
//! outbox entries and re-runs every job that has no completion record (at-least-once; the
//! idempotency key `instance/node/activation` lets a handler make its effect exactly-once; the
//! completion itself is recorded exactly once).

mod handlers;
pub mod llm_step;
mod record;
mod versions;

pub use handlers::{handler, Handler, HandlerError, HandlerFuture, JobContext};
pub use record::{EngineIncident, HistoryEntry, HistoryRecord};
pub use versions::{Deployed, StartTrigger};

use crate::clock::{Clock, WallClock};
use crate::diagnostics::Diagnostic;
use crate::executor::{
    Event, ExecError, ExecutionHooks, Instance, NoHooks, Status, Step, Wait, WaitKind,
};
use crate::llm::{LlmError, TextGenerator};
use crate::model::{Definitions, LlmTask, RetryPolicy};
use crate::rules::{Effect as RuleEffect, SharedRuleHooks};
use crate::script::{ScriptLimits, ScriptRuntime};
use crate::store::{
    Ack, MemoryStore, SnapshotChange, StepCommit, Store, StoreError, Table, TableChange,
};
use crate::timer::TimerSpec;
use record::{
    buffered_prefix, decode, encode, message_subscription_key, message_subscription_prefix,
    signal_subscription_key, signal_subscription_prefix, ArmedTimer, BufferedMessage, JobAttempts,
    StoredDeployment, StoredInstance, StoredSchedule, StoredTurn, Subscriber,
};
use serde::Serialize;
use serde_json::{Map, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, Notify};
use versions::{
    content_hash, deployment_key, retry_policies, schedule_key, start_triggers, Versions,
};

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
    fn of(stored: &StoredInstance) -> Self {
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

/// One outbox entry: an event a node threw, or an effect a rule asked for.
#[derive(Debug, serde::Deserialize, Serialize)]
enum OutboxEntry {
    /// A message or signal thrown by `node`.
    Thrown(String, crate::graph::ThrownEvent),
    /// A rule's `notify` or `emit` for `instance`.
    Rule {
        /// The instance whose step asked for it.
        instance: String,
        /// The effect.
        effect: RuleEffect,
    },
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    hooks: SharedHooks,
    rules: Option<Arc<SharedRuleHooks>>,
    effect_sink: Option<EffectSink>,
    scripts: Arc<ScriptRuntime>,
    options: EngineOptions,
    generator: Option<Arc<dyn TextGenerator>>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(WallClock),
            handlers: HashMap::new(),
            fallback: None,
            hooks: Arc::new(NoHooks),
            rules: None,
            effect_sink: None,
            scripts: Arc::new(ScriptRuntime::new(&ScriptLimits::default())),
            options: EngineOptions::default(),
            generator: None,
        }
    }
}

impl EngineBuilder {
    /// The store (default: in memory).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = store;
        self
    }

    /// The clock (default: wall clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers a service-task handler under `name`.
    pub fn handler(mut self, name: impl Into<String>, handler: Handler) -> Self {
        self.handlers.insert(name.into(), handler);
        self
    }

    /// The handler for jobs whose handler name is not registered (or that name none).
    pub fn fallback_handler(mut self, handler: Handler) -> Self {
        self.fallback = Some(handler);
        self
    }

    /// Execution hooks (business rules).
    pub fn hooks(mut self, hooks: SharedHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Business rules: they become the execution hooks (replacing [`EngineBuilder::hooks`]), and
    /// the effects they ask for during a step are written to the outbox in that step's commit
    /// (and recorded in the history), then handed to the [`EngineBuilder::effect_sink`]. Compile
    /// processes with the rules' script runtime ([`crate::rules::RuleEngine::script_runtime`]) so
    /// conditions and scripts get the rules' standard library.
    pub fn rules(mut self, rules: Arc<SharedRuleHooks>) -> Self {
        self.hooks = rules.clone();
        self.rules = Some(rules);
        self
    }

    /// Where durable rule effects go (default: logged and acknowledged).
    pub fn effect_sink(mut self, sink: EffectSink) -> Self {
        self.effect_sink = Some(sink);
        self
    }

    /// The script runtime processes are compiled with.
    pub fn scripts(mut self, scripts: Arc<ScriptRuntime>) -> Self {
        self.scripts = scripts;
        self
    }

    /// Engine options.
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// The generator that answers LLM steps. Without one, LLM steps wait for
    /// [`Engine::complete_task`].
    pub fn text_generator(mut self, generator: Arc<dyn TextGenerator>) -> Self {
        self.generator = Some(generator);
        self
    }

    /// Builds the engine inside the current tokio runtime: reloads deployments and unfinished
    /// instances, re-arms timers, redelivers the outbox and re-runs unrecorded jobs.
    pub async fn build(self) -> Result<Engine, EngineError> {
        let (events, _) = broadcast::channel(self.options.event_capacity.max(1));
        let inner = Arc::new(Inner {
            store: self.store,
            clock: self.clock,
            handlers: self.handlers,
            fallback: self.fallback,
            hooks: self.hooks,
            rules: self.rules,
            effect_sink: self.effect_sink,
            scripts: self.scripts,
            options: self.options,
            generator: self.generator,
            versions: RwLock::new(Versions::default()),
            live: Mutex::new(HashMap::new()),
            events,
            ended_waiters: Mutex::new(HashMap::new()),
            timers: Mutex::new(BinaryHeap::new()),
            schedules: Mutex::new(HashMap::new()),
            timers_changed: Arc::new(Notify::new()),
            busy: AtomicUsize::new(0),
            idle: Arc::new(Notify::new()),
            correlation: Mutex::new(()),
            message_seq: AtomicU64::new(crate::clock::wall_now_ms() << 12),
            delivering: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::channel(false).0,
        });
        inner.reload()?;
        let weak = Arc::downgrade(&inner);
        let stop = inner.stop.subscribe();
        tokio::spawn(async move {
            let mut stop = stop;
            tokio::select! {
                _ = timer_loop(weak) => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
        inner.resume_all();
        Ok(Engine { inner })
    }
}

/// A workflow engine instance. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

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

impl Engine {
    /// A builder with an in-memory store, the wall clock, no handlers and no hooks.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Deploys a process of `defs` (the one named, else the first executable one). Identical
    /// content returns the existing version; new content gets the next version number.
    pub async fn deploy(
        &self,
        defs: &Definitions,
        process: Option<&str>,
    ) -> Result<Deployment, EngineError> {
        let compiled = compile(defs, process, &self.inner.scripts)?;
        let (process_compiled, warnings) = compiled;
        let hash = content_hash(defs);
        let process_id = process_compiled.id.clone();
        let starts = start_triggers(defs, &process_id);
        check_start_timers(defs, &starts)?;
        let _deploy_lock = self
            .inner
            .correlation
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let previous = self
            .inner
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .latest(&process_id)
            .cloned();
        if let Some(latest) = &previous {
            if latest.content_hash == hash {
                return Ok(Deployment {
                    deployed: latest.clone(),
                    created: false,
                    warnings,
                });
            }
        }
        let version = previous.map_or(1, |p| p.version + 1);
        let stored = StoredDeployment {
            process_id: process_id.clone(),
            version,
            content_hash: hash.clone(),
            definitions: defs.clone(),
        };
        let mut commit = StepCommit::default();
        commit.put(
            Table::Definitions,
            deployment_key(&process_id, version),
            encode(&stored),
        );
        // The schedules of timer start events move to the new version in the same commit.
        let schedules = if self.inner.options.schedule_timer_starts {
            self.inner
                .reschedule(&process_id, version, &starts, &mut commit)
        } else {
            Vec::new()
        };
        let ack = self.inner.store.commit(commit)?;
        {
            let mut table = self
                .inner
                .schedules
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            table.retain(|(process, _), _| process != &process_id);
            for schedule in &schedules {
                table.insert(
                    (process_id.clone(), schedule.node.clone()),
                    schedule.clone(),
                );
            }
        }
        drop(_deploy_lock);
        ack.durable().await?;
        let retries = retry_policies(defs, &process_id);
        let deployed = Arc::new(Deployed {
            process_id,
            version,
            content_hash: hash,
            process: process_compiled,
            retries,
            starts,
        });
        self.inner
            .versions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(deployed.clone());
        for schedule in &schedules {
            self.inner.arm_schedule(schedule);
        }
        tracing::info!(process = %deployed.process_id, version, schedules = schedules.len(), "deployed");
        Ok(Deployment {
            deployed,
            created: true,
            warnings,
        })
    }

    /// Every deployed version (old versions stay while instances use them).
    pub fn deployments(&self) -> Vec<Arc<Deployed>> {
        self.inner
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .all()
    }

    /// Starts an instance of the latest version of `process_id`; returns once its first turn
    /// is durable.
    pub async fn start(
        &self,
        process_id: &str,
        variables: Map<String, Value>,
    ) -> Result<InstanceInfo, EngineError> {
        let deployed = self
            .inner
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .latest(process_id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownProcess(process_id.to_string()))?;
        let _busy = self.inner.busy();
        let (ack, effects, info) =
            self.inner
                .begin_instance(deployed, None, variables, Vec::new(), Vec::new())?;
        ack.durable().await?;
        self.inner.apply_effects(&info.id, effects);
        Ok(info)
    }

    /// Completes a user (or manual, or language-model) task with `outputs`.
    pub async fn complete_task(
        &self,
        instance: &str,
        activation: u64,
        outputs: Map<String, Value>,
    ) -> Result<InstanceInfo, EngineError> {
        self.inner
            .drive(
                instance,
                activation,
                "task",
                |w| {
                    matches!(
                        w.kind,
                        WaitKind::User { .. }
                            | WaitKind::Llm { .. }
                            | WaitKind::Job { handler: None }
                    )
                },
                outputs,
                Vec::new(),
                Vec::new(),
            )
            .await
    }

    /// Delivers a message to the instance waiting for `name` with `correlation_key`; when none
    /// waits, keeps it for the configured time and delivers it to the first instance that does.
    pub async fn correlate_message(
        &self,
        name: &str,
        correlation_key: Option<&str>,
        variables: Map<String, Value>,
    ) -> Result<Correlation, EngineError> {
        self.inner.correlate(name, correlation_key, variables).await
    }

    /// Delivers a signal to every instance waiting for it; returns how many received it.
    pub async fn broadcast_signal(
        &self,
        name: &str,
        variables: Map<String, Value>,
    ) -> Result<usize, EngineError> {
        self.inner.signal(name, variables).await
    }

    /// Cancels an instance: every wait is dropped, its timers and subscriptions removed.
    pub async fn cancel(&self, instance: &str) -> Result<InstanceInfo, EngineError> {
        let live = self.inner.live_instance(instance)?;
        let _busy = self.inner.busy();
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let before = open_waits(&guard.stored.instance);
            let previous = guard.stored.instance.status();
            let step = guard.stored.instance.terminate()?;
            let mut turn = Turn::new(instance);
            self.inner
                .absorb(&mut guard, step, &before, previous, &mut turn);
            let (ack, effects) = self.inner.finish_turn(&mut guard, turn)?;
            (ack, effects, InstanceInfo::of(&guard.stored))
        };
        ack.durable().await?;
        self.inner.apply_effects(instance, effects);
        Ok(info)
    }

    /// Re-runs the job of an incident (its retry count starts over).
    pub async fn retry_incident(&self, instance: &str, activation: u64) -> Result<(), EngineError> {
        let live = self.inner.live_instance(instance)?;
        let (ack, wait) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let position = guard
                .stored
                .incidents
                .iter()
                .position(|i| i.activation == activation)
                .ok_or_else(|| EngineError::NoSuchWait {
                    instance: instance.to_string(),
                    activation,
                    expected: "incident",
                })?;
            guard.stored.incidents.remove(position);
            guard.stored.attempts.retain(|a| a.activation != activation);
            let wait = guard.stored.instance.wait(activation).cloned();
            let mut turn = Turn::new(instance);
            turn.history
                .push(HistoryEntry::IncidentRetried { activation });
            let (ack, _) = self.inner.finish_turn(&mut guard, turn)?;
            (ack, wait)
        };
        ack.durable().await?;
        if let Some(wait) = wait {
            self.inner
                .apply_effects(instance, vec![Effect::RunJob(wait)]);
        }
        Ok(())
    }

    /// Resolves an incident by completing its wait with `outputs` supplied by an operator.
    pub async fn resolve_incident(
        &self,
        instance: &str,
        activation: u64,
        outputs: Map<String, Value>,
    ) -> Result<InstanceInfo, EngineError> {
        let live = self.inner.live_instance(instance)?;
        {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            if !guard
                .stored
                .incidents
                .iter()
                .any(|i| i.activation == activation)
            {
                return Err(EngineError::NoSuchWait {
                    instance: instance.to_string(),
                    activation,
                    expected: "incident",
                });
            }
        }
        self.inner
            .drive(
                instance,
                activation,
                "incident",
                |_| true,
                outputs,
                vec![HistoryEntry::IncidentResolved { activation }],
                Vec::new(),
            )
            .await
    }

    /// The current state of an instance (running or ended).
    pub fn instance(&self, id: &str) -> Result<InstanceInfo, EngineError> {
        if let Some(live) = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
        {
            return Ok(InstanceInfo::of(
                &live.lock().unwrap_or_else(|e| e.into_inner()).stored,
            ));
        }
        let bytes = self
            .inner
            .store
            .instance(id)?
            .ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
        let stored: StoredInstance = decode(&bytes, "instance").map_err(EngineError::Decode)?;
        Ok(InstanceInfo::of(&stored))
    }

    /// The history (audit log) of an instance.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, EngineError> {
        read_history(self.inner.store.as_ref(), id)
    }

    /// A stream of engine events; each is published after its turn is durable.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until the instance has ended and returns its final state.
    pub async fn wait_for_end(&self, id: &str) -> Result<InstanceInfo, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .ended_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(tx);
        let info = self.instance(id)?;
        if info.ended() {
            return Ok(info);
        }
        match rx.await {
            Ok(info) => Ok(info),
            Err(_) => self.instance(id),
        }
    }

    /// Waits until the instance has ended, or until nothing can move it without outside help:
    /// no handler, delivery or timer of the engine is pending. With a virtual clock, timers jump
    /// ahead; with the wall clock they are waited for.
    pub async fn wait_settled(&self, id: &str) -> Result<InstanceInfo, EngineError> {
        let mut events = self.subscribe();
        loop {
            let info = self.instance(id)?;
            let timers_armed = self
                .inner
                .live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(id)
                .is_some_and(|live| {
                    !live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .stored
                        .timers
                        .is_empty()
                });
            if info.ended() || (self.inner.busy.load(Ordering::SeqCst) == 0 && !timers_armed) {
                return Ok(info);
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }
    }

    /// Ids of the instances that are still running (loaded in memory).
    pub fn running(&self) -> Vec<String> {
        let mut ids: Vec<_> = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Stops background work (handlers in flight, timers, deliveries) and waits until it has
    /// stopped. Turns already committed stay committed; unfinished jobs run again at the next
    /// start. The engine accepts no further work afterwards.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.inner.busy.load(Ordering::SeqCst) == 0 {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), idle).await;
        }
    }

    /// The clock the engine runs on.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }
}

/// Reads and decodes the history of an instance from a store (also for tools that only have
/// the store, such as `flowbot history`).
pub fn read_history(store: &dyn Store, id: &str) -> Result<Vec<HistoryRecord>, EngineError> {
    let raw = store.history(id)?;
    if raw.is_empty() && store.instance(id)?.is_none() {
        return Err(EngineError::UnknownInstance(id.to_string()));
    }
    let mut records = Vec::new();
    for bytes in raw {
        let turn: StoredTurn = decode(&bytes, "history").map_err(EngineError::Decode)?;
        records.extend(turn.into_records());
    }
    Ok(records)
}

fn compile(
    defs: &Definitions,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
) -> Result<(crate::graph::CompiledProcess, Vec<Diagnostic>), EngineError> {
    let (compiled, diagnostics) = crate::graph::compile(defs, process, scripts);
    match compiled {
        Some(compiled) => Ok((compiled, diagnostics)),
        None => Err(EngineError::Compile(diagnostics)),
    }
}

/// Whether `node` is a receive task (auto-completed like a user task, as `run --auto-complete`
/// does; message catch events keep waiting).
fn is_receive_task(deployed: &Deployed, node: &str) -> bool {
    deployed
        .process
        .node_index(node)
        .is_some_and(|n| deployed.process.node(n).element == "receiveTask")
}

fn open_waits(instance: &Instance) -> Vec<Wait> {
    instance.waits().to_vec()
}

/// Removes the subscription key of a wait that is gone.
fn remove_subscription(instance: &str, wait: &Wait, turn: &mut Turn) {
    match &wait.kind {
        WaitKind::Message {
            name,
            correlation_key,
        } => turn.commit.remove(
            Table::Subscriptions,
            message_subscription_key(
                name.as_deref().unwrap_or(""),
                correlation_key.as_deref(),
                instance,
                wait.activation,
            ),
        ),
        WaitKind::Signal { name } => turn.commit.remove(
            Table::Subscriptions,
            signal_subscription_key(name.as_deref().unwrap_or(""), instance, wait.activation),
        ),
        _ => {}
    }
}

/// A running instance held in memory.
struct Live {
    stored: StoredInstance,
    deployed: Arc<Deployed>,
}

/// What to do once a turn is durable.
enum Effect {
    /// Call the job's handler.
    RunJob(Wait),
    /// Arm a timer in memory.
    ArmTimer { due_ms: u64, activation: u64 },
    /// Look for a buffered message for a new message wait.
    CheckBuffered {
        name: String,
        correlation_key: Option<String>,
        activation: u64,
    },
    /// Deliver thrown events (outbox entries).
    Deliver,
    /// Publish history records to subscribers.
    Publish(Vec<HistoryRecord>),
    /// The instance ended; its final state when someone waits for it.
    Ended(Option<InstanceInfo>),
}

/// The changes of one turn, collected before the commit.
struct Turn {
    commit: StepCommit,
    history: Vec<HistoryEntry>,
    effects: Vec<Effect>,
    auto: VecDeque<u64>,
}

impl Turn {
    fn new(instance: &str) -> Self {
        Self {
            commit: StepCommit::for_instance(instance),
            history: Vec::new(),
            effects: Vec::new(),
            auto: VecDeque::new(),
        }
    }
}

/// Marks the engine busy while alive (a virtual clock only jumps when nothing is busy).
struct Busy<'a>(&'a Inner);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// An owned busy mark for spawned tasks.
struct BusyToken(Arc<Inner>);

impl Drop for BusyToken {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    hooks: SharedHooks,
    rules: Option<Arc<SharedRuleHooks>>,
    effect_sink: Option<EffectSink>,
    scripts: Arc<ScriptRuntime>,
    options: EngineOptions,
    /// Answers LLM steps, when set.
    generator: Option<Arc<dyn TextGenerator>>,
    versions: RwLock<Versions>,
    live: Mutex<HashMap<String, Arc<Mutex<Live>>>>,
    events: broadcast::Sender<EngineEvent>,
    ended_waiters: Mutex<HashMap<String, Vec<oneshot::Sender<InstanceInfo>>>>,
    /// Armed timers (instance waits and timer start events), earliest first.
    timers: Mutex<BinaryHeap<Reverse<(u64, TimerTarget)>>>,
    /// The next tick of every timer start event, by (process, start event): what the store's
    /// schedules table holds.
    schedules: Mutex<HashMap<(String, String), StoredSchedule>>,
    timers_changed: Arc<Notify>,
    busy: AtomicUsize,
    idle: Arc<Notify>,
    /// Serializes message correlation against buffering (and deployments).
    correlation: Mutex<()>,
    message_seq: AtomicU64,
    /// One outbox delivery at a time.
    delivering: tokio::sync::Mutex<()>,
    /// Set by [`Engine::shutdown`]: background work stops.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Inner {
    fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    fn live_instance(&self, id: &str) -> Result<Arc<Mutex<Live>>, EngineError> {
        if let Some(live) = self.live.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(live.clone());
        }
        match self.store.instance(id)? {
            Some(_) => Err(EngineError::Exec(ExecError::NotActive("ended"))),
            None => Err(EngineError::UnknownInstance(id.to_string())),
        }
    }

    /// Reloads deployments and unfinished instances from the store.
    fn reload(&self) -> Result<(), EngineError> {
        let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
        for (_, bytes) in self.store.scan(Table::Definitions, b"")? {
            let stored: StoredDeployment =
                decode(&bytes, "deployment").map_err(EngineError::Decode)?;
            let (process, _) =
                compile(&stored.definitions, Some(&stored.process_id), &self.scripts)?;
            let retries = retry_policies(&stored.definitions, &stored.process_id);
            let starts = start_triggers(&stored.definitions, &stored.process_id);
            versions.add(Arc::new(Deployed {
                process_id: stored.process_id,
                version: stored.version,
                content_hash: stored.content_hash,
                process,
                retries,
                starts,
            }));
        }
        if self.options.schedule_timer_starts {
            let mut schedules = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
            for (_, bytes) in self.store.scan(Table::Schedules, b"")? {
                let schedule: StoredSchedule =
                    decode(&bytes, "schedule").map_err(EngineError::Decode)?;
                schedules.insert(
                    (schedule.process_id.clone(), schedule.node.clone()),
                    schedule,
                );
            }
            tracing::info!(
                schedules = schedules.len(),
                "timer start schedules reloaded"
            );
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (id, bytes) in self.store.unfinished()? {
            let stored: StoredInstance = decode(&bytes, "instance").map_err(EngineError::Decode)?;
            let deployed = versions
                .get(&stored.process_id, stored.version)
                .cloned()
                .ok_or_else(|| {
                    EngineError::Decode(format!(
                        "instance {id} runs {} version {}, which is not in the store",
                        stored.process_id, stored.version
                    ))
                })?;
            live.insert(id, Arc::new(Mutex::new(Live { stored, deployed })));
        }
        tracing::info!(instances = live.len(), "unfinished instances reloaded");
        Ok(())
    }

    /// After a restart: re-arm timers, redeliver the outbox, re-run unrecorded jobs, complete
    /// auto-completable waits, pick up buffered messages.
    fn resume_all(self: &Arc<Self>) {
        let all: Vec<(String, Arc<Mutex<Live>>)> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut jobs = Vec::new();
        for (id, live) in all {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let mut effects = Vec::new();
            for timer in &guard.stored.timers {
                effects.push(Effect::ArmTimer {
                    due_ms: timer.due_ms,
                    activation: timer.activation,
                });
            }
            for wait in guard.stored.instance.waits() {
                let has_incident = guard
                    .stored
                    .incidents
                    .iter()
                    .any(|i| i.activation == wait.activation);
                match &wait.kind {
                    WaitKind::Job { handler }
                        if !has_incident
                            && (handler.is_some()
                                || self.fallback.is_some()
                                || self.options.auto_complete) =>
                    {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::User { .. } if self.options.auto_complete => {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::Llm { .. } if !has_incident && self.generator.is_some() => {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::Message { .. }
                        if self.options.auto_complete
                            && is_receive_task(&guard.deployed, &wait.node) =>
                    {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::Message {
                        name,
                        correlation_key,
                    } => effects.push(Effect::CheckBuffered {
                        name: name.clone().unwrap_or_default(),
                        correlation_key: correlation_key.clone(),
                        activation: wait.activation,
                    }),
                    _ => {}
                }
            }
            drop(guard);
            jobs.push((id, effects));
        }
        for (id, effects) in jobs {
            self.apply_effects(&id, effects);
        }
        // Ticks missed while the engine was down fire now, one after the other, each from the one
        // before: none is skipped, none repeated.
        let schedules: Vec<StoredSchedule> = self
            .schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for schedule in &schedules {
            self.arm_schedule(schedule);
        }
        match self.store.pending_outbox() {
            Ok(entries) if !entries.is_empty() => {
                self.apply_effects("", vec![Effect::Deliver]);
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "cannot read the outbox"),
        }
    }

    /// Runs the `on_status_change` rules when the instance status is no longer `previous`, and
    /// applies the variables they set. A failing policy is logged; the step stands.
    fn status_policies(
        &self,
        rules: &SharedRuleHooks,
        live: &mut Live,
        previous: Status,
        turn: &mut Turn,
    ) {
        let status = live.stored.instance.status();
        if status == previous {
            return;
        }
        let id = live.stored.instance.id().to_string();
        let process = &live.deployed.process;
        match rules.status_changed(
            process,
            &id,
            live.stored.instance.variables(),
            previous,
            status,
        ) {
            Ok(updates) if updates.is_empty() => {}
            Ok(updates) => {
                let step = live.stored.instance.set_process_variables(updates);
                turn.history.extend(
                    step.events
                        .into_iter()
                        .map(|event| HistoryEntry::Executor { event }),
                );
            }
            Err(error) => {
                tracing::error!(instance = %id, from = previous.as_str(), to = status.as_str(), error = %error, "a status-change rule failed")
            }
        }
    }

    /// Drops what the rules asked for during an executor call that failed (nothing of it happens).
    fn discard_rule_effects(&self, instance: &str) {
        if let Some(rules) = &self.rules {
            let dropped = rules.finish_step(instance);
            if !dropped.is_empty() {
                tracing::debug!(
                    instance,
                    effects = dropped.len(),
                    "effects of a refused step dropped"
                );
            }
        }
    }

    /// Turns an executor step into store changes and after-commit effects. `before` are the
    /// waits open before the step: those gone now lose their timers and subscriptions;
    /// `previous` is the instance status before it (a change runs the `on_status_change` rules).
    /// Runs one executor `call` on the live instance and folds its step into `turn`. A refused
    /// call leaves the instance as it was and drops the rule effects it queued.
    fn step_live(
        &self,
        live: &mut Live,
        turn: &mut Turn,
        call: impl FnOnce(
            &mut Instance,
            &crate::graph::CompiledProcess,
            &dyn ExecutionHooks,
        ) -> Result<Step, ExecError>,
    ) -> Result<(), ExecError> {
        let before = open_waits(&live.stored.instance);
        let previous = live.stored.instance.status();
        let deployed = live.deployed.clone();
        let step = call(
            &mut live.stored.instance,
            &deployed.process,
            self.hooks.as_ref(),
        )
        .inspect_err(|_| self.discard_rule_effects(live.stored.instance.id()))?;
        self.absorb(live, step, &before, previous, turn);
        Ok(())
    }

    fn absorb(
        &self,
        live: &mut Live,
        step: Step,
        before: &[Wait],
        previous: Status,
        turn: &mut Turn,
    ) {
        let id = live.stored.instance.id().to_string();
        let now = self.clock.now_ms();
        for gone in before
            .iter()
            .filter(|w| live.stored.instance.wait(w.activation).is_none())
        {
            if let Some(pos) = live
                .stored
                .timers
                .iter()
                .position(|t| t.activation == gone.activation)
            {
                let timer = live.stored.timers.remove(pos);
                turn.commit.remove(
                    Table::Timers,
                    crate::store::timer_key(timer.due_ms, &id, gone.activation),
                );
            }
            remove_subscription(&id, gone, turn);
            live.stored
                .attempts
                .retain(|a| a.activation != gone.activation);
        }
        for event in &step.events {
            if let Event::EventThrown {
                node,
                event: thrown,
            } = event
            {
                turn.commit
                    .outbox
                    .push(encode(&OutboxEntry::Thrown(node.clone(), thrown.clone())));
            }
        }
        for event in step.events {
            turn.history.push(HistoryEntry::Executor { event });
        }
        // The rules' effects of this executor call commit with it.
        if let Some(rules) = &self.rules {
            self.status_policies(rules, live, previous, turn);
            for effect in rules.finish_step(&id) {
                turn.commit.outbox.push(encode(&OutboxEntry::Rule {
                    instance: id.clone(),
                    effect: effect.clone(),
                }));
                turn.history.push(HistoryEntry::RuleEffect { effect });
            }
        }
        for wait in step.new_waits {
            match &wait.kind {
                WaitKind::Job { handler } => {
                    match self.handler_for(handler.as_deref()) {
                        Some(_) => turn.effects.push(Effect::RunJob(wait)),
                        None if self.options.auto_complete => turn.auto.push_back(wait.activation),
                        // A named handler that is missing becomes an incident; a job that names
                        // none waits for an outside completion.
                        None if handler.is_some() => turn.effects.push(Effect::RunJob(wait)),
                        None => {}
                    }
                }
                WaitKind::User { .. } if self.options.auto_complete => {
                    turn.auto.push_back(wait.activation)
                }
                WaitKind::Message { .. }
                    if self.options.auto_complete
                        && is_receive_task(&live.deployed, &wait.node) =>
                {
                    turn.auto.push_back(wait.activation)
                }
                WaitKind::Llm { .. } if self.generator.is_some() => {
                    turn.effects.push(Effect::RunJob(wait))
                }
                WaitKind::User { .. } | WaitKind::Llm { .. } => {}
                WaitKind::Message {
                    name,
                    correlation_key,
                } => {
                    let name = name.clone().unwrap_or_default();
                    let key = message_subscription_key(
                        &name,
                        correlation_key.as_deref(),
                        &id,
                        wait.activation,
                    );
                    turn.commit.put(
                        Table::Subscriptions,
                        key,
                        encode(&Subscriber {
                            instance: id.clone(),
                            activation: wait.activation,
                        }),
                    );
                    turn.effects.push(Effect::CheckBuffered {
                        name,
                        correlation_key: correlation_key.clone(),
                        activation: wait.activation,
                    });
                }
                WaitKind::Signal { name } => {
                    let key = signal_subscription_key(
                        name.as_deref().unwrap_or(""),
                        &id,
                        wait.activation,
                    );
                    turn.commit.put(
                        Table::Subscriptions,
                        key,
                        encode(&Subscriber {
                            instance: id.clone(),
                            activation: wait.activation,
                        }),
                    );
                }
                WaitKind::Timer { definition } => {
                    let due = TimerSpec::of(definition)
                        .map_err(|e| e.to_string())
                        .and_then(|spec| {
                            spec.first_occurrence(now)
                                .ok_or_else(|| "the timer never fires".to_string())
                        });
                    match due {
                        Ok((due_ms, occurrence)) => {
                            live.stored.timers.push(ArmedTimer {
                                activation: wait.activation,
                                due_ms,
                                occurrence,
                            });
                            turn.commit.put(
                                Table::Timers,
                                crate::store::timer_key(due_ms, &id, wait.activation),
                                Vec::new(),
                            );
                            turn.history.push(HistoryEntry::TimerArmed {
                                node: wait.node.clone(),
                                activation: wait.activation,
                                due_ms,
                            });
                            turn.effects.push(Effect::ArmTimer {
                                due_ms,
                                activation: wait.activation,
                            });
                        }
                        Err(message) => {
                            let incident = EngineIncident {
                                activation: wait.activation,
                                node: wait.node.clone(),
                                message,
                                attempts: 0,
                            };
                            turn.history.push(HistoryEntry::IncidentRaised {
                                incident: incident.clone(),
                            });
                            live.stored.incidents.push(incident);
                        }
                    }
                }
            }
        }
    }

    /// Completes the queued auto-completions, then commits the turn.
    fn finish_turn(
        &self,
        live: &mut Live,
        mut turn: Turn,
    ) -> Result<(Ack, Vec<Effect>), EngineError> {
        // Auto-completions go in batches (every ready wait, oldest first, before any token moves
        // on), as `flowbot run --auto-complete` does.
        while !turn.auto.is_empty() && live.stored.instance.status().is_active() {
            let batch: Vec<(u64, Map<String, Value>)> =
                turn.auto.drain(..).map(|a| (a, Map::new())).collect();
            let completed = self.step_live(live, &mut turn, |instance, process, hooks| {
                instance.complete_all(process, batch, hooks)
            });
            if let Err(err) = completed {
                tracing::warn!(instance = %live.stored.instance.id(), error = %err, "auto-completion refused")
            }
        }
        let now = self.clock.now_ms();
        let ended = !live.stored.instance.status().is_active();
        // The records of a turn are stored as one history entry (one key per turn, not per event).
        turn.commit.history_from = live.stored.history_len;
        let stored_turn = StoredTurn {
            at_ms: now,
            entries: std::mem::take(&mut turn.history),
        };
        if !stored_turn.entries.is_empty() {
            turn.commit.history = vec![encode(&stored_turn)];
            live.stored.history_len += 1;
        }
        let snapshot = encode(&live.stored);
        turn.commit.snapshot = Some(if ended {
            SnapshotChange::Finished(snapshot)
        } else {
            SnapshotChange::Running(snapshot)
        });
        let outbox = turn.commit.outbox.len();
        let ack = self.store.commit(std::mem::take(&mut turn.commit))?;
        let mut effects = turn.effects;
        if outbox > 0 {
            effects.push(Effect::Deliver);
        }
        if self.events.receiver_count() > 0 && !stored_turn.entries.is_empty() {
            effects.push(Effect::Publish(stored_turn.into_records().collect()));
        }
        if ended {
            // Only callers of `wait_for_end` need the final state; one that registers after this
            // check finds the instance ended in the store (the commit is applied already).
            let id = live.stored.instance.id();
            let awaited = self
                .ended_waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id);
            effects.push(Effect::Ended(
                awaited.then(|| InstanceInfo::of(&live.stored)),
            ));
        }
        Ok((ack, effects))
    }

    /// Completes a wait from outside (API, handler, timer, message) and waits until durable.
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        expected: &'static str,
        accepts: impl Fn(&Wait) -> bool,
        outputs: Map<String, Value>,
        history: Vec<HistoryEntry>,
        changes: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<InstanceInfo, EngineError> {
        let live = self.live_instance(instance)?;
        let _busy = self.busy();
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let Some(wait) = guard.stored.instance.wait(activation).cloned() else {
                return Err(EngineError::NoSuchWait {
                    instance: instance.to_string(),
                    activation,
                    expected,
                });
            };
            if !accepts(&wait) {
                return Err(EngineError::NoSuchWait {
                    instance: instance.to_string(),
                    activation,
                    expected,
                });
            }
            let mut turn = Turn::new(instance);
            turn.history.extend(history);
            for (table, key, value) in changes {
                turn.commit.changes.push(TableChange { table, key, value });
            }
            self.step_live(&mut guard, &mut turn, |instance, process, hooks| {
                instance.complete(process, activation, outputs, hooks)
            })?;
            guard
                .stored
                .incidents
                .retain(|i| i.activation != activation);
            let (ack, effects) = self.finish_turn(&mut guard, turn)?;
            (ack, effects, InstanceInfo::of(&guard.stored))
        };
        ack.durable().await?;
        self.apply_effects(instance, effects);
        Ok(info)
    }

    /// Runs background work; it counts as busy and stops at [`Engine::shutdown`].
    fn spawn<F, Fut>(self: &Arc<Self>, work: F)
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.stop.subscribe();
        if *stop.borrow() {
            return;
        }
        self.busy.fetch_add(1, Ordering::SeqCst);
        let guard = BusyToken(self.clone());
        let work = work(self.clone());
        tokio::spawn(async move {
            let _guard = guard;
            tokio::select! {
                _ = work => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }

    /// Acts on a durable turn.
    fn apply_effects(self: &Arc<Self>, instance: &str, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::RunJob(wait) => {
                    let id = instance.to_string();
                    self.spawn(|inner| async move { inner.run_job(&id, wait).await });
                }
                Effect::ArmTimer { due_ms, activation } => {
                    let target = TimerTarget::Wait {
                        instance: instance.to_string(),
                        activation,
                    };
                    self.timers
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Reverse((due_ms, target)));
                    self.timers_changed.notify_one();
                }
                Effect::CheckBuffered {
                    name,
                    correlation_key,
                    activation,
                } => {
                    let id = instance.to_string();
                    self.spawn(|inner| async move {
                        if let Err(err) = inner.take_buffered(&id, &name, correlation_key.as_deref(), activation).await {
                            tracing::error!(instance = %id, error = %err, "delivering a buffered message failed");
                        }
                    });
                }
                Effect::Deliver => self.spawn(|inner| async move { inner.deliver_outbox().await }),
                Effect::Publish(records) => {
                    for record in records {
                        let _ = self.events.send(EngineEvent {
                            instance: instance.to_string(),
                            record,
                        });
                    }
                }
                Effect::Ended(info) => {
                    self.live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(instance);
                    let waiters = self
                        .ended_waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(instance);
                    // Without `info` the senders are dropped and each waiter reads the store.
                    if let Some(info) = info {
                        for waiter in waiters.into_iter().flatten() {
                            let _ = waiter.send(info.clone());
                        }
                    }
                }
            }
        }
    }

    /// Runs a job's handler with retries; completes the wait exactly once.
    async fn run_job(self: &Arc<Self>, instance: &str, wait: Wait) {
        let handler_name = match &wait.kind {
            WaitKind::Job { handler } => handler.clone(),
            // Auto-completed waits resumed after a restart (user tasks, receive tasks).
            WaitKind::User { .. } | WaitKind::Message { .. } => None,
            WaitKind::Llm { task } => {
                let task = task.clone();
                self.run_llm(instance, wait, &task).await;
                return;
            }
            _ => return,
        };
        let handler = self.handler_for(handler_name.as_deref()).cloned();
        let Some(handler) = handler else {
            if self.options.auto_complete {
                self.complete_job(instance, &wait, Map::new(), Vec::new())
                    .await;
            } else {
                let message = format!(
                    "no handler is registered for `{}`",
                    handler_name.unwrap_or_default()
                );
                self.raise_incident(instance, &wait, message, 0).await;
            }
            return;
        };
        let policy = self.retry_policy(instance, &wait.node);
        let mut attempt = self.resume_attempts(instance, wait.activation).await;
        loop {
            let Some(variables) = self.variables_while_waiting(instance, wait.activation) else {
                return;
            };
            let ctx = JobContext {
                instance: instance.to_string(),
                node: wait.node.clone(),
                activation: wait.activation,
                idempotency_key: wait.idempotency_key.clone(),
                variables,
                attempt,
            };
            match handler(ctx).await {
                Ok(outputs) => {
                    self.complete_job(instance, &wait, outputs, Vec::new())
                        .await;
                    return;
                }
                Err(err) => {
                    let retry_at = (attempt <= policy.retries)
                        .then(|| self.clock.now_ms() + backoff_ms(&policy, attempt));
                    if !self
                        .after_failed_call(instance, &wait, attempt, err.0, retry_at, "handler")
                        .await
                    {
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// After call number `attempt` of a job or LLM step (`what`) failed with `error`: records the
    /// failure, then sleeps until `retry_at` and returns `true` (call again), or, without a retry
    /// left, raises an incident and returns `false`.
    async fn after_failed_call(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        attempt: u32,
        error: String,
        retry_at: Option<u64>,
        what: &str,
    ) -> bool {
        tracing::warn!(instance, node = %wait.node, attempt, %error, "{what} failed");
        let entry = HistoryEntry::JobFailed {
            node: wait.node.clone(),
            activation: wait.activation,
            attempt,
            error: error.clone(),
            retry_at_ms: retry_at,
        };
        if let Err(e) = self
            .record_failure(instance, wait.activation, attempt, retry_at, entry)
            .await
        {
            tracing::error!(instance, error = %e, "recording a {what} failure failed");
        }
        match retry_at {
            Some(at) => {
                self.clock.sleep_until(at).await;
                true
            }
            None => {
                self.raise_incident(instance, wait, error, attempt).await;
                false
            }
        }
    }

    /// The instance's variables while the wait `activation` is still open; `None` once the wait was
    /// completed or cancelled meanwhile, or the instance is gone (the caller then stops).
    fn variables_while_waiting(
        &self,
        instance: &str,
        activation: u64,
    ) -> Option<Map<String, Value>> {
        let live = self.live_instance(instance).ok()?;
        let guard = live.lock().unwrap_or_else(|e| e.into_inner());
        guard.stored.instance.wait(activation)?;
        Some(guard.stored.instance.variables().clone())
    }

    /// Answers an LLM step with the generator (off the async threads), with the retries of the
    /// task's own retry policy (none when it declares none); the output and the call's record go
    /// into the completing turn. A task that cannot be rendered, or a request the generator
    /// rejects, becomes an incident at once.
    async fn run_llm(self: &Arc<Self>, instance: &str, wait: Wait, task: &LlmTask) {
        let Some(generator) = self.generator.clone() else {
            return;
        };
        let policy = self
            .declared_retry_policy(instance, &wait.node)
            .unwrap_or(RetryPolicy {
                retries: 0,
                initial_delay_ms: 0,
                max_delay_ms: 0,
            });
        let mut attempt = self.resume_attempts(instance, wait.activation).await;
        loop {
            let Some(variables) = self.variables_while_waiting(instance, wait.activation) else {
                return;
            };
            let request = match llm_step::build_request(task, &variables) {
                Ok(request) => request,
                Err(message) => {
                    self.raise_incident(instance, &wait, message, attempt).await;
                    return;
                }
            };
            let call = {
                let generator = generator.clone();
                let request = request.clone();
                tokio::task::spawn_blocking(move || generator.generate(&request)).await
            };
            let result = call
                .unwrap_or_else(|e| Err(LlmError::Backend(format!("the generator stopped: {e}"))));
            match result {
                Ok(response) => {
                    let outputs = llm_step::output_variables(task, &response);
                    tracing::info!(
                        instance,
                        node = %wait.node,
                        prompt_tokens = response.prompt_tokens,
                        completion_tokens = response.completion_tokens,
                        elapsed_ms = response.elapsed.as_millis() as u64,
                        "LLM step answered"
                    );
                    let record = HistoryEntry::llm_called(&wait, attempt, request.prompt, response);
                    self.complete_job(instance, &wait, outputs, vec![record])
                        .await;
                    return;
                }
                Err(err) => {
                    let retryable = matches!(err, LlmError::Backend(_));
                    let retry_at = (retryable && attempt <= policy.retries)
                        .then(|| self.clock.now_ms() + backoff_ms(&policy, attempt));
                    if !self
                        .after_failed_call(
                            instance,
                            &wait,
                            attempt,
                            err.to_string(),
                            retry_at,
                            "LLM step",
                        )
                        .await
                    {
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// The retry policy the node declares, if any.
    fn declared_retry_policy(&self, instance: &str, node: &str) -> Option<RetryPolicy> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned();
        live.and_then(|live| {
            live.lock()
                .unwrap_or_else(|e| e.into_inner())
                .deployed
                .retries
                .get(node)
                .cloned()
        })
    }

    /// The handler that runs jobs naming `name`: the registered one, else the fallback.
    fn handler_for(&self, name: Option<&str>) -> Option<&Handler> {
        name.and_then(|n| self.handlers.get(n))
            .or(self.fallback.as_ref())
    }

    fn retry_policy(&self, instance: &str, node: &str) -> RetryPolicy {
        self.declared_retry_policy(instance, node)
            .unwrap_or_else(|| self.options.default_retry.clone())
    }

    /// Completes a job (or LLM step) with its outputs and the history of the call, recording the
    /// completion under the idempotency key in the same turn; a completion already recorded is
    /// never applied twice.
    async fn complete_job(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        outputs: Map<String, Value>,
        history: Vec<HistoryEntry>,
    ) {
        let key = wait.idempotency_key.clone().into_bytes();
        match self.store.get(Table::Completions, &key) {
            Ok(Some(_)) => {
                tracing::debug!(instance, key = %wait.idempotency_key, "completion already recorded");
                return;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(instance, error = %err, "cannot read completion records");
                return;
            }
        }
        let record = encode(&outputs);
        let result = self
            .drive(
                instance,
                wait.activation,
                "job",
                |_| true,
                outputs,
                history,
                vec![(Table::Completions, key, Some(record))],
            )
            .await;
        match result {
            Ok(_) | Err(EngineError::NoSuchWait { .. }) => {}
            Err(EngineError::Exec(ExecError::Rejected { node, reason })) => {
                self.raise_incident(
                    instance,
                    wait,
                    format!("completion of `{node}` refused: {reason}"),
                    1,
                )
                .await;
            }
            Err(err) => tracing::error!(instance, error = %err, "completing a job failed"),
        }
    }

    async fn raise_incident(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        message: String,
        attempts: u32,
    ) {
        let Ok(live) = self.live_instance(instance) else {
            return;
        };
        let result = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let incident = EngineIncident {
                activation: wait.activation,
                node: wait.node.clone(),
                message,
                attempts,
            };
            guard
                .stored
                .incidents
                .retain(|i| i.activation != wait.activation);
            guard.stored.incidents.push(incident.clone());
            let mut turn = Turn::new(instance);
            turn.history.push(HistoryEntry::IncidentRaised { incident });
            self.finish_turn(&mut guard, turn)
        };
        match result {
            Ok((ack, effects)) => {
                if let Err(err) = ack.durable().await {
                    tracing::error!(instance, error = %err, "recording an incident failed");
                    return;
                }
                self.apply_effects(instance, effects);
            }
            Err(err) => tracing::error!(instance, error = %err, "recording an incident failed"),
        }
    }

    /// Records the `failed`-th failed call of the job `activation` with its history entry, and
    /// when the next call is due, in one turn: a restart resumes the count and the backoff.
    async fn record_failure(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        failed: u32,
        retry_at_ms: Option<u64>,
        entry: HistoryEntry,
    ) -> Result<(), EngineError> {
        let live = self.live_instance(instance)?;
        let (ack, effects) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let attempts = JobAttempts {
                activation,
                failed,
                retry_at_ms: retry_at_ms.unwrap_or_else(|| self.clock.now_ms()),
            };
            guard.stored.attempts.retain(|a| a.activation != activation);
            guard.stored.attempts.push(attempts);
            let mut turn = Turn::new(instance);
            turn.history = vec![entry];
            self.finish_turn(&mut guard, turn)?
        };
        ack.durable().await?;
        self.apply_effects(instance, effects);
        Ok(())
    }

    /// The number of the next call of the job `activation`: 1, or after a restart one more than
    /// the failed calls recorded; waits first until a recorded retry is due.
    async fn resume_attempts(&self, instance: &str, activation: u64) -> u32 {
        let recorded = self.live_instance(instance).ok().and_then(|live| {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .stored
                .attempts
                .iter()
                .find(|a| a.activation == activation)
                .copied()
        });
        match recorded {
            Some(recorded) => {
                if recorded.retry_at_ms > self.clock.now_ms() {
                    self.clock.sleep_until(recorded.retry_at_ms).await;
                }
                recorded.failed.saturating_add(1)
            }
            None => 1,
        }
    }

    /// Delivers a message to the instance waiting for `name` with `correlation_key`; when none
    /// waits, keeps it for the configured time and delivers it to the first instance that does.
    async fn correlate(
        self: &Arc<Self>,
        name: &str,
        correlation_key: Option<&str>,
        variables: Map<String, Value>,
    ) -> Result<Correlation, EngineError> {
        let inner = self;
        let (target, buffered) = {
            let _lock = inner.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let subscribers = inner.store.scan(
                Table::Subscriptions,
                &message_subscription_prefix(name, correlation_key),
            )?;
            let message_start = match subscribers.first() {
                Some(_) => None,
                None => inner
                    .triggered_starts(
                        |start| matches!(start, StartTrigger::Message { name: n, .. } if n == name),
                    )
                    .into_iter()
                    .next(),
            };
            match (subscribers.first(), message_start) {
                (Some((_, value)), _) => (
                    Some(decode::<Subscriber>(value, "subscription").map_err(EngineError::Decode)?),
                    None,
                ),
                (None, Some((deployed, node))) => {
                    let history = vec![HistoryEntry::StartedByMessage {
                        node: node.clone(),
                        name: name.to_string(),
                        correlation_key: correlation_key.map(str::to_string),
                    }];
                    let _busy = inner.busy();
                    let (ack, effects, info) = inner.begin_instance(
                        deployed,
                        Some(&node),
                        variables,
                        history,
                        Vec::new(),
                    )?;
                    drop(_lock);
                    ack.durable().await?;
                    inner.apply_effects(&info.id, effects);
                    return Ok(Correlation::Started { instance: info.id });
                }
                (None, None) => {
                    let expires_ms =
                        inner.clock.now_ms() + inner.options.message_ttl.as_millis() as u64;
                    let mut key = buffered_prefix(name, correlation_key);
                    key.extend_from_slice(
                        &inner
                            .message_seq
                            .fetch_add(1, Ordering::Relaxed)
                            .to_be_bytes(),
                    );
                    let mut commit = StepCommit::default();
                    commit.put(
                        Table::BufferedMessages,
                        key,
                        encode(&BufferedMessage {
                            variables: variables.clone(),
                            expires_ms,
                        }),
                    );
                    (None, Some((inner.store.commit(commit)?, expires_ms)))
                }
            }
        };
        if let Some((ack, expires_ms)) = buffered {
            ack.durable().await?;
            tracing::debug!(message = name, "no subscriber yet: message buffered");
            return Ok(Correlation::Buffered { expires_ms });
        }
        let sub = target.expect("a subscriber when not buffered");
        let history = vec![HistoryEntry::MessageCorrelated {
            name: name.to_string(),
            correlation_key: correlation_key.map(str::to_string),
            activation: sub.activation,
        }];
        inner
            .drive(
                &sub.instance,
                sub.activation,
                "message wait",
                |w| matches!(w.kind, WaitKind::Message { .. }),
                variables,
                history,
                Vec::new(),
            )
            .await?;
        Ok(Correlation::Delivered {
            instance: sub.instance,
            activation: sub.activation,
        })
    }

    /// The triggered start events that `matches`, with their latest deployed versions (processes
    /// in id order, start events in document order).
    fn triggered_starts(
        &self,
        matches: impl Fn(&StartTrigger) -> bool,
    ) -> Vec<(Arc<Deployed>, String)> {
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut found = Vec::new();
        for deployed in versions.latest_all() {
            for start in deployed.starts.iter().filter(|start| matches(start)) {
                found.push((deployed.clone(), start.node().to_string()));
            }
        }
        found
    }

    /// Delivers a signal to every instance waiting for it and starts an instance of every latest
    /// version with a signal start event of that name; returns how many waits and starts it reached.
    async fn signal(
        self: &Arc<Self>,
        name: &str,
        variables: Map<String, Value>,
    ) -> Result<usize, EngineError> {
        let subscribers = self
            .store
            .scan(Table::Subscriptions, &signal_subscription_prefix(name))?;
        let mut delivered = 0;
        let starts = self.triggered_starts(
            |start| matches!(start, StartTrigger::Signal { name: n, .. } if n == name),
        );
        for (deployed, node) in starts {
            let history = vec![HistoryEntry::StartedBySignal {
                node: node.clone(),
                name: name.to_string(),
            }];
            let _busy = self.busy();
            let (ack, effects, info) = self.begin_instance(
                deployed,
                Some(&node),
                variables.clone(),
                history,
                Vec::new(),
            )?;
            ack.durable().await?;
            self.apply_effects(&info.id, effects);
            delivered += 1;
        }
        for (_, value) in subscribers {
            let sub: Subscriber = decode(&value, "subscription").map_err(EngineError::Decode)?;
            let history = vec![HistoryEntry::SignalReceived {
                name: name.to_string(),
                activation: sub.activation,
            }];
            match self
                .drive(
                    &sub.instance,
                    sub.activation,
                    "signal wait",
                    |w| matches!(w.kind, WaitKind::Signal { .. }),
                    variables.clone(),
                    history,
                    Vec::new(),
                )
                .await
            {
                Ok(_) => delivered += 1,
                Err(EngineError::NoSuchWait { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(delivered)
    }

    /// A new message wait looks for a message that arrived before it.
    async fn take_buffered(
        self: &Arc<Self>,
        instance: &str,
        name: &str,
        correlation_key: Option<&str>,
        activation: u64,
    ) -> Result<(), EngineError> {
        let found = {
            let _lock = self.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let now = self.clock.now_ms();
            let mut found = None;
            for (key, value) in self.store.scan(
                Table::BufferedMessages,
                &buffered_prefix(name, correlation_key),
            )? {
                let message: BufferedMessage =
                    decode(&value, "buffered message").map_err(EngineError::Decode)?;
                if message.expires_ms >= now {
                    found = Some((key, message));
                    break;
                }
            }
            found
        };
        let Some((key, message)) = found else {
            return Ok(());
        };
        let history = vec![HistoryEntry::MessageCorrelated {
            name: name.to_string(),
            correlation_key: correlation_key.map(str::to_string),
            activation,
        }];
        match self
            .drive(
                instance,
                activation,
                "message wait",
                |w| matches!(w.kind, WaitKind::Message { .. }),
                message.variables,
                history,
                vec![(Table::BufferedMessages, key, None)],
            )
            .await
        {
            Ok(_) | Err(EngineError::NoSuchWait { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Delivers pending outbox entries (thrown messages and signals) and removes them.
    async fn deliver_outbox(self: &Arc<Self>) {
        let _delivering = self.delivering.lock().await;
        let entries = match self.store.pending_outbox() {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the outbox");
                return;
            }
        };
        for entry in entries {
            match decode::<OutboxEntry>(&entry.payload, "outbox entry") {
                Ok(OutboxEntry::Rule { instance, effect }) => {
                    let delivered = match &self.effect_sink {
                        Some(sink) => sink(&instance, &effect),
                        None => {
                            tracing::info!(instance = %instance, effect = ?effect, "rule effect");
                            Ok(())
                        }
                    };
                    if let Err(err) = delivered {
                        tracing::error!(instance = %instance, error = %err, "delivering a rule effect failed; it stays in the outbox");
                        continue;
                    }
                }
                Ok(OutboxEntry::Thrown(node, thrown)) => {
                    let name = thrown.name.clone().unwrap_or_default();
                    let result = match thrown.kind.as_str() {
                        "signal" => self
                            .signal(&name, Map::new())
                            .await
                            .map(|n| format!("signal reached {n} waits")),
                        "message" => self
                            .correlate(&name, None, Map::new())
                            .await
                            .map(|c| format!("{c:?}")),
                        other => Ok(format!("{other} `{name}` has no receiver in the engine")),
                    };
                    match result {
                        Ok(outcome) => {
                            tracing::debug!(node = %node, outcome = %outcome, "thrown event delivered")
                        }
                        Err(err) => {
                            tracing::error!(node = %node, error = %err, "delivering a thrown event failed; it stays in the outbox");
                            continue;
                        }
                    }
                }
                Err(err) => tracing::error!(error = %err, "dropping an unreadable outbox entry"),
            }
            if let Err(err) = self.store.ack_outbox(&[entry.seq]) {
                tracing::error!(error = %err, "cannot acknowledge an outbox entry");
            }
        }
    }

    /// Fires every timer due now.
    async fn fire_due(self: &Arc<Self>) {
        let now = self.clock.now_ms();
        let mut due = Vec::new();
        {
            let mut timers = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(Reverse((at, _))) = timers.peek() {
                if *at > now {
                    break;
                }
                let Reverse(entry) = timers.pop().expect("peeked");
                due.push(entry);
            }
        }
        for (due_ms, target) in due {
            match target {
                TimerTarget::Wait {
                    instance,
                    activation,
                } => self.fire_wait_timer(&instance, activation, due_ms).await,
                TimerTarget::Start { process_id, node } => {
                    self.fire_schedule(&process_id, &node, due_ms).await
                }
            }
        }
    }

    /// A timer wait is due: a repeating non-interrupting boundary timer ticks (its path runs, the
    /// timer is re-armed for the next occurrence in the same turn); any other timer completes its
    /// wait.
    async fn fire_wait_timer(self: &Arc<Self>, instance: &str, activation: u64, due_ms: u64) {
        let Ok(live) = self.live_instance(instance) else {
            return;
        };
        let (armed, node, next) = {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let armed = guard
                .stored
                .timers
                .iter()
                .find(|t| t.activation == activation && t.due_ms == due_ms)
                .copied();
            let wait = guard.stored.instance.wait(activation).cloned();
            let next = match (&armed, &wait) {
                (Some(armed), Some(wait)) => next_boundary_tick(&guard.deployed, wait, armed),
                _ => None,
            };
            (armed, wait.map(|w| w.node).unwrap_or_default(), next)
        };
        let Some(armed) = armed else { return };
        let result = match next {
            Some(next) => self.tick_boundary(instance, armed, next).await,
            None => {
                let history = vec![HistoryEntry::TimerFired { node, activation }];
                self.drive(
                    instance,
                    activation,
                    "timer",
                    |w| matches!(w.kind, WaitKind::Timer { .. }),
                    Map::new(),
                    history,
                    Vec::new(),
                )
                .await
                .map(|_| ())
            }
        };
        if let Err(err) = result {
            tracing::warn!(instance = %instance, activation, error = %err, "timer could not fire");
        }
    }

    /// One tick of a repeating non-interrupting boundary timer: the boundary path runs once more
    /// and the timer is re-armed at `next`, in one turn.
    async fn tick_boundary(
        self: &Arc<Self>,
        instance: &str,
        armed: ArmedTimer,
        next: ArmedTimer,
    ) -> Result<(), EngineError> {
        let live = self.live_instance(instance)?;
        let _busy = self.busy();
        let (ack, effects) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let node = guard
                .stored
                .instance
                .wait(armed.activation)
                .map(|w| w.node.clone())
                .unwrap_or_default();
            let mut turn = Turn::new(instance);
            turn.history.push(HistoryEntry::TimerFired {
                node: node.clone(),
                activation: armed.activation,
            });
            self.step_live(&mut guard, &mut turn, |instance, process, hooks| {
                instance.tick_boundary(process, armed.activation, hooks)
            })?;
            if let Some(position) = guard.stored.timers.iter().position(|t| *t == armed) {
                guard.stored.timers[position] = next;
                turn.commit.remove(
                    Table::Timers,
                    crate::store::timer_key(armed.due_ms, instance, armed.activation),
                );
                turn.commit.put(
                    Table::Timers,
                    crate::store::timer_key(next.due_ms, instance, next.activation),
                    Vec::new(),
                );
                turn.history.push(HistoryEntry::TimerArmed {
                    node,
                    activation: next.activation,
                    due_ms: next.due_ms,
                });
                turn.effects.push(Effect::ArmTimer {
                    due_ms: next.due_ms,
                    activation: next.activation,
                });
            }
            self.finish_turn(&mut guard, turn)?
        };
        ack.durable().await?;
        self.apply_effects(instance, effects);
        Ok(())
    }

    /// The schedules of the timer start events of `process_id` for its new `version`: a start
    /// event whose timer is unchanged keeps its next tick (no tick is skipped or repeated by a
    /// redeployment); a new or changed one is due at its first occurrence from now; schedules of
    /// start events that are gone are removed. The changes go into `commit`.
    fn reschedule(
        &self,
        process_id: &str,
        version: u32,
        starts: &[StartTrigger],
        commit: &mut StepCommit,
    ) -> Vec<StoredSchedule> {
        let now = self.clock.now_ms();
        let existing: HashMap<String, StoredSchedule> = self
            .schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((process, _), _)| process == process_id)
            .map(|((_, node), schedule)| (node.clone(), schedule.clone()))
            .collect();
        let mut schedules = Vec::new();
        for start in starts {
            let StartTrigger::Timer { node, timer } = start else {
                continue;
            };
            let kept = existing
                .get(node)
                .filter(|old| same_timer(&old.timer, timer));
            let (next_due_ms, occurrence) = match kept {
                Some(old) => (old.next_due_ms, old.occurrence),
                None => match TimerSpec::of(timer)
                    .ok()
                    .and_then(|spec| spec.first_occurrence(now))
                {
                    Some(first) => first,
                    None => {
                        tracing::warn!(process = process_id, node = %node, "the timer start event never fires");
                        continue;
                    }
                },
            };
            let schedule = StoredSchedule {
                process_id: process_id.to_string(),
                version,
                node: node.clone(),
                timer: timer.clone(),
                next_due_ms,
                occurrence,
            };
            commit.put(
                Table::Schedules,
                schedule_key(process_id, node),
                encode(&schedule),
            );
            schedules.push(schedule);
        }
        for node in existing
            .keys()
            .filter(|node| !schedules.iter().any(|s| &s.node == *node))
        {
            commit.remove(Table::Schedules, schedule_key(process_id, node));
        }
        schedules
    }

    /// Puts the next tick of a schedule on the timer heap.
    fn arm_schedule(&self, schedule: &StoredSchedule) {
        let target = TimerTarget::Start {
            process_id: schedule.process_id.clone(),
            node: schedule.node.clone(),
        };
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((schedule.next_due_ms, target)));
        self.timers_changed.notify_one();
    }

    /// A timer start event's tick is due: starts an instance of the latest version at the start
    /// event, and moves the schedule to the next tick in the instance's first commit, so that
    /// each tick starts exactly one instance even across crashes. A tick whose instance cannot
    /// start (a rule refuses it) is logged and the schedule moves on.
    async fn fire_schedule(self: &Arc<Self>, process_id: &str, node: &str, due_ms: u64) {
        let _busy = self.busy();
        let key = (process_id.to_string(), node.to_string());
        let prepared = {
            let _lock = self.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let schedule = self
                .schedules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            // A tick armed before a redeployment moved the schedule is stale.
            let Some(schedule) = schedule.filter(|s| s.next_due_ms == due_ms) else {
                return;
            };
            let next = TimerSpec::of(&schedule.timer)
                .ok()
                .and_then(|spec| spec.next_due(due_ms, schedule.occurrence))
                .map(|next_due_ms| StoredSchedule {
                    next_due_ms,
                    occurrence: schedule.occurrence + 1,
                    ..schedule.clone()
                });
            let change = TableChange {
                table: Table::Schedules,
                key: schedule_key(process_id, node),
                value: next.as_ref().map(encode),
            };
            let deployed = self
                .versions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .latest(process_id)
                .cloned();
            let history = vec![HistoryEntry::StartedByTimer {
                node: node.to_string(),
                due_ms,
                occurrence: schedule.occurrence,
            }];
            let started = deployed
                .ok_or_else(|| EngineError::UnknownProcess(process_id.to_string()))
                .and_then(|deployed| {
                    self.begin_instance(
                        deployed,
                        Some(node),
                        Map::new(),
                        history,
                        vec![change.clone()],
                    )
                });
            let committed = match started {
                Ok((ack, effects, info)) => Ok((ack, effects, info.id)),
                Err(err) => {
                    tracing::error!(process = process_id, node, due_ms, error = %err, "a timer start event's tick could not start an instance");
                    let commit = StepCommit {
                        changes: vec![change],
                        ..StepCommit::default()
                    };
                    self.store
                        .commit(commit)
                        .map(|ack| (ack, Vec::new(), String::new()))
                }
            };
            let mut table = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
            match &next {
                Some(next) => table.insert(key, next.clone()),
                None => table.remove(&key),
            };
            committed.map(|done| (done, next))
        };
        match prepared {
            Ok(((ack, effects, instance), next)) => {
                if let Err(err) = ack.durable().await {
                    tracing::error!(process = process_id, node, error = %err, "committing a timer start event's tick failed");
                    return;
                }
                tracing::debug!(process = process_id, node, due_ms, instance = %instance, "timer start event ticked");
                self.apply_effects(&instance, effects);
                if let Some(next) = next {
                    self.arm_schedule(&next);
                }
            }
            Err(err) => {
                tracing::error!(process = process_id, node, error = %err, "committing a timer start event's tick failed")
            }
        }
    }

    /// Creates an instance of `deployed` (at the start event `at`, else at its none start
    /// events) and commits its first turn with `history` and `changes`; registers it as live.
    /// The caller awaits the ack, then applies the effects.
    fn begin_instance(
        &self,
        deployed: Arc<Deployed>,
        at: Option<&str>,
        variables: Map<String, Value>,
        history: Vec<HistoryEntry>,
        changes: Vec<TableChange>,
    ) -> Result<(Ack, Vec<Effect>, InstanceInfo), EngineError> {
        let id = format!("{}-{}", deployed.process_id, self.store.next_id()?);
        let started = match at {
            Some(node) => Instance::start_at(
                &deployed.process,
                node,
                id.clone(),
                variables,
                self.hooks.as_ref(),
            ),
            None => Instance::start(
                &deployed.process,
                id.clone(),
                variables,
                self.hooks.as_ref(),
            ),
        };
        let (instance, step) = started.inspect_err(|_| self.discard_rule_effects(&id))?;
        let stored = StoredInstance {
            process_id: deployed.process_id.clone(),
            version: deployed.version,
            instance,
            history_len: 0,
            incidents: Vec::new(),
            timers: Vec::new(),
            attempts: Vec::new(),
        };
        let live = Arc::new(Mutex::new(Live { stored, deployed }));
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let mut turn = Turn::new(&id);
            turn.history = history;
            turn.commit.first = true;
            turn.commit.changes = changes;
            self.absorb(&mut guard, step, &[], Status::Running, &mut turn);
            let (ack, effects) = self.finish_turn(&mut guard, turn)?;
            (ack, effects, InstanceInfo::of(&guard.stored))
        };
        if !info.ended() {
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, live);
        }
        Ok((ack, effects, info))
    }
}

/// What an armed timer is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerTarget {
    /// A timer wait of an instance.
    Wait {
        /// The instance.
        instance: String,
        /// The timer wait's activation.
        activation: u64,
    },
    /// The next tick of a timer start event.
    Start {
        /// The process.
        process_id: String,
        /// The timer start event.
        node: String,
    },
}

/// Refuses a deployment whose timer start events cannot be scheduled, naming where they are.
fn check_start_timers(defs: &Definitions, starts: &[StartTrigger]) -> Result<(), EngineError> {
    let problems: Vec<Diagnostic> = starts
        .iter()
        .filter_map(|start| match start {
            StartTrigger::Timer { node, timer } => TimerSpec::of(timer).err().map(|err| {
                Diagnostic::error(&defs.source, timer.expression.span, err.to_string())
                    .with_id(node.clone())
            }),
            _ => None,
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Compile(problems))
    }
}

/// Whether two timers fire at the same moments (their text and zone; where they are written
/// does not matter).
fn same_timer(a: &crate::model::Timer, b: &crate::model::Timer) -> bool {
    a.kind == b.kind
        && a.expression.source.trim() == b.expression.source.trim()
        && a.time_zone == b.time_zone
}

/// For the timer wait of a non-interrupting boundary event with a repeating timer: the next
/// occurrence after `armed`, if the cycle goes on. `None` when the wait is anything else or this
/// is the cycle's last occurrence (the wait then completes).
fn next_boundary_tick(deployed: &Deployed, wait: &Wait, armed: &ArmedTimer) -> Option<ArmedTimer> {
    let WaitKind::Timer { definition } = &wait.kind else {
        return None;
    };
    if !wait.is_non_interrupting_boundary_timer(&deployed.process) {
        return None;
    }
    let due_ms = TimerSpec::of(definition)
        .ok()?
        .next_due(armed.due_ms, armed.occurrence)?;
    Some(ArmedTimer {
        activation: armed.activation,
        due_ms,
        occurrence: armed.occurrence + 1,
    })
}

/// Exponential backoff: `initial × 2^(attempt-1)`, at most `max`.
fn backoff_ms(policy: &RetryPolicy, attempt: u32) -> u64 {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    policy
        .initial_delay_ms
        .saturating_mul(factor)
        .min(policy.max_delay_ms.max(policy.initial_delay_ms))
}

/// Sleeps until the earliest timer, fires it, repeats; ends when the engine is dropped.
async fn timer_loop(inner: Weak<Inner>) {
    loop {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        let timers_changed = engine.timers_changed.clone();
        let changed = timers_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let next = engine
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peek()
            .map(|Reverse((at, _))| *at);
        match next {
            None => {
                drop(engine);
                // Wake up now and then to notice that the engine is gone.
                let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
            }
            Some(at) if at <= engine.clock.now_ms() => engine.fire_due().await,
            Some(at) if engine.clock.is_virtual() => {
                // Virtual time only moves when nothing is running.
                let idle_notify = engine.idle.clone();
                let idle = idle_notify.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if engine.busy.load(Ordering::SeqCst) > 0 {
                    drop(engine);
                    tokio::select! {
                        _ = &mut idle => {}
                        _ = &mut changed => {}
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
                // Let freshly spawned work register as busy before jumping.
                tokio::task::yield_now().await;
                if engine.busy.load(Ordering::SeqCst) > 0 {
                    continue;
                }
                engine.clock.sleep_until(at).await;
            }
            Some(at) => {
                let sleep = engine.clock.sleep_until(at);
                drop(engine);
                tokio::select! {
                    _ = sleep => {}
                    _ = &mut changed => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod llm_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;
