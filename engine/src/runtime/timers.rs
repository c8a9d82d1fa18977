//! Timers of instance waits: the timer loop, firing due timers, repeating boundary timers.
//!
//! Invariant: a timer fires only for a wait that is still open with the same due time; a
//! virtual clock jumps only when nothing else can run.

use super::api::EngineError;
use super::effects::Effect;
use super::record::{ArmedTimer, HistoryEntry};
use super::turn::Turn;
use super::versions::Deployed;
use super::Inner;
use crate::executor::{Wait, WaitKind};
use crate::timer::TimerSpec;
use serde_json::Map;
use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

impl Inner {
    /// Whether nothing can move now without outside help: no work in flight, and no timer due
    /// (of `instance` and its call-activity children, or of any instance). With a virtual clock every armed timer of an instance
    /// counts as due (time jumps to it); with the wall clock only those due by now.
    pub(super) fn settled(&self, instance: Option<&str>) -> bool {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return false;
        }
        let now = self.clock.now_ms();
        let jumps = self.clock.is_virtual();
        !self
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|Reverse((due_ms, target))| match target {
                TimerTarget::Wait { instance: of, .. } => {
                    // The timers of an instance's call-activity children (`<id>.<activation>`,
                    // nested) count as its own.
                    instance.is_none_or(|wanted| {
                        of.strip_prefix(wanted)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
                    }) && (jumps || *due_ms <= now)
                }
                TimerTarget::Start { .. } => instance.is_none() && !jumps && *due_ms <= now,
            })
    }

    /// Fires every timer due now.
    pub(super) async fn fire_due(self: &Arc<Self>) {
        // Busy from before the due timers leave the heap until they have fired: nobody sees the
        // engine settled in between.
        let _busy = self.busy();
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
    pub(super) async fn fire_wait_timer(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        due_ms: u64,
    ) {
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
    pub(super) async fn tick_boundary(
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
}

/// What an armed timer is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerTarget {
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

impl TimerTarget {
    /// What decides the timer's shard: the instance id, or the process id of a start event.
    pub(super) fn shard_key(&self) -> &str {
        match self {
            TimerTarget::Wait { instance, .. } => instance,
            TimerTarget::Start { process_id, .. } => process_id,
        }
    }
}

/// For the timer wait of a non-interrupting boundary event with a repeating timer: the next
/// occurrence after `armed`, if the cycle goes on. `None` when the wait is anything else or this
/// is the cycle's last occurrence (the wait then completes).
pub(super) fn next_boundary_tick(
    deployed: &Deployed,
    wait: &Wait,
    armed: &ArmedTimer,
) -> Option<ArmedTimer> {
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

/// Sleeps until the earliest timer, fires it, repeats; ends when the engine is dropped.
pub(super) async fn timer_loop(inner: Weak<Inner>) {
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
