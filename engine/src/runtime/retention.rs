//! Retention: what the store keeps how long, and the sweeper that removes the rest.
//!
//! Invariants:
//! - Only ended instances are removed (with their history and completion records), and only once
//!   they ended longer ago than the setting; an unfinished instance is never touched.
//! - Expired buffered messages are removed (they can no longer be delivered).
//! - The notification log keeps its newest entry, so numbering goes on after a restart.
//! - A sweep does bounded work (`SWEEP_BATCH` instances at a time, resuming where the last one
//!   stopped), so it never stalls the engine on a large store.

use super::api::EngineError;
use super::notifications::StoredNotification;
use super::record::{decode, BufferedMessage, StoredInstance};
use super::Inner;
use crate::store::{StepCommit, Table};
use std::sync::Weak;
use std::time::Duration;

/// How long the store keeps what is no longer needed to run instances. `None` keeps forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Ended instances (snapshot, history, completion records), counted from their end.
    pub ended_instances: Option<Duration>,
    /// Entries of the notification log, counted from when they were written.
    pub notifications: Option<Duration>,
    /// How often the sweeper runs.
    pub sweep_every: Duration,
}

impl Default for Retention {
    /// Ended instances and notifications for 30 days; a sweep every 10 minutes.
    fn default() -> Self {
        Self {
            ended_instances: Some(Duration::from_secs(30 * 24 * 3600)),
            notifications: Some(Duration::from_secs(30 * 24 * 3600)),
            sweep_every: Duration::from_secs(600),
        }
    }
}

/// Instances examined per sweep.
const SWEEP_BATCH: usize = 10_000;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Ended instances removed.
    pub instances: usize,
    /// Expired buffered messages removed.
    pub messages: usize,
    /// Notification-log entries removed.
    pub notifications: usize,
}

impl Inner {
    /// One sweep: expired buffered messages, then up to [`SWEEP_BATCH`] instances from where the
    /// last sweep stopped, then old notifications.
    pub(super) fn sweep(&self) -> Result<SweepReport, EngineError> {
        let now = self.clock.now_ms();
        let mut report = SweepReport::default();
        let mut commit = StepCommit::default();
        for (key, value) in self.store.scan(Table::BufferedMessages, b"")? {
            let message: BufferedMessage =
                decode(&value, "buffered message").map_err(EngineError::Decode)?;
            if message.expires_ms < now {
                commit.remove(Table::BufferedMessages, key);
                report.messages += 1;
            }
        }
        if !commit.changes.is_empty() {
            // Nobody waits: a removal lost in a crash is repeated by the next sweep.
            drop(self.store.commit(commit)?);
        }
        let retention = &self.options.retention;
        if let Some(keep) = retention.ended_instances {
            let cutoff = now.saturating_sub(keep.as_millis() as u64);
            let mut cursor = self.sweep_cursor.lock().unwrap_or_else(|e| e.into_inner());
            let page = self.store.instances_after(cursor.as_deref(), SWEEP_BATCH)?;
            *cursor = page.last().map(|(id, _)| id.clone());
            for (id, bytes) in page {
                let stored: StoredInstance =
                    decode(&bytes, "instance").map_err(EngineError::Decode)?;
                if stored.ended_ms.is_some_and(|ended| ended < cutoff) {
                    self.store.purge_instance(&id)?;
                    report.instances += 1;
                }
            }
        }
        if let Some(keep) = retention.notifications {
            let cutoff = now.saturating_sub(keep.as_millis() as u64);
            let mut through = 0;
            'pages: loop {
                let page = self.store.notifications_after(through, 1_000)?;
                if page.is_empty() {
                    break;
                }
                for (seq, bytes) in page {
                    let stored: StoredNotification =
                        decode(&bytes, "notification").map_err(EngineError::Decode)?;
                    if stored.time_ms >= cutoff {
                        break 'pages;
                    }
                    through = seq;
                    report.notifications += 1;
                }
            }
            if through > 0 {
                self.store.remove_notifications_through(through)?;
            }
        }
        Ok(report)
    }
}

/// Sweeps every `sweep_every` until the engine is gone.
pub(super) async fn sweep_loop(inner: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(engine) = inner.upgrade() else {
            return;
        };
        let swept = tokio::task::spawn_blocking(move || engine.sweep())
            .await
            .unwrap_or_else(|e| Err(EngineError::Decode(format!("the sweep stopped: {e}"))));
        match swept {
            Ok(report) if report != SweepReport::default() => {
                tracing::info!(?report, "retention sweep removed old records")
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "retention sweep failed"),
        }
    }
}
