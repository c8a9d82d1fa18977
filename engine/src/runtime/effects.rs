//! What the engine does once a turn is durable: run jobs, arm timers, look for buffered
//! messages, deliver the outbox, publish events, wake those waiting for an instance's end.
//!
//! Invariant: effects are applied only after their turn's commit has been acknowledged durable.

use super::api::{EngineEvent, InstanceInfo};
use super::record::{CallerLink, HistoryRecord};
use super::timers::TimerTarget;
use super::Inner;
use crate::executor::Wait;
use crate::store::NotificationNumber;
use std::cmp::Reverse;
use std::sync::Arc;

/// What to do once a turn is durable.
pub(super) enum Effect {
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
    /// Notification-log entries up to this number are durable.
    Notified(NotificationNumber),
    /// Start the child instance of a call activity's wait (nothing when it exists already).
    StartChild(Wait),
    /// Cancel this child instance (its call activity ended without it).
    CancelChild(String),
    /// This child instance ended: its caller's call activity goes on (or fails).
    ReturnToCaller(CallerLink),
}

impl Inner {
    /// Acts on a durable turn.
    pub(super) fn apply_effects(self: &Arc<Self>, instance: &str, effects: Vec<Effect>) {
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
                        let _ = self.events.send(Arc::new(EngineEvent {
                            instance: instance.to_string(),
                            record,
                        }));
                    }
                }
                Effect::Notified(last) => {
                    if let Some(last) = last.get() {
                        self.notifications_durable(last);
                    }
                }
                Effect::StartChild(wait) => {
                    let id = instance.to_string();
                    self.spawn(|inner| async move { inner.start_child(&id, wait).await });
                }
                Effect::CancelChild(child) => {
                    self.spawn(|inner| async move { inner.cancel_child(&child).await });
                }
                Effect::ReturnToCaller(caller) => {
                    let id = instance.to_string();
                    self.spawn(|inner| async move { inner.return_to_caller(&id, caller).await });
                }
                Effect::Ended(info) => {
                    self.live
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(instance);
                    let waiters = {
                        let mut waiters =
                            self.ended_waiters.lock().unwrap_or_else(|e| e.into_inner());
                        // Most instances end with nobody waiting: skip hashing the id then.
                        (!waiters.is_empty())
                            .then(|| waiters.remove(instance))
                            .flatten()
                    };
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
}
