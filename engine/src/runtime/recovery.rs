//! Recovery at start: reload deployments, schedules and unfinished instances, then resume what
//! was in flight.
//!
//! Invariant: after a restart every unfinished instance is in memory with its timers re-armed,
//! every job without a completion record runs again, and pending outbox entries are redelivered.

use super::api::EngineError;
use super::effects::Effect;
use super::record::{decode, StoredDeployment, StoredInstance, StoredSchedule};
use super::turn::is_receive_task;
use super::versions::{retry_policies, start_triggers, Deployed};
use super::{compile, Inner, Live};
use crate::executor::WaitKind;
use crate::store::Table;
use std::sync::{Arc, Mutex};

impl Inner {
    /// Reloads deployments and unfinished instances from the store.
    pub(super) fn reload(&self) -> Result<(), EngineError> {
        let mut versions = self.versions.write().unwrap_or_else(|e| e.into_inner());
        for (_, bytes) in self.store.scan(Table::Definitions, b"")? {
            let stored: StoredDeployment =
                decode(&bytes, "deployment").map_err(EngineError::Decode)?;
            let (process, _) = compile(
                &stored.definitions,
                Some(&stored.process_id),
                &self.scripts,
                &self.catalog,
            )?;
            let retries = retry_policies(&stored.definitions, &stored.process_id);
            let starts = start_triggers(&stored.definitions, &stored.process_id);
            versions.add(Arc::new(Deployed {
                process_id: stored.process_id,
                version: stored.version,
                content_hash: stored.content_hash,
                process,
                retries,
                starts,
                deployed_ms: stored.deployed_ms,
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
    pub(super) fn resume_all(self: &Arc<Self>) {
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
