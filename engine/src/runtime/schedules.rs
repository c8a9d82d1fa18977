//! Schedules of timer start events: each tick starts one instance of the latest version.
//!
//! Invariant: the schedule moves to its next tick in the same commit as the tick's instance, so
//! no tick is skipped or repeated across crashes and redeployments. On a shared store, where
//! only the owner of the process's shard ticks but any engine may redeploy, a tick and a
//! redeployment both hold the store's deployment lock and move the *stored* schedule, so neither
//! moves it from a stale copy.

use super::api::EngineError;
use super::record::{decode, encode, HistoryEntry, StoredSchedule};
use super::timers::TimerTarget;
use super::versions::{schedule_key, schedule_prefix, StartTrigger};
use super::Inner;
use crate::diagnostics::Diagnostic;
use crate::model::Definitions;
use crate::store::{StepCommit, Table, TableChange};
use crate::timer::TimerSpec;
use serde_json::Map;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

/// How long a tick whose schedule could not be read waits before it tries again.
const TICK_RETRY_MS: u64 = 1_000;

impl Inner {
    /// The schedules of the timer start events of `process_id` for its new `version`: a start
    /// event whose timer is unchanged keeps its next tick (no tick is skipped or repeated by a
    /// redeployment); a new or changed one is due at its first occurrence from now; schedules of
    /// start events that are gone are removed. The changes go into `commit`.
    ///
    /// The schedules are read from the store, which every tick moves: on a shared store another
    /// engine may own them and this one's copy may be behind (the caller holds the store's
    /// deployment lock, which ticks there take too).
    pub(super) fn reschedule(
        &self,
        process_id: &str,
        version: u32,
        starts: &[StartTrigger],
        commit: &mut StepCommit,
    ) -> Result<Vec<StoredSchedule>, EngineError> {
        let now = self.clock.now_ms();
        let existing: HashMap<String, StoredSchedule> = self
            .stored_schedules(process_id)?
            .into_iter()
            .map(|schedule| (schedule.node.clone(), schedule))
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
        Ok(schedules)
    }

    /// Arms the tick due at `due_ms` again a second from now (nothing changed: the store did not
    /// answer).
    fn retry_tick(self: &Arc<Self>, process_id: &str, node: &str, due_ms: u64) {
        let (process_id, node) = (process_id.to_string(), node.to_string());
        self.spawn(move |inner| async move {
            let again = inner.clock.now_ms() + TICK_RETRY_MS;
            inner.clock.sleep_until(again).await;
            inner.arm_tick(process_id, node, due_ms);
        });
    }

    /// Shared store: makes the stored schedule of a timer start event this engine's (compiling
    /// the version it names when this engine has not seen it yet), and arms its tick when it
    /// moved away from the one due at `due_ms`, which is then stale.
    fn adopt_stored_schedule(
        &self,
        process_id: &str,
        node: &str,
        due_ms: u64,
    ) -> Result<(), EngineError> {
        let stored: Option<StoredSchedule> = self
            .store
            .get(Table::Schedules, &schedule_key(process_id, node))?
            .map(|bytes| decode(&bytes, "schedule").map_err(EngineError::Decode))
            .transpose()?;
        if let Some(schedule) = &stored {
            let unseen = self
                .versions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(process_id, schedule.version)
                .is_none();
            if unseen {
                self.reload_definitions()?;
            }
        }
        let key = (process_id.to_string(), node.to_string());
        let known = {
            let mut table = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
            match &stored {
                Some(schedule) => table.insert(key, schedule.clone()),
                None => table.remove(&key),
            }
        };
        if let Some(schedule) = stored {
            let moved = known.is_none_or(|known| known.next_due_ms != schedule.next_due_ms);
            if moved && schedule.next_due_ms != due_ms {
                self.arm_schedule(&schedule);
            }
        }
        Ok(())
    }

    /// The stored schedules of `process_id`'s timer start events.
    fn stored_schedules(&self, process_id: &str) -> Result<Vec<StoredSchedule>, EngineError> {
        self.store
            .scan(Table::Schedules, &schedule_prefix(process_id))?
            .into_iter()
            .map(|(_, bytes)| decode(&bytes, "schedule").map_err(EngineError::Decode))
            .collect()
    }

    /// Makes `schedules` what this engine knows of `process_id`'s timer start events.
    pub(super) fn remember_schedules(&self, process_id: &str, schedules: &[StoredSchedule]) {
        let mut table = self.schedules.lock().unwrap_or_else(|e| e.into_inner());
        table.retain(|(process, _), _| process != process_id);
        for schedule in schedules {
            table.insert(
                (process_id.to_string(), schedule.node.clone()),
                schedule.clone(),
            );
        }
    }

    /// Puts the next tick of a schedule on the timer heap.
    pub(super) fn arm_schedule(&self, schedule: &StoredSchedule) {
        self.arm_tick(
            schedule.process_id.clone(),
            schedule.node.clone(),
            schedule.next_due_ms,
        );
    }

    /// Puts the tick of timer start event `node` of `process_id` due at `due_ms` on the timer
    /// heap.
    fn arm_tick(&self, process_id: String, node: String, due_ms: u64) {
        self.timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Reverse((due_ms, TimerTarget::Start { process_id, node })));
        self.timers_changed.notify_one();
    }

    /// A timer start event's tick is due: starts an instance of the latest version at the start
    /// event, and moves the schedule to the next tick in the instance's first commit, so that
    /// each tick starts exactly one instance even across crashes. A tick whose instance cannot
    /// start (a rule refuses it) is logged and the schedule moves on.
    pub(super) async fn fire_schedule(self: &Arc<Self>, process_id: &str, node: &str, due_ms: u64) {
        let _busy = self.busy();
        if !self.owned().holds(process_id) {
            // The start event's shard went to another engine after this tick was armed.
            return;
        }
        // On a shared store another engine may have moved the schedule (a redeployment there):
        // the stored one counts, and the deployment lock keeps it still until this tick is
        // durable.
        let _cluster = if self.store.shared() {
            let adopted = self
                .store
                .lock_deployments()
                .map_err(EngineError::from)
                .and_then(|lock| {
                    self.adopt_stored_schedule(process_id, node, due_ms)?;
                    Ok(lock)
                });
            match adopted {
                Ok(lock) => Some(lock),
                Err(err) => {
                    tracing::error!(process = process_id, node, due_ms, error = %err, "a timer start event's tick could not read its schedule; trying again in a second");
                    self.retry_tick(process_id, node, due_ms);
                    return;
                }
            }
        } else {
            None
        };
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
                        None,
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
}

/// Refuses a deployment whose timer start events cannot be scheduled, naming where they are.
pub(super) fn check_start_timers(
    defs: &Definitions,
    starts: &[StartTrigger],
) -> Result<(), EngineError> {
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
pub(super) fn same_timer(a: &crate::model::Timer, b: &crate::model::Timer) -> bool {
    a.kind == b.kind
        && a.expression.source.trim() == b.expression.source.trim()
        && a.time_zone == b.time_zone
}
