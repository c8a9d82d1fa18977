//! The notification log: what business rules told people and systems (`notify`, `emit`),
//! numbered in commit order, kept for the retention period, and read "after number N".
//!
//! Invariants:
//! - An entry is appended in the commit of the turn whose rules asked for it: it exists exactly
//!   when that turn exists.
//! - Readers see an entry only once it is durable (numbers up to the watermark), so a crash never
//!   takes back an entry someone has read, and a reader that resumes after the last number it saw
//!   gets every later entry exactly once, across restarts.
//! - The effect sink is a durable reader: its cursor moves only after it accepted the entries, so
//!   it gets each at least once. Other durable readers (the server's webhooks) keep their own
//!   named cursors ([`Engine::reader_cursor`]) under the same rule.

use super::api::{EffectSink, EngineError};
use super::engine::Engine;
use super::record::{decode, encode};
use super::Inner;
use crate::rules::Effect as RuleEffect;
use crate::store::{Ack, StepCommit, StoreError, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::watch;

/// One entry of the log as stored (the store keeps its number beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredNotification {
    /// The instance whose turn asked for it.
    pub instance: String,
    /// When (ms since the Unix epoch, engine clock).
    pub time_ms: u64,
    /// What the rule asked for.
    pub effect: RuleEffect,
}

/// What kind of entry a [`Notification`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NotificationKind {
    /// `notify(receiver, message)`: a message to a person or system.
    Notify,
    /// `emit(event, payload)`: a business event; its receiver is the event name.
    Event,
}

/// One entry of the notification log, as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Its number: increasing in commit order across all receivers (a receiver's own stream has
    /// gaps). Resume with "after" this number.
    pub seq: u64,
    /// Who it is for: the `notify` receiver, or the event name of an `emit`.
    pub receiver: String,
    /// The rule that produced it.
    pub sender: String,
    /// The message text (`notify`) or the event payload (`emit`).
    pub content: Value,
    /// The instance whose turn produced it.
    pub instance: String,
    /// When (ms since the Unix epoch, engine clock).
    pub time_ms: u64,
    /// Notification or event.
    pub kind: NotificationKind,
}

impl Notification {
    fn of(seq: u64, stored: StoredNotification) -> Self {
        let (receiver, sender, content, kind) = match stored.effect {
            RuleEffect::Notify {
                receiver,
                message,
                rule,
            } => (
                receiver,
                rule,
                Value::String(message),
                NotificationKind::Notify,
            ),
            RuleEffect::Emit {
                event,
                payload,
                rule,
            } => (event, rule, payload, NotificationKind::Event),
        };
        Self {
            seq,
            receiver,
            sender,
            content,
            instance: stored.instance,
            time_ms: stored.time_ms,
            kind,
        }
    }

    /// The rule effect this entry records (what an [`crate::runtime::EffectSink`] receives).
    pub fn effect(&self) -> RuleEffect {
        match self.kind {
            NotificationKind::Notify => RuleEffect::Notify {
                receiver: self.receiver.clone(),
                message: self
                    .content
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| self.content.to_string()),
                rule: self.sender.clone(),
            },
            NotificationKind::Event => RuleEffect::Emit {
                event: self.receiver.clone(),
                payload: self.content.clone(),
                rule: self.sender.clone(),
            },
        }
    }
}

/// The cursor key of the engine's effect sink in [`Table::Cursors`].
const EFFECT_SINK_CURSOR: &[u8] = b"effect_sink";
/// The key of the named reader `name`'s cursor in [`Table::Cursors`] (prefixed, so never the
/// effect sink's).
fn reader_cursor_key(name: &str) -> Vec<u8> {
    format!("reader:{name}").into_bytes()
}
/// Entries handed to the effect sink per read.
const SINK_BATCH: usize = 256;

impl Inner {
    /// Entries after `after` (up to `limit`, only durable ones), for `receiver` or all.
    pub(super) fn read_notifications(
        &self,
        after: u64,
        receiver: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notification>, EngineError> {
        let durable = *self.notified.borrow();
        let mut found = Vec::new();
        let mut cursor = after;
        while found.len() < limit && cursor < durable {
            let batch = self.store.notifications_after(cursor, limit.max(64))?;
            if batch.is_empty() {
                break;
            }
            for (seq, bytes) in batch {
                if seq > durable || found.len() == limit {
                    return Ok(found);
                }
                cursor = seq;
                let stored: StoredNotification =
                    decode(&bytes, "notification").map_err(EngineError::Decode)?;
                let notification = Notification::of(seq, stored);
                if receiver.is_none_or(|r| r == notification.receiver) {
                    found.push(notification);
                }
            }
        }
        Ok(found)
    }

    /// Every entry up to `seq` is durable: readers may see them.
    pub(super) fn notifications_durable(&self, seq: u64) {
        self.notified.send_if_modified(|durable| {
            let moved = seq > *durable;
            *durable = (*durable).max(seq);
            moved
        });
    }
}

/// How often an engine on a [shared](crate::store::Store::shared) store looks for entries other
/// nodes appended to the notification log.
pub(super) const SHARED_LOG_POLL: Duration = Duration::from_millis(100);

/// How many log polls pass between two looks for deployments other nodes made.
const POLLS_PER_DEPLOYMENT_CHECK: u32 = 10;

/// Follows what other nodes on a shared store write that this engine must see: entries of the
/// notification log (visible to this engine's readers within [`SHARED_LOG_POLL`]), messages and
/// signals in the inbox for its shards (delivered within a poll) and deployments (compiled
/// within ten polls, a second).
pub(super) async fn follow_shared_store(inner: Weak<Inner>) {
    for poll in 1u32.. {
        tokio::time::sleep(SHARED_LOG_POLL).await;
        let Some(engine) = inner.upgrade() else {
            return;
        };
        engine.deliver_inbox().await;
        let deployments = poll % POLLS_PER_DEPLOYMENT_CHECK == 0;
        let polled = tokio::task::spawn_blocking(move || {
            let last = engine.store.last_notification()?;
            engine.notifications_durable(last);
            if deployments {
                engine.refresh_deployments()?;
            }
            Ok::<_, EngineError>(())
        })
        .await;
        match polled {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot follow the shared store"),
            Err(err) => tracing::warn!(error = %err, "the shared store's poll stopped"),
        }
    }
}

/// Hands the log to the effect sink, entry by entry after its stored cursor, for as long as the
/// engine lives and [coordinates](Engine::coordinates) (of several engines on one store, one
/// feeds the sink; one that takes the duty over reads the cursor its predecessor stored); a
/// refused entry is offered again a second later.
pub(super) async fn feed_effect_sink(inner: Weak<Inner>) {
    let mut durable = {
        let Some(engine) = inner.upgrade() else {
            return;
        };
        engine.notified.subscribe()
    };
    // The cursor as last read or stored by this engine; `None` while it does not coordinate.
    let mut cursor: Option<u64> = None;
    loop {
        let step = {
            let Some(engine) = inner.upgrade() else {
                return;
            };
            let Some(sink) = engine.effect_sink.clone() else {
                return;
            };
            if !engine.coordinates() {
                cursor = None;
                None
            } else {
                let from = match cursor {
                    Some(from) => Some(from),
                    None => match engine.store.get(Table::Cursors, EFFECT_SINK_CURSOR) {
                        Ok(Some(bytes)) => Some(decode::<u64>(&bytes, "cursor").unwrap_or(0)),
                        Ok(None) => Some(0),
                        Err(err) => {
                            tracing::error!(error = %err, "cannot read the effect sink's cursor");
                            None
                        }
                    },
                };
                from.map(|from| feed_batch(&engine, &sink, from))
            }
        };
        let Some(Fed {
            from,
            read,
            accepted,
            commit,
        }) = step
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // At least once: a cursor lost in a crash only repeats entries.
        match commit {
            Some(Ok(ack)) => drop(ack.durable().await),
            Some(Err(err)) => {
                tracing::error!(error = %err, "cannot store the effect sink's cursor")
            }
            None => {}
        }
        cursor = Some(accepted);
        if accepted < read {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else if read == from {
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                // A coordinator that loses the duty notices within a second.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// What one offer of entries to the effect sink did.
struct Fed {
    /// The cursor it started from.
    from: u64,
    /// The last number read.
    read: u64,
    /// The last number the sink accepted.
    accepted: u64,
    /// The commit of the moved cursor, when it moved.
    commit: Option<Result<Ack, StoreError>>,
}

impl Inner {
    /// Whether this engine owns [`COORDINATOR_SHARD`] (see [`Engine::coordinates`]).
    fn coordinates(&self) -> bool {
        self.owned().contains(COORDINATOR_SHARD)
    }
}

/// Offers the entries after `from` to the sink.
fn feed_batch(engine: &Inner, sink: &EffectSink, from: u64) -> Fed {
    let batch = match engine.read_notifications(from, None, SINK_BATCH) {
        Ok(batch) => batch,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the notification log");
            Vec::new()
        }
    };
    let mut accepted = from;
    for notification in &batch {
        if let Err(err) = sink(&notification.instance, &notification.effect()) {
            tracing::error!(seq = notification.seq, error = %err, "the effect sink refused a notification; offered again in 1 s");
            break;
        }
        accepted = notification.seq;
    }
    let commit = (accepted > from).then(|| {
        let mut commit = StepCommit::default();
        commit.put(
            Table::Cursors,
            EFFECT_SINK_CURSOR.to_vec(),
            encode(&accepted),
        );
        engine.store.commit(commit)
    });
    Fed {
        from,
        read: batch.last().map_or(from, |n| n.seq),
        accepted,
        commit,
    }
}

/// The shard whose owner runs the duties of which a cluster needs one: the effect sink and the
/// server's webhooks ([`Engine::coordinates`]).
pub const COORDINATOR_SHARD: u32 = 0;

impl Engine {
    /// Whether this engine runs the duties of which several engines on one store need exactly
    /// one (the effect sink, the server's webhooks): the owner of [`COORDINATOR_SHARD`]. A
    /// single engine always does.
    pub fn coordinates(&self) -> bool {
        self.inner.coordinates()
    }

    /// Up to `limit` entries of the notification log after number `after` (0: from the
    /// oldest kept), for `receiver` or for all, in number order; only entries that are durable.
    pub fn notifications_after(
        &self,
        after: u64,
        receiver: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Notification>, EngineError> {
        self.inner.read_notifications(after, receiver, limit)
    }

    /// The highest durable notification number; it changes whenever new entries become durable
    /// (wait on it, then read after the last number seen).
    pub fn notification_watermark(&self) -> watch::Receiver<u64> {
        self.inner.notified.subscribe()
    }

    /// How far the durable reader `name` has read the log: the number it last stored with
    /// [`Engine::store_reader_cursor`], `None` when it never stored one.
    pub fn reader_cursor(&self, name: &str) -> Result<Option<u64>, EngineError> {
        match self
            .inner
            .store
            .get(Table::Cursors, &reader_cursor_key(name))?
        {
            Some(bytes) => decode(&bytes, "reader cursor")
                .map(Some)
                .map_err(EngineError::Decode),
            None => Ok(None),
        }
    }

    /// Records that the durable reader `name` has handled every entry up to `seq`; returns once
    /// that is durable. A reader that stores its cursor only after handling the entries gets
    /// each entry at least once, across restarts.
    pub async fn store_reader_cursor(&self, name: &str, seq: u64) -> Result<(), EngineError> {
        let mut commit = StepCommit::default();
        commit.put(Table::Cursors, reader_cursor_key(name), encode(&seq));
        self.inner.store.commit(commit)?.durable().await?;
        Ok(())
    }
}
