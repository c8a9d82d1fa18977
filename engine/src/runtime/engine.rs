//! [`Engine`]: the public methods of a running engine.
//!
//! Invariant: a method that changes an instance returns only after its turn is durable, and acts
//! on the turn (handlers, timers, deliveries, events) only after that.

use super::api::{Correlation, Deployment, EngineError, EngineEvent, InstanceInfo, StartRequest};
use super::builder::EngineBuilder;
use super::effects::Effect;
use super::record::{
    decode, encode, HistoryEntry, HistoryRecord, StoredDeployment, StoredInstance, StoredTurn,
};
use super::schedules::check_start_timers;
use super::turn::Turn;
use super::versions::{content_hash, deployment_key, retry_policies, start_triggers, Deployed};
use super::{compile, Inner};
use crate::clock::Clock;
use crate::executor::WaitKind;
use crate::model::Definitions;
use crate::shard::ShardSet;
use crate::store::{StepCommit, Store, Table};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// A workflow engine instance. Cheap to clone; every clone drives the same engine.
#[derive(Clone)]
pub struct Engine {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with an in-memory store, the wall clock, no handlers and no hooks.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Deploys a process of `defs` (the one named, else the first executable one). Identical
    /// content returns the existing version; new content gets the next version number.
    ///
    /// The processes of the same file that its call activities start as child instances are
    /// deployed first (executable or not), so that the call finds them, and `binding:
    /// deployment` finds the version deployed with it.
    ///
    /// On a [shared](crate::store::Store::shared) store the deployment holds the store's
    /// deployment lock until it is durable, and first compiles what the other engines deployed:
    /// so the version number it chooses follows theirs, and identical content deployed on
    /// another node is found as the existing version.
    pub async fn deploy(
        &self,
        defs: &Definitions,
        process: Option<&str>,
    ) -> Result<Deployment, EngineError> {
        let _cluster = self.inner.store.lock_deployments()?;
        if self.inner.store.shared() {
            self.inner.refresh_deployments()?;
        }
        self.deploy_calling(defs, process, &mut Vec::new()).await
    }

    /// [`Engine::deploy`], with the processes whose deployment is under way (a process that
    /// calls one of them back is not deployed again).
    async fn deploy_calling(
        &self,
        defs: &Definitions,
        process: Option<&str>,
        under_way: &mut Vec<String>,
    ) -> Result<Deployment, EngineError> {
        let compiled = compile(defs, process, &self.inner.scripts, &self.inner.catalog)?;
        let (process_compiled, warnings) = compiled;
        under_way.push(process_compiled.id.clone());
        for called in called_in_file(defs, &process_compiled) {
            if !under_way.contains(&called) {
                Box::pin(self.deploy_calling(defs, Some(&called), under_way)).await?;
            }
        }
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
            deployed_ms: self.inner.clock.now_ms(),
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
                .reschedule(&process_id, version, &starts, &mut commit)?
        } else {
            Vec::new()
        };
        let ack = self.inner.store.commit(commit)?;
        self.inner.remember_schedules(&process_id, &schedules);
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
            deployed_ms: stored.deployed_ms,
        });
        self.inner
            .versions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(deployed.clone());
        // Only the owner of the process's shard ticks; another engine arms them when it takes
        // the shard.
        if self.inner.owned().holds(&deployed.process_id) {
            for schedule in &schedules {
                self.inner.arm_schedule(schedule);
            }
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
        self.start_with(StartRequest {
            process_id: process_id.to_string(),
            variables,
            business_key: None,
        })
        .await
    }

    /// Starts an instance as `request` says (process, variables, business key); returns once its
    /// first turn is durable.
    pub async fn start_with(&self, request: StartRequest) -> Result<InstanceInfo, EngineError> {
        let deployed = self
            .inner
            .versions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .latest(&request.process_id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownProcess(request.process_id.clone()))?;
        let _busy = self.inner.busy();
        let (ack, effects, info) = self.inner.begin_instance(
            deployed,
            None,
            request.variables,
            request.business_key,
            Vec::new(),
            Vec::new(),
        )?;
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

    /// Sets variables of a running instance from outside (not through a task): the
    /// `guard_variable` rules may refuse them (then nothing changes), the change policies run and
    /// conditional events whose condition became true fire, all in one turn.
    pub async fn set_variables(
        &self,
        instance: &str,
        updates: Map<String, Value>,
    ) -> Result<InstanceInfo, EngineError> {
        let live = self.inner.live_instance(instance)?;
        let _busy = self.inner.busy();
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let mut turn = Turn::new(instance);
            self.inner
                .step_live(&mut guard, &mut turn, |instance, process, hooks| {
                    instance.update_variables(process, updates, hooks)
                })?;
            let (ack, effects) = self.inner.finish_turn(&mut guard, turn)?;
            (ack, effects, InstanceInfo::of(&guard.stored))
        };
        ack.durable().await?;
        self.inner.apply_effects(instance, effects);
        Ok(info)
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
        self.inner.signal(name, variables, None).await
    }

    /// Cancels an instance: every wait is dropped, its timers and subscriptions removed, the
    /// child instances of its call activities cancelled.
    pub async fn cancel(&self, instance: &str) -> Result<InstanceInfo, EngineError> {
        self.inner.cancel_instance(instance).await
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
        // Not `if let` over the map's guard: that would hold it while the children are read.
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if let Some(live) = live {
            let info = InstanceInfo::of(&live.lock().unwrap_or_else(|e| e.into_inner()).stored);
            return Ok(self.with_child_incidents(info));
        }
        let bytes = self
            .inner
            .store
            .instance(id)?
            .ok_or_else(|| EngineError::UnknownInstance(id.to_string()))?;
        let stored: StoredInstance = decode(&bytes, "instance").map_err(EngineError::Decode)?;
        Ok(self.with_child_incidents(InstanceInfo::of(&stored)))
    }

    /// The history (audit log) of an instance.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryRecord>, EngineError> {
        read_history(self.inner.store.as_ref(), id)
    }

    /// A stream of engine events; each is published after its turn is durable. Every receiver
    /// gets the same shared event.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<EngineEvent>> {
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

    /// Waits until the instance has ended, or until nothing can move it now without outside
    /// help: no handler, delivery or retry of the engine is in flight and no timer of the
    /// instance is due. With a virtual clock, time jumps to the instance's next timer, so it
    /// settles only when it has none; with the wall clock, timers due later are left to fire
    /// when they are due (the instance stays waiting in the store).
    pub async fn wait_settled(&self, id: &str) -> Result<InstanceInfo, EngineError> {
        let mut events = self.subscribe();
        loop {
            let info = self.instance(id)?;
            if info.ended() || self.inner.settled(Some(id)) {
                return Ok(info);
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }
    }

    /// Waits until no instance can move now without outside help (see
    /// [`Engine::wait_settled`]): what `flowbot resume` waits for after a restart has fired
    /// the due timers and re-run the unfinished jobs.
    pub async fn wait_idle(&self) {
        let mut events = self.subscribe();
        while !self.inner.settled(None) {
            let _ = tokio::time::timeout(Duration::from_millis(20), events.recv()).await;
        }
    }

    /// Whether the store answers now (readiness: a database store pings its server, without
    /// waiting for pending commits).
    pub fn store_reachable(&self) -> Result<(), EngineError> {
        Ok(self.inner.store.check()?)
    }

    /// How many instances the store holds (running and ended).
    pub fn stored_instances(&self) -> Result<u64, EngineError> {
        Ok(self.inner.store.instance_count()?)
    }

    /// The shards whose instances this engine serves (all of them unless
    /// [`EngineOptions::shards`](super::EngineOptions::shards) said otherwise or shards were
    /// given up).
    pub fn owned_shards(&self) -> ShardSet {
        self.inner.owned()
    }

    /// Takes `shards` (those not owned yet) from the store: compiles deployments this engine has
    /// not seen, loads the shards' unfinished instances and timer start events, and resumes
    /// them as a restart would (timers re-armed, unrecorded jobs run again, buffered messages
    /// picked up). New instances may get ids in them from then on. Returns the number of
    /// instances loaded. The caller makes sure no other engine serves these shards any more (a
    /// store with fencing refuses the old owner's late writes).
    pub async fn acquire_shards(&self, shards: ShardSet) -> Result<usize, EngineError> {
        self.inner.acquire(shards)
    }

    /// Compiles the versions other engines on the store deployed since this one looked, and arms
    /// the timer start events they brought to shards this engine owns. An engine on a
    /// [shared](crate::store::Store::shared) store does this every second by itself. Returns the
    /// number of new versions.
    pub fn refresh_deployments(&self) -> Result<usize, EngineError> {
        self.inner.refresh_deployments()
    }

    /// Gives up `shards`: their instances leave memory, their timers are disarmed, requests
    /// about them fail with [`EngineError::NotOwned`], and new instances get ids elsewhere.
    /// Returns the number of instances dropped. Nothing stored changes.
    pub fn release_shards(&self, shards: ShardSet) -> usize {
        self.inner.release(shards)
    }

    /// Ids of the instances that are still running (loaded in memory).
    pub fn running(&self) -> Vec<String> {
        let mut ids = self.inner.live_ids();
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

    /// The store's flush counters, when it commits in groups.
    pub fn flush_stats(&self) -> Option<crate::store::FlushStats> {
        self.inner.store.flush_stats()
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

/// The processes of `defs` that call activities of `process` start as child instances.
fn called_in_file(defs: &Definitions, process: &crate::graph::CompiledProcess) -> Vec<String> {
    use crate::graph::{Behavior, WaitSpec};
    let mut called = Vec::new();
    for node in process.graph.node_weights() {
        if let Behavior::Wait(WaitSpec::Call { process: id, .. }) = &node.behavior {
            if defs.processes.iter().any(|p| &p.id == id) && !called.contains(id) {
                called.push(id.clone());
            }
        }
    }
    called
}
