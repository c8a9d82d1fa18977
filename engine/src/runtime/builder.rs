//! [`EngineBuilder`]: what an engine is made of, and how it starts.
//!
//! Invariant: `build` returns only after every deployment and unfinished instance is reloaded;
//! the timer loop and the resumed work start after that, never against a half-loaded engine.

use super::api::{EffectSink, EngineError, EngineOptions, SharedHooks};
use super::engine::Engine;
use super::handlers::Handler;
use super::notifications::{feed_effect_sink, follow_shared_store};
use super::retention::sweep_loop;
use super::timers::timer_loop;
use super::versions::Versions;
use super::Inner;
use crate::clock::{Clock, WallClock};
use crate::dmn::Decisions;
use crate::executor::NoHooks;
use crate::graph::Catalog;
use crate::llm::TextGenerator;
use crate::rules::SharedRuleHooks;
use crate::script::{ScriptLimits, ScriptRuntime};
use crate::store::{MemoryStore, Store};
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{broadcast, Notify};

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
    catalog: Catalog,
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
            catalog: Catalog::default(),
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
    /// the effects they ask for during a step are written to the notification log in that step's
    /// commit (and recorded in the history), then handed to the [`EngineBuilder::effect_sink`].
    /// Processes are compiled with the rules' script runtime (it replaces
    /// [`EngineBuilder::scripts`]), so conditions and scripts get the rules' standard library.
    pub fn rules(mut self, rules: Arc<SharedRuleHooks>) -> Self {
        self.scripts = rules.rule_engine().script_runtime();
        self.hooks = rules.clone();
        self.rules = Some(rules);
        self
    }

    /// Where durable rule effects go, at least once, in notification-log order (default: only the
    /// log keeps them).
    pub fn effect_sink(mut self, sink: EffectSink) -> Self {
        self.effect_sink = Some(sink);
        self
    }

    /// The script runtime processes are compiled with.
    pub fn scripts(mut self, scripts: Arc<ScriptRuntime>) -> Self {
        self.scripts = scripts;
        self
    }

    /// The decisions business-rule tasks evaluate (DMN or YAML decision files, built with
    /// [`crate::dmn::Decisions::build`]). Processes are bound to them when deployed and when
    /// reloaded, so give the same decisions to every engine on a store.
    pub fn decisions(mut self, decisions: Arc<Decisions>) -> Self {
        self.catalog = Catalog::with_decisions(decisions);
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
        let owned = AtomicU64::new(self.options.shards.bits());
        let inner = Arc::new(Inner {
            store: self.store,
            clock: self.clock,
            handlers: self.handlers,
            fallback: self.fallback,
            hooks: self.hooks,
            rules: self.rules,
            effect_sink: self.effect_sink,
            scripts: self.scripts,
            catalog: self.catalog,
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
            message_key_tag: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                crate::clock::wall_now_ms(),
            ),
            delivering: tokio::sync::Mutex::new(()),
            stop: tokio::sync::watch::channel(false).0,
            notified: tokio::sync::watch::channel(0).0,
            sweep_cursor: Mutex::new(None),
            owned,
        });
        // Everything in the store after a (re)start is durable.
        inner.notifications_durable(inner.store.last_notification()?);
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
        inner.resume(&inner.live_ids(), inner.owned());
        if inner.effect_sink.is_some() {
            inner.spawn_until_stopped(feed_effect_sink(Arc::downgrade(&inner)));
        }
        let every = inner.options.retention.sweep_every;
        inner.spawn_until_stopped(sweep_loop(Arc::downgrade(&inner), every));
        if inner.store.shared() {
            inner.spawn_until_stopped(follow_shared_store(Arc::downgrade(&inner)));
        }
        Ok(Engine { inner })
    }
}
