//! A store for the runtime's tests: memory underneath, with a record of every commit and a
//! deployment lock that can be made to fail.

use crate::store::{Ack, DeploymentLock, KeyValue, MemoryStore, OutboxEntry as StoredOutboxEntry};
use crate::store::{StepCommit, Store, StoreError, Table};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// A memory store that keeps a copy of every commit, and can play a store shared with other
/// engines whose deployment lock the database refuses for a while.
#[derive(Default)]
pub(super) struct RecordingStore {
    pub(super) inner: MemoryStore,
    /// Every commit, in order.
    pub(super) commits: Mutex<Vec<StepCommit>>,
    /// Whether it says other engines share it.
    pub(super) shared: bool,
    /// How many more times [`Store::lock_deployments`] fails (as a database that does not
    /// answer).
    pub(super) lock_refusals: AtomicU32,
}

impl Store for RecordingStore {
    fn commit(&self, commit: StepCommit) -> Result<Ack, StoreError> {
        self.commits.lock().unwrap().push(commit.clone());
        self.inner.commit(commit)
    }
    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.instance(id)
    }
    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.unfinished()
    }
    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.history(id)
    }
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn pending_outbox(&self) -> Result<Vec<StoredOutboxEntry>, StoreError> {
        self.inner.pending_outbox()
    }
    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.inner.ack_outbox(seqs)
    }
    fn instance_count(&self) -> Result<u64, StoreError> {
        self.inner.instance_count()
    }
    fn instance_ids(&self) -> Result<Vec<String>, StoreError> {
        self.inner.instance_ids()
    }
    fn next_id(&self) -> Result<u64, StoreError> {
        self.inner.next_id()
    }
    fn instances_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.instances_after(after, limit)
    }
    fn purge_instance(&self, id: &str) -> Result<(), StoreError> {
        self.inner.purge_instance(id)
    }
    fn notifications_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.inner.notifications_after(after, limit)
    }
    fn last_notification(&self) -> Result<u64, StoreError> {
        self.inner.last_notification()
    }
    fn remove_notifications_through(&self, through: u64) -> Result<(), StoreError> {
        self.inner.remove_notifications_through(through)
    }
    fn shared(&self) -> bool {
        self.shared
    }
    fn lock_deployments(&self) -> Result<DeploymentLock, StoreError> {
        let refused = self
            .lock_refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            return Err(StoreError::Io {
                path: "test store".into(),
                detail: "the database does not answer".into(),
            });
        }
        self.inner.lock_deployments()
    }
}
