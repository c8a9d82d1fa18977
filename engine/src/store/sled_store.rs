//! The durable [`Store`] on sled: each step is applied atomically, flushed per step or in
//! groups (see [`Durability`]). With group commit, the steps of a group are applied to the tree
//! as one batch just before the flush that covers them; until then readers see them through
//! the [`Overlay`].

use super::group::{FlushStats, GroupCommitter, NotificationNumber, Refused};
use super::ids::IdBlocks;
use super::instance_record::{decode_chunk, encode_chunk, InstanceRecord};
use super::overlay::{merge, Overlay, Write};
use super::packed::{pack, unpack};
use super::{
    history_key, history_prefix, Ack, Durability, OutboxEntry, StepCommit, Store, StoreError,
    Table, SCHEMA_VERSION,
};
use sled::{Db, Tree};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const SCHEMA_KEY: &[u8] = b"schema_version";
/// The durable bound of the id blocks handed out so far (see [`IdBlocks`]).
const ID_BOUND_KEY: &[u8] = b"id_bound";
/// Ids per durable reservation: one flush per this many instance starts and outbox entries.
const ID_BLOCK: u64 = 100_000;

// Every record lives in one tree, under a one-byte prefix per kind: a step is one atomic
// `apply_batch` on that tree, which sled writes to its log as a unit (cheaper than a transaction
// over several trees, same all-or-nothing guarantee).
/// Instance id → [`InstanceRecord`]: the latest snapshot and the latest turn's history.
const INSTANCES: u8 = b'i';
/// Instance id → nothing, while the instance is unfinished.
const ACTIVE: u8 = b'a';
/// [`history_key`] of its first slot → consecutive history entries (a chunk: one turn's tail
/// moved out of its instance record, or one commit's history without a snapshot).
const HISTORY: u8 = b'h';
const OUTBOX: u8 = b'o';
/// Big-endian number of its first entry → consecutive entries of the notification log (a chunk
/// of at most [`NOTIFICATION_CHUNK`], written by one commit).
const NOTIFICATIONS: u8 = b'n';
/// The most notification-log entries under one key, so that the chunk holding a given number
/// starts at most this many numbers before it.
const NOTIFICATION_CHUNK: usize = 16;

fn table_prefix(table: Table) -> u8 {
    match table {
        Table::Subscriptions => b'S',
        Table::BufferedMessages => b'B',
        Table::Completions => b'C',
        Table::Definitions => b'D',
        Table::Schedules => b'K',
        Table::Cursors => b'R',
        Table::Inbox => b'I',
    }
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(prefix);
    key.extend_from_slice(rest);
    key
}

/// A store in a sled directory.
pub struct SledStore {
    path: PathBuf,
    db: Db,
    /// The one tree holding every record (see the key prefixes above).
    tree: Tree,
    durability: Durability,
    group: Option<GroupCommitter>,
    /// Group commit only: the group's writes until the flusher applies them.
    overlay: Option<Arc<Overlay>>,
    /// Instance ids and outbox sequence numbers.
    ids: IdBlocks,
    /// The next notification-log number. Held while a commit with notifications is numbered and
    /// applied, so that numbers follow commit order.
    next_notification: Mutex<u64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// Fails with [`StoreError::SchemaMismatch`] when another schema version wrote it,
    /// [`StoreError::Corrupted`] when its files are damaged, [`StoreError::NotAStore`] when the
    /// directory holds some other sled database, and [`StoreError::Locked`] when another process
    /// has it open.
    pub fn open(dir: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = dir.as_ref().to_path_buf();
        let shown = path.display().to_string();
        // High-throughput mode: steps are small writes of many instances; it trades disk space
        // for less rewriting (measured: ~15% more group-commit instances/s than the default).
        let config = sled::Config::new()
            .path(&path)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput);
        // sled reports most damage as errors but can panic on some garbled files; either way the
        // caller gets a clear error and nothing is written. A store just closed in this process
        // releases its file lock when sled's background threads finish: retry briefly.
        let mut attempts = 0;
        let opened = loop {
            let opened = std::panic::catch_unwind(AssertUnwindSafe(|| config.open()));
            match &opened {
                Ok(Err(err))
                    if attempts < 100
                        && matches!(open_error(&shown, err.clone()), StoreError::Locked { .. }) =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => break opened,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(err)) => return Err(open_error(&shown, err)),
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the storage layer failed while reading it".into());
                return Err(StoreError::Corrupted {
                    path: shown,
                    detail,
                });
            }
        };
        let io = |err: sled::Error| io_error(&shown, err);
        let fresh = db.tree_names().len() <= 1 && db.is_empty();
        match db.get(SCHEMA_KEY).map_err(io)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupted {
                        path: shown.clone(),
                        detail: "the schema version marker is damaged".into(),
                    })?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaMismatch {
                        path: shown,
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None if fresh => {
                db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(io)?;
                db.flush().map_err(io)?;
            }
            None => return Err(StoreError::NotAStore { path: shown }),
        }
        let id_bound = match db.get(ID_BOUND_KEY).map_err(io)? {
            Some(bytes) => <[u8; 8]>::try_from(bytes.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupted {
                    path: shown.clone(),
                    detail: "the id reservation marker is damaged".into(),
                })?,
            None => 1,
        };
        let ids = IdBlocks::new(id_bound, ID_BLOCK);
        let tree = db.open_tree("flowbot").map_err(io)?;
        let next_notification = match tree.scan_prefix([NOTIFICATIONS]).next_back() {
            Some(entry) => {
                let (k, chunk) = entry.map_err(io)?;
                let (first, entries) = decode_notifications(&k[1..], &chunk).map_err(|detail| {
                    StoreError::Corrupted {
                        path: shown.clone(),
                        detail,
                    }
                })?;
                first + entries.len() as u64
            }
            None => 1,
        };
        let (group, overlay) = match durability {
            Durability::Step => (None, None),
            Durability::Group { window, max_batch } => {
                let overlay = Arc::new(Overlay::default());
                let (flush_db, flush_tree, flush_overlay) =
                    (db.clone(), tree.clone(), overlay.clone());
                let flush = move || {
                    let failed = |e: sled::Error| StoreError::FlushFailed(e.to_string());
                    if let Some(batch) = flush_overlay.begin_apply() {
                        flush_tree.apply_batch(batch).map_err(failed)?;
                        flush_overlay.applied();
                    }
                    flush_db.flush().map(|_| Refused::new()).map_err(failed)
                };
                let committer = GroupCommitter::start(window, max_batch, flush).map_err(|e| {
                    StoreError::Io {
                        path: shown.clone(),
                        detail: format!("cannot start the flusher: {e}"),
                    }
                })?;
                (Some(committer), Some(overlay))
            }
        };
        tracing::debug!(path = %shown, ?durability, "store opened");
        Ok(Self {
            path,
            db,
            tree,
            durability,
            group,
            overlay,
            ids,
            next_notification: Mutex::new(next_notification),
        })
    }

    /// The durability mode the store was opened with.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Flushes and the commits they covered, when group commit is on.
    pub fn flush_stats(&self) -> Option<FlushStats> {
        self.group.as_ref().map(GroupCommitter::stats)
    }

    /// Overwrites the schema marker (for tests of the version check and for migrations).
    pub fn write_schema_version(&self, version: u32) -> Result<(), StoreError> {
        let io = |err| io_error(&self.path.display().to_string(), err);
        self.db
            .insert(SCHEMA_KEY, &version.to_be_bytes())
            .map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn io(&self, err: sled::Error) -> StoreError {
        io_error(&self.path.display().to_string(), err)
    }

    /// Every record under `prefix` + `rest`, keys without the prefix byte, group writes included.
    fn scan_prefix(&self, prefix: u8, rest: &[u8]) -> Result<Vec<super::KeyValue>, StoreError> {
        let full = key(prefix, rest);
        // The overlay first: a write that leaves it during the tree scan is in the tree by then.
        let pending = self
            .overlay
            .as_ref()
            .map(|overlay| overlay.scan(&full))
            .unwrap_or_default();
        let mut tree = Vec::new();
        for entry in self.tree.scan_prefix(&full) {
            let (k, v) = entry.map_err(|e| self.io(e))?;
            tree.push((k.to_vec(), v.to_vec()));
        }
        Ok(merge(tree, pending)
            .into_iter()
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect())
    }

    /// One record, group writes included.
    fn read(&self, full_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(write) = self
            .overlay
            .as_ref()
            .and_then(|overlay| overlay.get(full_key))
        {
            return Ok(write);
        }
        Ok(self
            .tree
            .get(full_key)
            .map_err(|e| self.io(e))?
            .map(|v| v.to_vec()))
    }

    /// Applies one step's writes: into the overlay with group commit, else straight to the tree.
    fn apply(&self, writes: Vec<(Vec<u8>, Write)>) -> Result<(), StoreError> {
        match &self.overlay {
            Some(overlay) => overlay.write_all(writes),
            None => {
                let mut batch = sled::Batch::default();
                for (k, write) in writes {
                    match write {
                        Some(value) => batch.insert(k, value),
                        None => batch.remove(k),
                    }
                }
                self.tree.apply_batch(batch).map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }
}

fn open_error(path: &str, err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { at, .. } => StoreError::Corrupted {
            path: path.into(),
            detail: match at {
                Some(at) => format!("damaged data at {at}"),
                None => "damaged data".into(),
            },
        },
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
        {
            StoreError::Locked {
                path: path.into(),
                detail: io.to_string(),
            }
        }
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupted {
                path: path.into(),
                detail: format!("truncated file ({io})"),
            }
        }
        other => io_error(path, other),
    }
}

fn io_error(path: &str, err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::Corrupted {
            path: path.into(),
            detail: err.to_string(),
        },
        other => StoreError::Io {
            path: path.into(),
            detail: other.to_string(),
        },
    }
}

impl Store for SledStore {
    fn flush_stats(&self) -> Option<FlushStats> {
        SledStore::flush_stats(self)
    }

    fn commit(&self, commit: StepCommit) -> Result<Ack, StoreError> {
        let StepCommit {
            instance,
            snapshot,
            first,
            history_from,
            history,
            outbox,
            notifications,
            changes,
        } = commit;
        let id = instance.as_bytes();
        let mut writes: Vec<(Vec<u8>, Write)> =
            Vec::with_capacity(3 + history.len() + outbox.len() + changes.len());
        match snapshot {
            Some(change) => {
                let (snapshot, running) = change.into_parts();
                // This commit's history becomes the record's tail; the previous tail moves to
                // one history key (a chunk). Without new history the previous tail stays where it is.
                let stored = if !first && history_from > 0 {
                    self.read(&key(INSTANCES, id))?
                } else {
                    None
                };
                let unpacked = stored
                    .as_deref()
                    .map(|bytes| self.unpack(&instance, bytes))
                    .transpose()?;
                let previous = unpacked
                    .as_deref()
                    .map(|bytes| self.decode_record(&instance, bytes))
                    .transpose()?;
                let record = match previous {
                    Some(previous) if history.is_empty() => {
                        InstanceRecord::encode(&snapshot, previous.tail_from, &previous.tail)
                    }
                    previous => {
                        if let Some(previous) = previous.filter(|p| !p.tail.is_empty()) {
                            writes.push((
                                key(HISTORY, &history_key(&instance, previous.tail_from)),
                                Some(pack(&encode_chunk(&previous.tail))),
                            ));
                        }
                        InstanceRecord::encode(&snapshot, history_from, &history)
                    }
                };
                writes.push((key(INSTANCES, id), Some(pack(&record))));
                if running || !first {
                    writes.push((key(ACTIVE, id), running.then(Vec::new)));
                }
            }
            None if history.is_empty() => {}
            None => writes.push((
                key(HISTORY, &history_key(&instance, history_from)),
                Some(pack(&encode_chunk(&history))),
            )),
        }
        for payload in outbox {
            let seq = self.next_seq()?;
            writes.push((key(OUTBOX, &seq.to_be_bytes()), Some(payload)));
        }
        for change in changes {
            writes.push((key(table_prefix(change.table), &change.key), change.value));
        }
        if notifications.is_empty() {
            self.apply(writes)?;
            return Ok(self.acknowledge());
        }
        // Numbered and applied under one lock: numbers follow the order in which commits become
        // visible (and, flushes covering everything applied before them, durable).
        let mut next = self
            .next_notification
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for chunk in notifications.chunks(NOTIFICATION_CHUNK) {
            writes.push((
                key(NOTIFICATIONS, &next.to_be_bytes()),
                Some(pack(&encode_chunk(chunk))),
            ));
            *next += chunk.len() as u64;
        }
        let last = *next - 1;
        self.apply(writes)?;
        let ack = self.acknowledge();
        drop(next);
        Ok(ack.with_last_notification(NotificationNumber::Known(last)))
    }

    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(bytes) = self.read(&key(INSTANCES, id.as_bytes()))? else {
            return Ok(None);
        };
        let unpacked = self.unpack(id, &bytes)?;
        Ok(Some(self.decode_record(id, &unpacked)?.snapshot.to_vec()))
    }

    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for (id_bytes, _) in self.scan_prefix(ACTIVE, b"")? {
            let id = self.utf8_id(&id_bytes)?;
            let snapshot = self.instance(&id)?.ok_or_else(|| StoreError::Corrupted {
                path: self.path.display().to_string(),
                detail: format!("instance {id} is marked unfinished but has no snapshot"),
            })?;
            out.push((id, snapshot));
        }
        Ok(out)
    }

    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        // The record first: a commit that moves its tail in between leaves those entries in
        // both places (same slots, same bytes), never in neither.
        let record = self.read(&key(INSTANCES, id.as_bytes()))?;
        let mut entries = std::collections::BTreeMap::new();
        for (k, chunk) in self.scan_prefix(HISTORY, &history_prefix(id))? {
            let first = self.history_slot(id, &k)?;
            let unpacked = self.unpack(id, &chunk)?;
            let chunk = decode_chunk(&unpacked).ok_or_else(|| StoreError::Corrupted {
                path: self.path.display().to_string(),
                detail: format!("a history chunk of instance {id} is damaged"),
            })?;
            for (i, entry) in chunk.into_iter().enumerate() {
                entries.insert(first + i as u64, entry.to_vec());
            }
        }
        if let Some(bytes) = &record {
            let unpacked = self.unpack(id, bytes)?;
            for (slot, entry) in self.decode_record(id, &unpacked)?.tail_slots() {
                entries.entry(slot).or_insert_with(|| entry.to_vec());
            }
        }
        Ok(entries.into_values().collect())
    }

    fn get(&self, table: Table, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(&key(table_prefix(table), k))
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<super::KeyValue>, StoreError> {
        self.scan_prefix(table_prefix(table), prefix)
    }

    fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.scan_prefix(OUTBOX, b"")?
            .into_iter()
            .map(|(k, payload)| {
                let seq = <[u8; 8]>::try_from(k.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupted {
                        path: self.path.display().to_string(),
                        detail: "bad outbox key".into(),
                    })?;
                Ok(OutboxEntry { seq, payload })
            })
            .collect()
    }

    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        self.apply(
            seqs.iter()
                .map(|seq| (key(OUTBOX, &seq.to_be_bytes()), None))
                .collect(),
        )?;
        if let Some(group) = &self.group {
            // Nobody waits for it: a delivery acknowledged but lost in a crash is redelivered.
            let _flushed_later = group.committed();
        }
        Ok(())
    }

    fn instance_count(&self) -> Result<u64, StoreError> {
        Ok(self.scan_prefix(INSTANCES, b"")?.len() as u64)
    }

    fn instance_ids(&self) -> Result<Vec<String>, StoreError> {
        self.scan_prefix(INSTANCES, b"")?
            .into_iter()
            .map(|(k, _)| self.utf8_id(&k))
            .collect()
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        self.next_seq()
    }

    fn instances_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for (id_bytes, stored) in
            self.scan_after(INSTANCES, after.unwrap_or("").as_bytes(), limit)?
        {
            let id = self.utf8_id(&id_bytes)?;
            let unpacked = self.unpack(&id, &stored)?;
            let snapshot = self.decode_record(&id, &unpacked)?.snapshot.to_vec();
            out.push((id, snapshot));
        }
        Ok(out)
    }

    fn purge_instance(&self, id: &str) -> Result<(), StoreError> {
        if self.read(&key(ACTIVE, id.as_bytes()))?.is_some() {
            return Ok(());
        }
        let mut writes: Vec<(Vec<u8>, Write)> = vec![(key(INSTANCES, id.as_bytes()), None)];
        for (k, _) in self.scan_prefix(HISTORY, &history_prefix(id))? {
            writes.push((key(HISTORY, &k), None));
        }
        for (k, _) in self.scan_prefix(
            table_prefix(Table::Completions),
            format!("{id}/").as_bytes(),
        )? {
            writes.push((key(table_prefix(Table::Completions), &k), None));
        }
        self.apply(writes)?;
        // Nobody waits: a purge lost in a crash is repeated by the next sweep.
        drop(self.acknowledge());
        Ok(())
    }

    fn notifications_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        // The chunk holding `after + 1` starts at most NOTIFICATION_CHUNK - 1 numbers before
        // it; `limit` chunks after that one hold at least `limit` entries.
        let from = after.saturating_sub(NOTIFICATION_CHUNK as u64 - 1);
        let wanted = limit.saturating_add(NOTIFICATION_CHUNK);
        let scanned = match from.checked_sub(1) {
            Some(before) => self.scan_after(NOTIFICATIONS, &before.to_be_bytes(), wanted)?,
            None => self.scan_after(NOTIFICATIONS, &[], wanted)?,
        };
        let mut out = Vec::new();
        for (k, chunk) in scanned {
            let (first, entries) = self.notification_chunk(&k, &chunk)?;
            for (i, entry) in entries.into_iter().enumerate() {
                let number = first + i as u64;
                if number > after && out.len() < limit {
                    out.push((number, entry));
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn last_notification(&self) -> Result<u64, StoreError> {
        Ok(self
            .next_notification
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_sub(1))
    }

    fn remove_notifications_through(&self, through: u64) -> Result<(), StoreError> {
        let newest = self
            .next_notification
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_sub(1);
        // Entries up to `cut` go; the newest stays, so that numbering goes on after a restart.
        // A chunk that holds both kinds is written again with the entries that stay.
        let cut = through.min(newest.saturating_sub(1));
        let mut writes: Vec<(Vec<u8>, Write)> = Vec::new();
        for (k, chunk) in self.scan_after(NOTIFICATIONS, &[], usize::MAX)? {
            let (first, entries) = self.notification_chunk(&k, &chunk)?;
            if first > cut {
                break;
            }
            writes.push((key(NOTIFICATIONS, &k), None));
            let kept = &entries[entries.len().min((cut + 1 - first) as usize)..];
            if !kept.is_empty() {
                writes.push((
                    key(NOTIFICATIONS, &(cut + 1).to_be_bytes()),
                    Some(pack(&encode_chunk(kept))),
                ));
                break;
            }
        }
        if !writes.is_empty() {
            self.apply(writes)?;
            drop(self.acknowledge());
        }
        Ok(())
    }
}

/// The number in a notification key (without its prefix byte): its chunk's first.
fn notification_number(k: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes)
}

/// A chunk of the notification log: the number of its first entry and its entries, or what is
/// damaged.
fn decode_notifications(k: &[u8], packed: &[u8]) -> Result<(u64, Vec<Vec<u8>>), String> {
    let first = notification_number(k).ok_or("a notification key is damaged")?;
    let unpacked =
        unpack(packed).ok_or_else(|| format!("notification {first} cannot be decompressed"))?;
    let entries = decode_chunk(&unpacked)
        .filter(|entries| !entries.is_empty())
        .ok_or_else(|| format!("the notifications from {first} on are damaged"))?;
    Ok((first, entries.into_iter().map(<[u8]>::to_vec).collect()))
}

impl SledStore {
    /// The acknowledgement of a commit just applied: the group flusher's, or a flush of its own
    /// that runs when the caller waits for it (off the async threads).
    fn acknowledge(&self) -> Ack {
        match &self.group {
            Some(group) => group.committed(),
            None => {
                let db = self.db.clone();
                Ack::after_flush(Arc::new(move || {
                    db.flush().map(drop).map_err(|e| e.to_string())
                }))
            }
        }
    }

    /// Up to `limit` records under `prefix` whose keys (without the prefix) come after `after`,
    /// group writes included, keys without the prefix byte.
    fn scan_after(
        &self,
        prefix: u8,
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<super::KeyValue>, StoreError> {
        let start = key(prefix, after);
        let pending: std::collections::BTreeMap<Vec<u8>, Write> = self
            .overlay
            .as_ref()
            .map(|overlay| overlay.scan(&[prefix]))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k.as_slice() > start.as_slice())
            .collect();
        // Removals in the overlay can hide at most that many tree entries.
        let wanted = limit.saturating_add(pending.len());
        let mut tree = Vec::new();
        let range = (
            std::ops::Bound::Excluded(start.clone()),
            std::ops::Bound::Excluded(vec![prefix + 1]),
        );
        for entry in self.tree.range::<Vec<u8>, _>(range).take(wanted) {
            let (k, v) = entry.map_err(|e| self.io(e))?;
            tree.push((k.to_vec(), v.to_vec()));
        }
        let mut merged = merge(tree, pending);
        merged.truncate(limit);
        Ok(merged
            .into_iter()
            .map(|(k, v)| (k[1..].to_vec(), v))
            .collect())
    }

    /// The next id, never handed out before, also across crashes.
    fn next_seq(&self) -> Result<u64, StoreError> {
        self.ids.next(|bound| {
            self.db
                .insert(ID_BOUND_KEY, &bound.to_be_bytes())
                .map_err(|e| self.io(e))?;
            self.db.flush().map(drop).map_err(|e| self.io(e))
        })
    }

    /// A stored instance record or history entry, decompressed.
    fn unpack<'a>(
        &self,
        id: &str,
        stored: &'a [u8],
    ) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
        unpack(stored).ok_or_else(|| StoreError::Corrupted {
            path: self.path.display().to_string(),
            detail: format!("a stored value of instance {id} cannot be decompressed"),
        })
    }

    /// A stored chunk of the notification log: its first number and its entries.
    fn notification_chunk(
        &self,
        k: &[u8],
        packed: &[u8],
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        decode_notifications(k, packed).map_err(|detail| StoreError::Corrupted {
            path: self.path.display().to_string(),
            detail,
        })
    }

    fn decode_record<'a>(
        &self,
        id: &str,
        bytes: &'a [u8],
    ) -> Result<InstanceRecord<'a>, StoreError> {
        InstanceRecord::decode(bytes).ok_or_else(|| StoreError::Corrupted {
            path: self.path.display().to_string(),
            detail: format!("the record of instance {id} is damaged"),
        })
    }

    /// The history slot at the end of a history key (the key without its prefix byte).
    fn history_slot(&self, id: &str, k: &[u8]) -> Result<u64, StoreError> {
        k.len()
            .checked_sub(8)
            .and_then(|at| k[at..].try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupted {
                path: self.path.display().to_string(),
                detail: format!("a history key of instance {id} is damaged"),
            })
    }

    fn utf8_id(&self, bytes: &[u8]) -> Result<String, StoreError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Corrupted {
            path: self.path.display().to_string(),
            detail: "an instance id is not UTF-8".into(),
        })
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Stop the flusher first: it flushes what is pending.
        self.group.take();
        if let Err(err) = self.db.flush() {
            tracing::error!(path = %self.path.display(), error = %err, "final flush failed");
        }
    }
}
