//! One turn: an executor call, the auto-completions that need nothing from outside, and the
//! store commit that makes all of it durable at once.
//!
//! Invariant: one turn is one [`StepCommit`] (snapshot, history, outbox, notification-log
//! entries, subscriptions, completion records together); a refused executor call leaves the
//! instance as it was and drops the rule effects it queued.

use super::api::{EngineError, InstanceInfo};
use super::calls::child_instance_id;
use super::effects::Effect;
use super::messaging::OutboxEntry;
use super::notifications::StoredNotification;
use super::record::{
    encode, message_subscription_key, signal_subscription_key, ArmedTimer, CallerLink,
    EngineIncident, HistoryEntry, StoredInstance, StoredTurn, Subscriber, WaitOpened,
};
use super::versions::Deployed;
use super::{open_waits, Inner, Live};
use crate::executor::{
    joined_id, Event, ExecError, ExecutionHooks, Instance, InstanceStatus, Step, Wait, WaitKind,
};
use crate::rules::SharedRuleHooks;
use crate::shard::shard_of;
use crate::store::{Ack, NotificationNumber, SnapshotChange, StepCommit, Table, TableChange};
use crate::timer::TimerSpec;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The changes of one turn, collected before the commit.
pub(super) struct Turn {
    pub(super) commit: StepCommit,
    pub(super) history: Vec<HistoryEntry>,
    pub(super) effects: Vec<Effect>,
    /// Waits to complete at once (auto-completion), with their node.
    pub(super) auto: VecDeque<(u64, String)>,
}

impl Turn {
    pub(super) fn new(instance: &str) -> Self {
        Self {
            commit: StepCommit::for_instance(instance),
            history: Vec::new(),
            effects: Vec::new(),
            auto: VecDeque::new(),
        }
    }
}

/// Removes the subscription key of a wait that is gone.
pub(super) fn remove_subscription(instance: &str, wait: &Wait, turn: &mut Turn) {
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

impl Inner {
    /// Runs the `on_status_change` rules when the instance status is no longer `previous`, and
    /// applies the variables they set. A failing policy is logged; the step stands.
    pub(super) fn status_policies(
        &self,
        rules: &SharedRuleHooks,
        live: &mut Live,
        previous: InstanceStatus,
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
    pub(super) fn discard_rule_effects(&self, instance: &str) {
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
    pub(super) fn step_live(
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

    pub(super) fn absorb(
        &self,
        live: &mut Live,
        step: Step,
        before: &[Wait],
        previous: InstanceStatus,
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
                live.stored.timers.remove(pos);
            }
            remove_subscription(&id, gone, turn);
            if matches!(gone.kind, WaitKind::Call { .. }) {
                // A call activity that ended (its child's end, an interrupting boundary event, a
                // cancel) takes its child with it; an ended child ignores this.
                turn.effects
                    .push(Effect::CancelChild(child_instance_id(&id, gone.activation)));
            }
            live.stored
                .attempts
                .retain(|a| a.activation != gone.activation);
            live.stored
                .opened
                .retain(|o| o.activation != gone.activation);
        }
        for event in &step.events {
            if let Event::EventThrown {
                node,
                event: thrown,
            } = event
            {
                let variables = if thrown.kind == "message" {
                    live.stored.instance.variables().clone()
                } else {
                    Map::new()
                };
                turn.commit.outbox.push(encode(&OutboxEntry {
                    instance: Some(id.clone()),
                    node: node.clone(),
                    event: thrown.clone(),
                    variables,
                }));
            }
        }
        turn.history.extend(
            step.events
                .into_iter()
                .map(|event| HistoryEntry::Executor { event }),
        );
        // The rules' effects of this executor call commit with it.
        if let Some(rules) = &self.rules {
            self.status_policies(rules, live, previous, turn);
            for effect in rules.finish_step(&id) {
                turn.commit.notifications.push(encode(&StoredNotification {
                    instance: id.clone(),
                    time_ms: now,
                    effect: effect.clone(),
                }));
                turn.history.push(HistoryEntry::RuleEffect { effect });
            }
        }
        for wait in step.new_waits {
            live.stored.opened.push(WaitOpened {
                activation: wait.activation,
                at_ms: now,
            });
            let auto = self.options.auto_complete.is_some();
            match &wait.kind {
                WaitKind::Job { handler } => {
                    match self.handler_for(handler.as_deref()) {
                        Some(_) => turn.effects.push(Effect::RunJob(wait)),
                        None if auto => turn.auto.push_back((wait.activation, wait.node.clone())),
                        // A named handler that is missing becomes an incident; a job that names
                        // none waits for an outside completion.
                        None if handler.is_some() => turn.effects.push(Effect::RunJob(wait)),
                        None => {}
                    }
                }
                WaitKind::User { .. } if auto => {
                    turn.auto.push_back((wait.activation, wait.node.clone()))
                }
                WaitKind::Message { .. } if auto && is_receive_task(&live.deployed, &wait.node) => {
                    turn.auto.push_back((wait.activation, wait.node.clone()))
                }
                WaitKind::Llm { .. } if self.generator.is_some() => {
                    turn.effects.push(Effect::RunJob(wait))
                }
                WaitKind::Call { .. } => turn.effects.push(Effect::StartChild(wait)),
                // Conditional events are evaluated by the executor itself.
                WaitKind::User { .. } | WaitKind::Llm { .. } | WaitKind::Condition { .. } => {}
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
    pub(super) fn finish_turn(
        &self,
        live: &mut Live,
        mut turn: Turn,
    ) -> Result<(Ack, Vec<Effect>), EngineError> {
        if live.released {
            let instance = live.stored.instance.id().to_string();
            return Err(EngineError::NotOwned {
                shard: shard_of(&instance),
                instance,
            });
        }
        // Auto-completions go in batches (every ready wait, oldest first, before any token moves
        // on), as `flowbot run --auto-complete` does.
        while !turn.auto.is_empty() && live.stored.instance.status().is_active() {
            let outputs = self.options.auto_complete.as_ref();
            let batch: Vec<(u64, Map<String, Value>)> = turn
                .auto
                .drain(..)
                .map(|(activation, node)| {
                    let filled_in = outputs.and_then(|auto| auto.outputs.get(&node));
                    (activation, filled_in.cloned().unwrap_or_default())
                })
                .collect();
            let completed = self.step_live(live, &mut turn, |instance, process, hooks| {
                instance.complete_all(process, batch, hooks)
            });
            if let Err(err) = completed {
                tracing::warn!(instance = %live.stored.instance.id(), error = %err, "auto-completion refused")
            }
        }
        let now = self.clock.now_ms();
        let ended = !live.stored.instance.status().is_active();
        if ended && live.stored.ended_ms.is_none() {
            live.stored.ended_ms = Some(now);
        }
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
        let last_notification = ack.last_notification();
        if !matches!(last_notification, NotificationNumber::None) {
            effects.push(Effect::Notified(last_notification));
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
            if let Some(caller) = &live.stored.caller {
                effects.push(Effect::ReturnToCaller(caller.clone()));
            }
        }
        Ok((ack, effects))
    }

    /// Completes a wait from outside (API, handler, timer, message) and waits until durable.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn drive(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        expected: &'static str,
        accepts: impl Fn(&Wait) -> bool,
        outputs: Map<String, Value>,
        history: Vec<HistoryEntry>,
        changes: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<InstanceInfo, EngineError> {
        self.drive_with(
            instance,
            activation,
            expected,
            accepts,
            history,
            changes,
            move |instance, process, hooks| instance.complete(process, activation, outputs, hooks),
        )
        .await
    }

    /// Moves an open wait on with the executor `call` (complete it, throw an error on it) in one
    /// turn with `history` and `changes`, and waits until the turn is durable.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn drive_with(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        expected: &'static str,
        accepts: impl Fn(&Wait) -> bool,
        history: Vec<HistoryEntry>,
        changes: Vec<(Table, Vec<u8>, Option<Vec<u8>>)>,
        call: impl FnOnce(
            &mut Instance,
            &crate::graph::CompiledProcess,
            &dyn ExecutionHooks,
        ) -> Result<Step, ExecError>,
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
            self.step_live(&mut guard, &mut turn, call)?;
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

    /// A fresh id for an instance of `process_id`, in a shard this engine owns: numbers from the
    /// store's id blocks are skipped until one lands in an owned shard (about 64 / owned shards
    /// tries; a number skipped is never used).
    fn new_instance_id(&self, process_id: &str) -> Result<String, EngineError> {
        let owned = self.owned();
        if owned.is_empty() {
            return Err(EngineError::NoShards);
        }
        loop {
            let id = joined_id(&[process_id, "-"], self.store.next_id()?);
            if owned.holds(&id) {
                return Ok(id);
            }
        }
    }

    /// Creates an instance of `deployed` (at the start event `at`, else at its none start
    /// events) and commits its first turn with `history` and `changes`; registers it as live.
    /// The caller awaits the ack, then applies the effects.
    pub(super) fn begin_instance(
        &self,
        deployed: Arc<Deployed>,
        at: Option<&str>,
        variables: Map<String, Value>,
        business_key: Option<String>,
        history: Vec<HistoryEntry>,
        changes: Vec<TableChange>,
    ) -> Result<(Ack, Vec<Effect>, InstanceInfo), EngineError> {
        let id = self.new_instance_id(&deployed.process_id)?;
        self.begin_instance_as(
            deployed,
            id,
            None,
            at,
            variables,
            business_key,
            history,
            changes,
        )
    }

    /// Like [`Inner::begin_instance`], with the id given and, for a call activity's child
    /// instance, the link to its caller.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn begin_instance_as(
        &self,
        deployed: Arc<Deployed>,
        id: String,
        caller: Option<CallerLink>,
        at: Option<&str>,
        variables: Map<String, Value>,
        business_key: Option<String>,
        history: Vec<HistoryEntry>,
        changes: Vec<TableChange>,
    ) -> Result<(Ack, Vec<Effect>, InstanceInfo), EngineError> {
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
            business_key,
            started_ms: self.clock.now_ms(),
            ended_ms: None,
            opened: Vec::new(),
            caller,
        };
        let live = Arc::new(Mutex::new(Live::new(stored, deployed)));
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let mut turn = Turn::new(&id);
            turn.history = history;
            turn.commit.first = true;
            turn.commit.changes = changes;
            self.absorb(&mut guard, step, &[], InstanceStatus::Running, &mut turn);
            let (ack, effects) = self.finish_turn(&mut guard, turn)?;
            let info = if guard.stored.instance.status().is_active() {
                InstanceInfo::of(&guard.stored)
            } else {
                // Ended in its first turn: the record is not kept live, so the answer takes it.
                InstanceInfo::of_final(&mut guard.stored)
            };
            (ack, effects, info)
        };
        if !info.ended() {
            let mut registered = self.live.lock().unwrap_or_else(|e| e.into_inner());
            // Its shard may have been given up since the id was chosen: the first turn is
            // committed, and the shard's next owner loads it from there.
            if self.owned().holds(&id) {
                registered.insert(id, live);
            }
        }
        Ok((ack, effects, info))
    }
}

/// Whether `node` is a receive task (auto-completed like a user task, as `run --auto-complete`
/// does; message catch events keep waiting).
pub(super) fn is_receive_task(deployed: &Deployed, node: &str) -> bool {
    deployed
        .process
        .node_index(node)
        .is_some_and(|n| deployed.process.node(n).element == "receiveTask")
}
