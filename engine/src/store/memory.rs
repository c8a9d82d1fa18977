//! An in-memory [`Store`]: same semantics as the sled store, nothing survives the process.

use super::{
    history_key, history_prefix, Ack, NotificationNumber, OutboxEntry, StepCommit, Store,
    StoreError, Table,
};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Inner {
    /// id → (snapshot, finished)
    instances: BTreeMap<String, (Vec<u8>, bool)>,
    history: BTreeMap<Vec<u8>, Vec<u8>>,
    tables: HashMap<Table, BTreeMap<Vec<u8>, Vec<u8>>>,
    outbox: BTreeMap<u64, Vec<u8>>,
    next_outbox: u64,
    notifications: BTreeMap<u64, Vec<u8>>,
    next_notification: u64,
    next_id: u64,
}

/// A store that keeps everything in memory. Commits are atomic (one lock) and durable at once
/// in the only sense that applies: visible to every later read.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn commit(&self, commit: StepCommit) -> Result<Ack, StoreError> {
        let StepCommit {
            instance,
            snapshot,
            first: _,
            history_from,
            history,
            outbox,
            notifications,
            changes,
        } = commit;
        let mut inner = self.lock();
        for (i, event) in history.into_iter().enumerate() {
            inner
                .history
                .insert(history_key(&instance, history_from + i as u64), event);
        }
        if let Some(change) = snapshot {
            let (bytes, running) = change.into_parts();
            inner.instances.insert(instance, (bytes, !running));
        }
        for payload in outbox {
            let seq = inner.next_outbox;
            inner.next_outbox += 1;
            inner.outbox.insert(seq, payload);
        }
        for change in changes {
            let table = inner.tables.entry(change.table).or_default();
            match change.value {
                Some(value) => {
                    table.insert(change.key, value);
                }
                None => {
                    table.remove(&change.key);
                }
            }
        }
        let mut last_notification = None;
        for entry in notifications {
            inner.next_notification += 1;
            let number = inner.next_notification;
            inner.notifications.insert(number, entry);
            last_notification = Some(number);
        }
        Ok(Ack::ready().with_last_notification(
            last_notification.map_or(NotificationNumber::None, NotificationNumber::Known),
        ))
    }

    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .instances
            .get(id)
            .map(|(bytes, _)| bytes.clone()))
    }

    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<_> = inner
            .instances
            .iter()
            .filter(|(_, (_, finished))| !finished)
            .map(|(id, (bytes, _))| (id.clone(), bytes.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = history_prefix(id);
        let inner = self.lock();
        Ok(inner
            .history
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lock()
            .tables
            .get(&table)
            .and_then(|t| t.get(key).cloned()))
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<super::KeyValue>, StoreError> {
        let inner = self.lock();
        let Some(t) = inner.tables.get(&table) else {
            return Ok(Vec::new());
        };
        Ok(t.range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .map(|(seq, payload)| OutboxEntry {
                seq: *seq,
                payload: payload.clone(),
            })
            .collect())
    }

    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for seq in seqs {
            inner.outbox.remove(seq);
        }
        Ok(())
    }

    fn instance_count(&self) -> Result<u64, StoreError> {
        Ok(self.lock().instances.len() as u64)
    }

    fn instance_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self.lock().instances.keys().cloned().collect();
        ids.sort();
        Ok(ids)
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        inner.next_id += 1;
        Ok(inner.next_id)
    }

    fn instances_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = self.lock();
        let start = match after {
            Some(id) => Bound::Excluded(id.to_string()),
            None => Bound::Unbounded,
        };
        Ok(inner
            .instances
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(id, (bytes, _))| (id.clone(), bytes.clone()))
            .collect())
    }

    fn purge_instance(&self, id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !matches!(inner.instances.get(id), Some((_, true))) {
            return Ok(());
        }
        inner.instances.remove(id);
        let prefix = history_prefix(id);
        inner.history.retain(|k, _| !k.starts_with(&prefix));
        let completions = format!("{id}/");
        if let Some(table) = inner.tables.get_mut(&Table::Completions) {
            table.retain(|k, _| !k.starts_with(completions.as_bytes()));
        }
        Ok(())
    }

    fn notifications_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .notifications
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(number, entry)| (*number, entry.clone()))
            .collect())
    }

    fn last_notification(&self) -> Result<u64, StoreError> {
        Ok(self.lock().next_notification)
    }

    fn remove_notifications_through(&self, through: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let keep_from = through.saturating_add(1).min(inner.next_notification);
        inner.notifications = inner.notifications.split_off(&keep_from);
        Ok(())
    }
}
