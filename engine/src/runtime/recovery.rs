//! Recovery at start: reload deployments, schedules and unfinished instances, then resume what
//! was in flight.
//!
//! Invariant: after a restart every unfinished instance is in memory with its timers re-armed,
//! every job whose wait is still open runs again (a recorded completion removed its wait in the
//! same commit), and pending outbox entries are redelivered.

use super::api::EngineError;
use super::effects::Effect;
use super::record::{decode, StoredDeployment, StoredInstance, StoredSchedule};
use super::turn::is_receive_task;
use super::versions::{retry_policies, start_triggers, Deployed};
use super::{compile, Inner, Live};
use crate::executor::WaitKind;
use crate::shard::ShardSet;
use crate::store::Table;
use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

impl Inner {
    /// Reloads deployments and unfinished instances from the store.
    pub(super) fn reload(&self) -> Result<(), EngineError> {
        self.reload_definitions()?;
        if self.options.schedule_timer_starts {
            self.reload_schedules(ShardSet::ALL)?;
        }
        let loaded = self.load_instances(self.owned())?;
        tracing::info!(instances = loaded.len(), "unfinished instances reloaded");
        Ok(())
    }

    /// Compiles the deployed versions in the store that are not in memory yet (all of them at
    /// start; those another engine on the store deployed since, when taking shards or
    /// refreshing); returns how many there were. The store is read and the versions compiled
    /// without holding the versions lock, which starts need.
    pub(super) fn reload_definitions(&self) -> Result<usize, EngineError> {
        let mut compiled = Vec::new();
        for (_, bytes) in self.store.scan(Table::Definitions, b"")? {
            let stored: StoredDeployment =
                decode(&bytes, "deployment").map_err(EngineError::Decode)?;
            let known = self
                .versions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&stored.process_id, stored.version)
                .is_some();
            if known {
                continue;
            }
            let (process, _) = compile(
                &stored.definitions,
                Some(&stored.process_id),
                &self.scripts,
                &self.catalog,
            )?;
            let retries = retry_policies(&stored.definitions, &stored.process_id);
            let starts = start_triggers(&stored.definitions, &stored.process_id);
            compiled.push(Arc::new(Deployed {
                process_id: stored.process_id,
                version: stored.version,
                content_hash: stored.content_hash,
                process,
                retries,
                starts,
                deployed_ms: stored.deployed_ms,
            }));
        }
        let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for deployed in compiled {
            // This engine may have deployed it meanwhile.
            if versions
                .get(&deployed.process_id, deployed.version)
                .is_none()
            {
                versions.add(deployed);
                added += 1;
            }
        }
        Ok(added)
    }

    /// Picks up what other engines on a shared store deployed: new versions, and how their
    /// deployments moved the timer start events of shards this engine owns (new and moved ticks
    /// armed here, removed ones forgotten). Returns the number of new versions.
    pub(super) fn refresh_deployments(&self) -> Result<usize, EngineError> {
        let added = self.reload_definitions()?;
        if added == 0 || !self.options.schedule_timer_starts {
            return Ok(added);
        }
        let owned = self.owned();
        let mut moved = Vec::new();
        {
            // Ticks move schedules under this lock: the store and memory agree while it is held.
            let _lock = self.correlation.lock().unwrap_or_else(|e| e.into_inner());
            let mut stored = Vec::new();
            for (_, bytes) in self.store.scan(Table::Schedules, b"")? {
                let schedule: StoredSchedule =
                    decode(&bytes, "schedule").map_err(EngineError::Decode)?;
                if owned.holds(&schedule.process_id) {
                    stored.push(schedule);
                }
            }
            let mut schedules = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
            schedules.retain(|(process_id, node), _| {
                !owned.holds(process_id)
                    || stored
                        .iter()
                        .any(|s| &s.process_id == process_id && &s.node == node)
            });
            for schedule in stored {
                let key = (schedule.process_id.clone(), schedule.node.clone());
                let known = schedules.insert(key, schedule.clone());
                if known.is_none_or(|known| known.next_due_ms != schedule.next_due_ms) {
                    moved.push(schedule);
                }
            }
        }
        for schedule in &moved {
            self.arm_schedule(schedule);
        }
        Ok(added)
    }

    /// Reads the schedules of timer start events in `shards` (a schedule lives in the shard of
    /// its process id) from the store, replacing what memory held of them.
    fn reload_schedules(&self, shards: ShardSet) -> Result<(), EngineError> {
        let mut schedules = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        schedules.retain(|(process_id, _), _| !shards.holds(process_id));
        for (_, bytes) in self.store.scan(Table::Schedules, b"")? {
            let schedule: StoredSchedule =
                decode(&bytes, "schedule").map_err(EngineError::Decode)?;
            if shards.holds(&schedule.process_id) {
                schedules.insert(
                    (schedule.process_id.clone(), schedule.node.clone()),
                    schedule,
                );
            }
        }
        tracing::info!(
            schedules = schedules.len(),
            "timer start schedules reloaded"
        );
        Ok(())
    }

    /// The unfinished instances of `shards` as stored, by id.
    pub(super) fn stored_unfinished(
        &self,
        shards: ShardSet,
    ) -> Result<Vec<(String, StoredInstance)>, EngineError> {
        let mut found = Vec::new();
        for (id, bytes) in self.store.unfinished()? {
            if shards.holds(&id) {
                let stored = decode(&bytes, "instance").map_err(EngineError::Decode)?;
                found.push((id, stored));
            }
        }
        Ok(found)
    }

    /// Loads the unfinished instances of `shards` that are not in memory yet; returns their ids.
    fn load_instances(&self, shards: ShardSet) -> Result<Vec<String>, EngineError> {
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let mut loaded = Vec::new();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (id, stored) in self.stored_unfinished(shards)? {
            if live.contains_key(&id) {
                continue;
            }
            let deployed = versions
                .get(&stored.process_id, stored.version)
                .cloned()
                .ok_or_else(|| {
                    EngineError::Decode(format!(
                        "instance {id} runs {} version {}, which is not in the store",
                        stored.process_id, stored.version
                    ))
                })?;
            live.insert(
                id.clone(),
                Arc::new(Mutex::new(Live::new(stored, deployed))),
            );
            loaded.push(id);
        }
        Ok(loaded)
    }

    /// Takes the shards `shards` (those not owned yet): loads their unfinished instances and
    /// schedules and resumes them as a restart would. Returns the number of instances loaded.
    pub(super) fn acquire(self: &Arc<Self>, shards: ShardSet) -> Result<usize, EngineError> {
        let new = shards.minus(self.owned());
        if new.is_empty() {
            return Ok(0);
        }
        self.reload_definitions()?;
        if self.options.schedule_timer_starts {
            self.reload_schedules(new)?;
        }
        self.owned.fetch_or(new.bits(), Ordering::SeqCst);
        let loaded = match self.load_instances(new) {
            Ok(loaded) => loaded,
            Err(err) => {
                self.release(new);
                return Err(err);
            }
        };
        tracing::info!(shards = %new, instances = loaded.len(), "shards taken");
        self.resume(&loaded, new);
        Ok(loaded.len())
    }

    /// Gives up the shards `shards`: their instances leave memory and their timers (and those of
    /// their timer start events) are disarmed. Returns the number of instances dropped. Turns in
    /// flight end as they would; the store's fencing decides whether a late one still commits.
    pub(super) fn release(&self, shards: ShardSet) -> usize {
        // Ownership first: an instance created meanwhile is not registered (see `begin_instance_as`).
        self.owned.fetch_and(!shards.bits(), Ordering::SeqCst);
        let dropped: Vec<Arc<Mutex<Live>>> = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<String> = live.keys().filter(|id| shards.holds(id)).cloned().collect();
            ids.iter().filter_map(|id| live.remove(id)).collect()
        };
        // Waits for the turns running on them; later ones commit nothing.
        for instance in &dropped {
            instance.lock().unwrap_or_else(|e| e.into_inner()).released = true;
        }
        let dropped = dropped.len();
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|Reverse((_, target))| !shards.holds(target.shard_key()));
        self.timers_changed.notify_one();
        tracing::info!(shards = %shards, instances = dropped, "shards given up");
        dropped
    }

    /// After a restart (or taking shards): re-arm the timers of the instances `ids`, re-run
    /// their unrecorded jobs, complete auto-completable waits, pick up buffered messages; arm
    /// the timer start events of `shards`; redeliver the outbox.
    pub(super) fn resume(self: &Arc<Self>, ids: &[String], shards: ShardSet) {
        let all: Vec<(String, Arc<Mutex<Live>>)> = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            ids.iter()
                .filter_map(|id| Some((id.clone(), live.get(id)?.clone())))
                .collect()
        };
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
                                || self.options.auto_complete.is_some()) =>
                    {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::User { .. } if self.options.auto_complete.is_some() => {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::Llm { .. } if !has_incident && self.generator.is_some() => {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    WaitKind::Message { .. }
                        if self.options.auto_complete.is_some()
                            && is_receive_task(&guard.deployed, &wait.node) =>
                    {
                        effects.push(Effect::RunJob(wait.clone()))
                    }
                    // A child not started yet starts; one that ended reports to its caller.
                    WaitKind::Call { .. } if !has_incident => {
                        effects.push(Effect::StartChild(wait.clone()))
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
            .filter(|schedule| shards.holds(&schedule.process_id))
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
}
