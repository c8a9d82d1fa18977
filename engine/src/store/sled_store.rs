//! The durable [`Store`] on sled: one multi-tree transaction per step, flushed per step or in
//! groups (see [`Durability`]).

use super::group::{FlushStats, GroupCommitter};
use super::{
    history_key, history_prefix, Ack, Durability, OutboxEntry, SnapshotChange, StepCommit, Store, StoreError, Table,
    SCHEMA_VERSION,
};
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Db, Tree};
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

const SCHEMA_KEY: &[u8] = b"schema_version";

// Positions of the trees in `SledStore::trees`, the order of one transaction's view.
const INSTANCES: usize = 0;
const ACTIVE: usize = 1;
const HISTORY: usize = 2;
const OUTBOX: usize = 3;
const FIRST_TABLE: usize = 4;

fn table_index(table: Table) -> usize {
    FIRST_TABLE
        + match table {
            Table::Timers => 0,
            Table::Subscriptions => 1,
            Table::BufferedMessages => 2,
            Table::Completions => 3,
            Table::Definitions => 4,
        }
}

/// A store in a sled directory.
pub struct SledStore {
    path: PathBuf,
    db: Db,
    /// instances, active, history, outbox, then one tree per [`Table`] in [`Table::ALL`] order.
    trees: Vec<Tree>,
    durability: Durability,
    group: Option<GroupCommitter>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("path", &self.path).field("durability", &self.durability).finish()
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
        let config = sled::Config::new().path(&path).flush_every_ms(None);
        // sled reports most damage as errors but can panic on some garbled files; either way the
        // caller gets a clear error and nothing is written.
        let opened = std::panic::catch_unwind(AssertUnwindSafe(|| config.open()));
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(err)) => return Err(open_error(&shown, err)),
            Err(panic) => {
                let detail = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the storage layer failed while reading it".into());
                return Err(StoreError::Corrupted { path: shown, detail });
            }
        };
        let io = |err: sled::Error| io_error(&shown, err);
        let fresh = db.tree_names().len() <= 1 && db.is_empty();
        match db.get(SCHEMA_KEY).map_err(io)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref()).map(u32::from_be_bytes).map_err(|_| {
                    StoreError::Corrupted { path: shown.clone(), detail: "the schema version marker is damaged".into() }
                })?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::SchemaMismatch { path: shown, found, expected: SCHEMA_VERSION });
                }
            }
            None if fresh => {
                db.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()).map_err(io)?;
                db.flush().map_err(io)?;
            }
            None => return Err(StoreError::NotAStore { path: shown }),
        }
        let mut trees = Vec::with_capacity(FIRST_TABLE + Table::ALL.len());
        for name in ["instances", "active", "history", "outbox"] {
            trees.push(db.open_tree(name).map_err(io)?);
        }
        for table in Table::ALL {
            trees.push(db.open_tree(table.tree_name()).map_err(io)?);
        }
        let group = match durability {
            Durability::Step => None,
            Durability::Group { window, max_batch } => {
                let flush_db = db.clone();
                Some(
                    GroupCommitter::start(window, max_batch, move || {
                        flush_db.flush().map(|_| ()).map_err(|e| e.to_string())
                    })
                    .map_err(|e| StoreError::Io { path: shown.clone(), detail: format!("cannot start the flusher: {e}") })?,
                )
            }
        };
        tracing::debug!(path = %shown, ?durability, "store opened");
        Ok(Self { path, db, trees, durability, group })
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
        self.db.insert(SCHEMA_KEY, &version.to_be_bytes()).map_err(io)?;
        self.db.flush().map_err(io)?;
        Ok(())
    }

    fn io(&self, err: sled::Error) -> StoreError {
        io_error(&self.path.display().to_string(), err)
    }

    fn tree(&self, index: usize) -> &Tree {
        &self.trees[index]
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
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
            StoreError::Locked { path: path.into(), detail: io.to_string() }
        }
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            StoreError::Corrupted { path: path.into(), detail: format!("truncated file ({io})") }
        }
        other => io_error(path, other),
    }
}

fn io_error(path: &str, err: sled::Error) -> StoreError {
    match err {
        sled::Error::Corruption { .. } => StoreError::Corrupted { path: path.into(), detail: err.to_string() },
        other => StoreError::Io { path: path.into(), detail: other.to_string() },
    }
}

impl Store for SledStore {
    fn commit(&self, commit: &StepCommit) -> Result<Ack, StoreError> {
        let trees: Vec<&Tree> = self.trees.iter().collect();
        let result: Result<(), TransactionError<Infallible>> = trees.as_slice().transaction(|tx| {
            match &commit.snapshot {
                Some(SnapshotChange::Running(bytes)) => {
                    tx[INSTANCES].insert(commit.instance.as_bytes(), bytes.as_slice())?;
                    tx[ACTIVE].insert(commit.instance.as_bytes(), &[] as &[u8])?;
                }
                Some(SnapshotChange::Finished(bytes)) => {
                    tx[INSTANCES].insert(commit.instance.as_bytes(), bytes.as_slice())?;
                    tx[ACTIVE].remove(commit.instance.as_bytes())?;
                }
                None => {}
            }
            for (i, event) in commit.history.iter().enumerate() {
                tx[HISTORY].insert(history_key(&commit.instance, commit.history_from + i as u64), event.as_slice())?;
            }
            for payload in &commit.outbox {
                let seq = tx[OUTBOX].generate_id()?;
                tx[OUTBOX].insert(&seq.to_be_bytes(), payload.as_slice())?;
            }
            for change in &commit.changes {
                let tree = &tx[table_index(change.table)];
                match &change.value {
                    Some(value) => tree.insert(change.key.as_slice(), value.as_slice())?,
                    None => tree.remove(change.key.as_slice())?,
                };
            }
            Ok::<(), ConflictableTransactionError<Infallible>>(())
        });
        match result {
            Ok(()) => {}
            Err(TransactionError::Storage(err)) => return Err(self.io(err)),
            Err(TransactionError::Abort(never)) => match never {},
        }
        match &self.group {
            Some(group) => Ok(group.committed()),
            None => {
                self.db.flush().map_err(|e| self.io(e))?;
                Ok(Ack::ready())
            }
        }
    }

    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(INSTANCES).get(id.as_bytes()).map_err(|e| self.io(e))?.map(|v| v.to_vec()))
    }

    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.tree(ACTIVE).iter() {
            let (key, _) = entry.map_err(|e| self.io(e))?;
            let id = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupted {
                path: self.path.display().to_string(),
                detail: "an instance id is not UTF-8".into(),
            })?;
            let snapshot = self.tree(INSTANCES).get(&key).map_err(|e| self.io(e))?.ok_or_else(|| {
                StoreError::Corrupted {
                    path: self.path.display().to_string(),
                    detail: format!("instance {id} is marked unfinished but has no snapshot"),
                }
            })?;
            out.push((id, snapshot.to_vec()));
        }
        Ok(out)
    }

    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tree(HISTORY)
            .scan_prefix(history_prefix(id))
            .map(|entry| entry.map(|(_, v)| v.to_vec()).map_err(|e| self.io(e)))
            .collect()
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(table_index(table)).get(key).map_err(|e| self.io(e))?.map(|v| v.to_vec()))
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.tree(table_index(table))
            .scan_prefix(prefix)
            .map(|entry| entry.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| self.io(e)))
            .collect()
    }

    fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.tree(OUTBOX)
            .iter()
            .map(|entry| {
                let (k, v) = entry.map_err(|e| self.io(e))?;
                let seq = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).map_err(|_| {
                    StoreError::Corrupted { path: self.path.display().to_string(), detail: "bad outbox key".into() }
                })?;
                Ok(OutboxEntry { seq, payload: v.to_vec() })
            })
            .collect()
    }

    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for seq in seqs {
            batch.remove(&seq.to_be_bytes());
        }
        self.tree(OUTBOX).apply_batch(batch).map_err(|e| self.io(e))
    }

    fn instance_count(&self) -> Result<u64, StoreError> {
        Ok(self.tree(INSTANCES).len() as u64)
    }

    fn instance_ids(&self) -> Result<Vec<String>, StoreError> {
        self.tree(INSTANCES)
            .iter()
            .keys()
            .map(|key| {
                let key = key.map_err(|e| self.io(e))?;
                String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupted {
                    path: self.path.display().to_string(),
                    detail: "an instance id is not UTF-8".into(),
                })
            })
            .collect()
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        // sled persists its id generator so that no id repeats after a crash.
        Ok(self.db.generate_id().map_err(|e| self.io(e))? + 1)
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
