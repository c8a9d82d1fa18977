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
//!
//! The parts, each with the invariant it keeps at its top: `api` (types), `builder`
//! (construction), `engine` (public methods), `listing` (instances, tasks, incidents), `turn`
//! (one executor call = one commit), `effects` (acting on durable turns), `jobs` (handlers and
//! LLM steps), `messaging` (messages, signals, outbox), `notifications` (the notification log),
//! `timers`, `schedules` (timer start events), `recovery` (restart), `retention` (the sweeper).
//! This file holds the state they share.

mod api;
mod builder;
mod calls;
mod effects;
mod engine;
mod handlers;
mod jobs;
mod listing;
pub mod llm_step;
mod messaging;
mod notifications;
mod record;
mod recovery;
mod retention;
mod schedules;
mod timers;
mod turn;
mod versions;

pub use api::{
    parse_wait_id, wait_id, AutoComplete, ChildIncident, Correlation, Deployment, EffectSink,
    EngineError, EngineEvent, EngineOptions, IncidentInfo, InstanceFilter, InstanceInfo, Page,
    SharedHooks, StartRequest, TaskFilter, TaskInfo, WaitInfo,
};
pub use builder::EngineBuilder;
pub use calls::MAX_CALL_DEPTH;
pub use engine::{read_history, Engine};
pub use handlers::HandlerFailure;
pub use handlers::{handler, Handler, HandlerError, HandlerFuture, JobContext};
pub use notifications::{Notification, NotificationKind};
pub use record::{EngineIncident, HistoryEntry, HistoryRecord};
pub use retention::{Retention, SweepReport};
pub use versions::{Deployed, StartTrigger};

use crate::clock::Clock;
use crate::diagnostics::Diagnostic;
use crate::executor::{ExecError, Instance, Wait};
use crate::llm::TextGenerator;
use crate::model::Definitions;
use crate::rules::SharedRuleHooks;
use crate::script::ScriptRuntime;
use crate::shard::{shard_of, ShardSet};
use crate::store::Store;
use record::{StoredInstance, StoredSchedule};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use timers::TimerTarget;
use tokio::sync::{broadcast, oneshot, Notify};
use versions::Versions;

fn compile(
    defs: &Definitions,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
    catalog: &crate::graph::Catalog,
) -> Result<(crate::graph::CompiledProcess, Vec<Diagnostic>), EngineError> {
    let (compiled, diagnostics) = crate::graph::compile_with(defs, process, scripts, catalog);
    match compiled {
        Some(compiled) => Ok((compiled, diagnostics)),
        None => Err(EngineError::Compile(diagnostics)),
    }
}

fn open_waits(instance: &Instance) -> Vec<Wait> {
    instance.waits().to_vec()
}

/// A running instance held in memory.
struct Live {
    stored: StoredInstance,
    deployed: Arc<Deployed>,
    /// Set when its shard was given up: a turn that reached it through an older reference
    /// commits nothing.
    released: bool,
}

impl Live {
    fn new(stored: StoredInstance, deployed: Arc<Deployed>) -> Live {
        Live {
            stored,
            deployed,
            released: false,
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
    /// The decisions (and other deployed things) processes are compiled against.
    catalog: crate::graph::Catalog,
    options: EngineOptions,
    /// Answers LLM steps, when set.
    generator: Option<Arc<dyn TextGenerator>>,
    versions: RwLock<Versions>,
    live: Mutex<HashMap<String, Arc<Mutex<Live>>>>,
    /// Durable history records for subscribers, shared (a receiver clones a pointer, not the record).
    events: broadcast::Sender<Arc<EngineEvent>>,
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
    /// Orders the messages this engine buffers (the key's counter, seeded from the start time).
    message_seq: AtomicU64,
    /// Ends the keys of the messages this engine buffers, so that engines sharing a store never
    /// write the same key (random per engine).
    message_key_tag: u64,
    /// One outbox delivery at a time.
    delivering: tokio::sync::Mutex<()>,
    /// Set by [`Engine::shutdown`]: background work stops.
    stop: tokio::sync::watch::Sender<bool>,
    /// The highest notification-log number known durable (readers see up to it).
    notified: tokio::sync::watch::Sender<u64>,
    /// Where the next retention sweep resumes paging through instances.
    sweep_cursor: Mutex<Option<String>>,
    /// The shards whose instances this engine serves ([`ShardSet`] bits).
    owned: AtomicU64,
}

impl Inner {
    fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self)
    }

    /// The ids of the instances in memory.
    fn live_ids(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// The shards this engine serves.
    fn owned(&self) -> ShardSet {
        ShardSet::from_bits(self.owned.load(Ordering::SeqCst))
    }

    fn live_instance(&self, id: &str) -> Result<Arc<Mutex<Live>>, EngineError> {
        if let Some(live) = self.live.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(live.clone());
        }
        let shard = shard_of(id);
        if !self.owned().contains(shard) {
            return Err(EngineError::NotOwned {
                instance: id.to_string(),
                shard,
            });
        }
        match self.store.instance(id)? {
            Some(_) => Err(EngineError::Exec(ExecError::NotActive("ended"))),
            None => Err(EngineError::UnknownInstance(id.to_string())),
        }
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

    /// Runs a background loop for the engine's life; unlike [`Inner::spawn`] it does not count as
    /// busy. It stops at shutdown; it must hold the engine only weakly, so that dropping the
    /// engine ends it too.
    fn spawn_until_stopped<Fut>(self: &Arc<Self>, work: Fut)
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.stop.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = work => {}
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
}

/// The timers an instance's stored snapshot holds armed (for tests).
#[cfg(test)]
fn armed_timers(engine: &Engine, id: &str) -> usize {
    let bytes = engine.inner.store.instance(id).unwrap().unwrap();
    record::decode::<StoredInstance>(&bytes, "instance")
        .unwrap()
        .timers
        .len()
}

#[cfg(test)]
mod call_tests;
#[cfg(test)]
mod llm_tests;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod shard_tests;
#[cfg(test)]
mod test_store;
#[cfg(test)]
mod tests;
