//! Durable state of running processes.
//!
//! A [`Store`] keeps, per instance, a snapshot of its serialized state, its history (audit log),
//! and the engine-wide tables that outlive one step: message and signal subscriptions, buffered early messages, handler completion records (idempotency keys),
//! deployed definition versions, and the notification outbox.
//!
//! Everything one executor step changes is handed over as one [`StepCommit`] and applied
//! atomically (in sled: one atomic batch, or with group commit one batch per group of steps): after a crash either all of it is there or none of it. The returned [`Ack`] says
//! when the step is durable; the engine performs no side effect, notification or API
//! acknowledgement of a step before its `Ack` has resolved.
//!
//! Beside the outbox (thrown events, removed once delivered), the store keeps the notification
//! log: what business rules told people and systems (`notify`, `emit`), numbered in commit order
//! and kept for the retention period, so that a reader can resume "after number N".
//!
//! The store is deliberately ignorant of the executor's types: snapshots, events and records are
//! bytes encoded by the caller, so the storage layout does not change when the executor does.
//! Two implementations here: [`MemoryStore`] (tests, `run` without `--store`) and [`SledStore`]
//! (durable, with per-step or group flushing, see [`Durability`]); the `flowbot-postgres` crate
//! adds one on PostgreSQL. Every implementation passes the same suite, [`conformance`] (cargo
//! feature `test-support`).

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod group;
mod ids;
mod instance_record;
mod memory;
mod overlay;
mod packed;
mod sled_store;

pub use group::{Ack, FlushStats, GroupCommitter, NotificationNumber, Refused};
pub use memory::MemoryStore;
pub use sled_store::SledStore;

use std::time::Duration;

/// The layout version written into every sled store; a store with another version is refused.
pub const SCHEMA_VERSION: u32 = 5;

/// The engine-wide keyed tables a step may change besides its own instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Table {
    /// Message and signal subscriptions of waiting instances.
    Subscriptions,
    /// Messages that arrived before any subscriber, kept until they expire.
    BufferedMessages,
    /// Handler completion records, keyed by idempotency key (`instance/node/activation`): a job
    /// recorded here is never recorded again.
    Completions,
    /// Deployed definitions and their versions.
    Definitions,
    /// Schedules of timer start events: the next tick of each, moved in the commit that starts
    /// the tick's instance.
    Schedules,
    /// How far each durable reader of the notification log has read (e.g. the engine's effect
    /// sink), by reader name.
    Cursors,
    /// Messages and signals for waits in shards another engine owns, kept until the owner
    /// delivers them (several engines on one store).
    Inbox,
}

/// One change to a keyed table: `Some(value)` puts, `None` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChange {
    /// The table changed.
    pub table: Table,
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
}

/// What the instance's snapshot becomes in a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotChange {
    /// The instance is (still) unfinished: it is reloaded on restart.
    Running(Vec<u8>),
    /// The instance has ended: the snapshot stays queryable but is not reloaded.
    Finished(Vec<u8>),
}

impl SnapshotChange {
    /// The snapshot, and whether the instance is still unfinished.
    pub fn into_parts(self) -> (Vec<u8>, bool) {
        match self {
            SnapshotChange::Running(bytes) => (bytes, true),
            SnapshotChange::Finished(bytes) => (bytes, false),
        }
    }
}

/// Everything one step of one instance (or one engine-level operation) changes, applied
/// atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepCommit {
    /// The instance the step belongs to; empty for engine-level changes (deployments).
    pub instance: String,
    /// The new snapshot, if it changed.
    pub snapshot: Option<SnapshotChange>,
    /// Set on an instance's first commit, when nothing of it is stored yet: a store need not
    /// look for earlier state (an instance that ends in its first commit was never unfinished).
    pub first: bool,
    /// Sequence number of the first event in `history` (the number of events already stored
    /// for the instance); events are stored under consecutive numbers from there.
    pub history_from: u64,
    /// History events to append, encoded by the caller.
    pub history: Vec<Vec<u8>>,
    /// Thrown events to deliver once the step is durable, encoded by the caller; removed with
    /// [`Store::ack_outbox`] once delivered.
    pub outbox: Vec<Vec<u8>>,
    /// Entries to append to the notification log, encoded by the caller. The store numbers
    /// them in commit order (see [`Store::notifications_after`]).
    pub notifications: Vec<Vec<u8>>,
    /// Changes to the engine-wide tables.
    pub changes: Vec<TableChange>,
}

impl StepCommit {
    /// An empty commit for `instance`.
    pub fn for_instance(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            ..Self::default()
        }
    }

    /// Adds a put of `key` → `value` in `table`.
    pub fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.changes.push(TableChange {
            table,
            key,
            value: Some(value),
        });
    }

    /// Adds a removal of `key` from `table`.
    pub fn remove(&mut self, table: Table, key: Vec<u8>) {
        self.changes.push(TableChange {
            table,
            key,
            value: None,
        });
    }
}

/// A key and its value, as a scan returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An outbox entry as stored: its sequence number (delivery order) and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Monotonic sequence number; pass it to [`Store::ack_outbox`] once delivered.
    pub seq: u64,
    /// The payload, encoded by the caller.
    pub payload: Vec<u8>,
}

/// When a committed step reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every commit is flushed (fsync) before it is acknowledged: one flush per step.
    Step,
    /// Commits of many instances share one flush. A commit is acknowledged once the flush that
    /// follows it has finished; that flush starts at most `window` after the commit was made
    /// (at once when `max_batch` commits are pending), or as soon as the flush under way when the
    /// window ran out has returned, so the window bounds the added latency.
    Group {
        /// How long a commit waits for others to share its flush (counted from the commit).
        window: Duration,
        /// Flush at once when this many commits are pending.
        max_batch: usize,
    },
}

impl Durability {
    /// The default group-commit window.
    pub const GROUP_WINDOW: Duration = Duration::from_millis(1);
    /// The default number of pending commits that makes the flusher flush at once.
    pub const GROUP_MAX_BATCH: usize = 512;

    /// Group commit with the defaults used by `serve`: a 1 ms window, 512 commits at most.
    pub fn group() -> Self {
        Durability::Group {
            window: Self::GROUP_WINDOW,
            max_batch: Self::GROUP_MAX_BATCH,
        }
    }
}

/// Errors from a store. Clone, so that a failed group flush can give its error to every step it
/// covered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store was written by another schema version of Flowbot.
    #[error("store {path} has schema version {found}, this build of flowbot reads schema version {expected}; migrate it with the build that wrote it or start a new store")]
    SchemaMismatch {
        /// The store directory.
        path: String,
        /// The version found on disk.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// The directory holds data but no Flowbot schema marker.
    #[error(
        "{path} is not a flowbot store (it holds data but no schema version); refusing to use it"
    )]
    NotAStore {
        /// The store directory.
        path: String,
    },
    /// The files are damaged (truncated, overwritten, ...).
    #[error("store {path} is corrupted and cannot be opened: {detail}; restore it from a backup (nothing was changed)")]
    Corrupted {
        /// The store directory.
        path: String,
        /// What the storage layer reported.
        detail: String,
    },
    /// Another process holds the store open.
    #[error("store {path} is in use by another process: {detail}")]
    Locked {
        /// The store directory.
        path: String,
        /// What the operating system reported.
        detail: String,
    },
    /// An I/O or storage failure while reading or writing.
    #[error("store {path}: {detail}")]
    Io {
        /// The store directory.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The background flusher stopped after a failed flush; nothing after that is durable.
    #[error("store flush failed: {0}")]
    FlushFailed(String),
    /// Another node took over shards this node wrote to (their epoch moved on since this node
    /// took them): the step was not written (steps of other shards in the same transaction are
    /// written without it).
    #[error("store {path}: shard(s) {shards:?} were taken over from this node; the step was not written: {owner} serves the instance now")]
    Fenced {
        /// The store's location.
        path: String,
        /// The shards whose epoch moved on.
        shards: Vec<u32>,
        /// Who owns them now, as the store records it.
        owner: String,
    },
}

/// Durable state of the engine. Implementations are shared between threads and tasks.
pub trait Store: Send + Sync + 'static {
    /// Applies `commit` atomically and returns an [`Ack`] that resolves once it is durable.
    fn commit(&self, commit: StepCommit) -> Result<Ack, StoreError>;

    /// The latest snapshot of an instance (finished or not).
    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every unfinished instance with its snapshot, in id order.
    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// The history events of an instance, in order.
    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError>;

    /// One value of an engine-wide table.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every entry of `table` whose key starts with `prefix`, in key order.
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;

    /// Outbox entries not yet acknowledged, in order.
    fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Removes delivered outbox entries.
    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError>;

    /// Number of instances ever stored (finished or not).
    fn instance_count(&self) -> Result<u64, StoreError>;

    /// The ids of every stored instance (finished or not), in id order.
    fn instance_ids(&self) -> Result<Vec<String>, StoreError>;

    /// A number never handed out before by this store, also across restarts and crashes (for
    /// instance ids). Numbers increase but may skip.
    fn next_id(&self) -> Result<u64, StoreError>;

    /// Up to `limit` stored instances (finished or not) with their snapshots, in id order,
    /// starting after the id `after` (from the first when `None`): paging through every instance.
    fn instances_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Removes an ended instance for good: its snapshot, its history and the completion records
    /// under its id (retention). An unfinished instance is left alone.
    fn purge_instance(&self, id: &str) -> Result<(), StoreError>;

    /// Up to `limit` entries of the notification log with a sequence number above `after`, in
    /// order. Numbers are given by the store when the commit holding the entry is applied, in
    /// commit order: an entry is never numbered below one already committed. A reader that must
    /// not see entries that a crash could still take back reads only up to the highest number
    /// an [`Ack`] has confirmed durable ([`Ack::last_notification`]) or a [shared](Store::shared)
    /// store reports.
    fn notifications_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The highest number in the notification log (0 when it is empty and never held an entry);
    /// for a [shared](Store::shared) store, the highest number committed by any process.
    fn last_notification(&self) -> Result<u64, StoreError>;

    /// Whether other processes append to this store too (several nodes on one database): the
    /// engine then polls [`Store::last_notification`] to show their entries to its readers.
    fn shared(&self) -> bool {
        false
    }

    /// Removes the notification log's entries numbered up to `through` (retention). The newest
    /// entry is kept, so that numbering goes on from it after a restart.
    fn remove_notifications_through(&self, through: u64) -> Result<(), StoreError>;

    /// Whether the storage answers now, without waiting for pending commits (readiness probes).
    /// Stores inside the process always do.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Flush counters of a store that commits in groups (`None` for others).
    fn flush_stats(&self) -> Option<FlushStats> {
        None
    }

    /// Holds off the deployments and timer-start ticks of every other process on a
    /// [shared](Store::shared) store until the returned lock is dropped. Under it the engine
    /// reads what the others deployed and how far the schedules moved, then chooses a version
    /// number or moves a schedule, and drops the lock once that commit is durable: so two nodes
    /// never give one version number to different content, and no schedule is moved from a
    /// stale copy. A store of one process returns a lock that holds nothing (the engine's own
    /// locks serialize its work).
    fn lock_deployments(&self) -> Result<DeploymentLock, StoreError> {
        Ok(DeploymentLock::default())
    }
}

/// A store's cluster-wide deployment lock ([`Store::lock_deployments`]), released on drop.
#[derive(Default)]
#[must_use = "the lock is released when dropped"]
pub struct DeploymentLock {
    /// Whatever keeps the lock, dropped to release it (`None`: nothing to hold).
    holder: Option<Box<dyn Send>>,
}

impl DeploymentLock {
    /// A lock kept for as long as `holder` lives; dropping the holder releases it.
    pub fn held_by(holder: impl Send + 'static) -> Self {
        Self {
            holder: Some(Box::new(holder)),
        }
    }
}

impl std::fmt::Debug for DeploymentLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentLock")
            .field("held", &self.holder.is_some())
            .finish()
    }
}

/// History key: instance id, a zero byte, then the big-endian event number.
pub(crate) fn history_key(instance: &str, seq: u64) -> Vec<u8> {
    let mut key = history_prefix(instance);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The prefix shared by every history key of `instance`.
pub(crate) fn history_prefix(instance: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(instance.len() + 9);
    key.extend_from_slice(instance.as_bytes());
    key.push(0);
    key
}

#[cfg(test)]
mod tests;
