//! The writer: turns the queued operations of one group into one transaction of a few
//! multi-row statements, and keeps one connection (which holds the database's node lock)
//! alive across connection losses.
//!
//! Fencing: the node holds shards at epochs ([`Held`]; a node alone on its database takes every
//! shard at open, their epochs going up by one; nodes that share one take them in
//! [`crate::membership`]), and each transaction that writes instances first reads the epochs of
//! their shards under a share lock (`FOR SHARE`). A shard whose epoch differs from the one held
//! was taken over by another node (or given up by this one): the transaction is rolled back and
//! fails with [`StoreError::Fenced`]. The share lock makes a takeover wait for the transactions
//! in flight, so every write of this node to a shard is ordered before the takeover or refused.
//!
//! Consecutive commits of a group are merged before they are written: per instance its last
//! snapshot, per history slot its last entry, per key of a keyed table its last change. The
//! result is one `INSERT ... SELECT FROM UNNEST(...)` per kind of record, whatever the number of
//! commits, instead of several statements per commit; and those statements are pipelined (sent
//! together, answered together), so a transaction of commits takes four round trips
//! ([`write_batch`]).

use crate::connect::Target;
use crate::error::{describe, PgStoreError};
use flowbot_engine::shard::{shard_of, ShardSet, SHARDS};
use flowbot_engine::store::{Refused, StepCommit, StoreError, Table};
use futures_util::future::{try_join, try_join_all};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio_postgres::Client;

/// Advisory lock key held by the nodes that write to a database: exclusively by a node that has
/// the database to itself, shared by nodes that share it, so the two kinds exclude each other.
pub(crate) const NODE_LOCK: i64 = 0x666c_6f77_0002;

/// The epoch at which this node holds each shard (by number), `NOT_HELD` for the others; shared
/// by the writer (the fence) and the membership rounds that change it.
pub(crate) type Held = Arc<Mutex<Vec<i64>>>;

/// The epoch of a shard this node does not hold (epochs start at 0).
pub(crate) const NOT_HELD: i64 = -1;

/// Locks `held`, whatever a panicking holder left.
pub(crate) fn held_epochs(held: &Held) -> std::sync::MutexGuard<'_, Vec<i64>> {
    held.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops holding `shards`: later writes to them are refused by the fence.
pub(crate) fn forget(held: &Held, shards: ShardSet) {
    let mut epochs = held_epochs(held);
    for shard in shards.iter() {
        if let Some(epoch) = epochs.get_mut(shard as usize) {
            *epoch = NOT_HELD;
        }
    }
}

/// A step's commit as queued, tables resolved. Its notification-log entries are numbered in the
/// transaction that writes them (from the `notifications` counter row), and the last number goes
/// to `last_notification` once that transaction has committed.
#[derive(Debug)]
pub(crate) struct Prepared {
    instance: String,
    /// The snapshot and whether the instance has finished.
    snapshot: Option<(Vec<u8>, bool)>,
    history_from: u64,
    history: Vec<Vec<u8>>,
    outbox: Vec<Vec<u8>>,
    notifications: Vec<Vec<u8>>,
    last_notification: Arc<OnceLock<u64>>,
    changes: Vec<Change>,
}

/// A change to a keyed table: the table's name, the key, the new value (`None` removes).
type Change = (&'static str, Vec<u8>, Option<Vec<u8>>);

impl Op {
    /// The instance the op writes to, if any (engine-level commits, such as deployments, belong
    /// to none).
    fn instance(&self) -> Option<&str> {
        match self {
            Op::Commit(commit) if commit.instance.is_empty() => None,
            Op::Commit(commit) => Some(&commit.instance),
            Op::Purge(id) => Some(id),
            Op::AckOutbox(_) | Op::RemoveNotifications { .. } => None,
        }
    }
}

impl Prepared {
    /// Resolves the tables of `commit`; the last number of its notification-log entries will be
    /// set in `last_notification`. Fails on a table the schema does not have.
    pub(crate) fn new(
        commit: StepCommit,
        last_notification: Arc<OnceLock<u64>>,
    ) -> Result<Self, String> {
        let StepCommit {
            instance,
            snapshot,
            history_from,
            history,
            outbox,
            notifications,
            changes,
            ..
        } = commit;
        let changes = changes
            .into_iter()
            .map(|c| Ok((table_name(c.table)?, c.key, c.value)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            instance,
            snapshot: snapshot.map(|change| {
                let (bytes, running) = change.into_parts();
                (bytes, !running)
            }),
            history_from,
            history,
            outbox,
            notifications,
            last_notification,
            changes,
        })
    }
}

/// One queued write, in the order the store accepted it.
#[derive(Debug)]
pub(crate) enum Op {
    /// A step's commit.
    Commit(Prepared),
    /// Delivered outbox entries.
    AckOutbox(Vec<u64>),
    /// An ended instance removed for good.
    Purge(String),
    /// Notification-log entries up to `through`, the newest (`keep`) excepted.
    RemoveNotifications { through: u64, keep: u64 },
}

/// The table that holds a keyed table.
pub(crate) fn table_name(table: Table) -> Result<&'static str, String> {
    Ok(match table {
        Table::Subscriptions => "flowbot_subscriptions",
        Table::BufferedMessages => "flowbot_buffered_messages",
        Table::Completions => "flowbot_completions",
        Table::Definitions => "flowbot_definitions",
        Table::Schedules => "flowbot_schedules",
        Table::Cursors => "flowbot_cursors",
        Table::Inbox => "flowbot_inbox",
        other => return Err(format!("the store has no table for {other:?}")),
    })
}

/// The commits of a run of consecutive [`Op::Commit`]s, merged (borrowing from the ops, which
/// stay for a repeat after a lost connection).
#[derive(Debug, Default)]
struct Merged<'a> {
    /// id → (snapshot, finished)
    instances: HashMap<&'a str, (&'a [u8], bool)>,
    history: BTreeMap<(&'a str, i64), &'a [u8]>,
    outbox: Vec<&'a [u8]>,
    notifications: Vec<(i64, &'a [u8])>,
    tables: BTreeMap<&'static str, BTreeMap<&'a [u8], Option<&'a [u8]>>>,
}

impl<'a> Merged<'a> {
    /// Adds `commit`, its notification-log entries numbered from `first_notification`.
    fn add(&mut self, commit: &'a Prepared, first_notification: u64) {
        let id = commit.instance.as_str();
        for (i, entry) in commit.history.iter().enumerate() {
            self.history
                .insert((id, (commit.history_from + i as u64) as i64), entry);
        }
        if let Some((bytes, finished)) = &commit.snapshot {
            self.instances.insert(id, (bytes, *finished));
        }
        self.outbox.extend(commit.outbox.iter().map(Vec::as_slice));
        for (i, entry) in commit.notifications.iter().enumerate() {
            self.notifications
                .push(((first_notification + i as u64) as i64, entry));
        }
        for (table, key, value) in &commit.changes {
            self.tables
                .entry(table)
                .or_default()
                .insert(key, value.as_deref());
        }
    }

    fn is_empty(&self) -> bool {
        self.instances.is_empty()
            && self.history.is_empty()
            && self.outbox.is_empty()
            && self.notifications.is_empty()
            && self.tables.is_empty()
    }

    /// The statements that write everything merged, one per kind of record, ready to be sent
    /// together: they touch different tables (or, in one keyed table, different keys), so the
    /// order the server runs them in does not matter.
    async fn writes<'t>(
        self,
        tx: &'t tokio_postgres::Transaction<'_>,
        cache: &mut Statements,
    ) -> Result<Vec<Pending<'t>>, tokio_postgres::Error>
    where
        'a: 't,
    {
        let mut writes: Vec<Pending<'t>> = Vec::new();
        if !self.instances.is_empty() {
            let mut ids = Vec::with_capacity(self.instances.len());
            let mut snapshots = Vec::with_capacity(self.instances.len());
            let mut finished = Vec::with_capacity(self.instances.len());
            for (id, (snapshot, done)) in self.instances {
                ids.push(id);
                snapshots.push(snapshot);
                finished.push(done);
            }
            let statement = prepared(
                tx,
                cache,
                "INSERT INTO flowbot_instances (id, snapshot, finished) \
                     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bool[]) \
                     ON CONFLICT (id) DO UPDATE SET snapshot = EXCLUDED.snapshot, \
                     finished = EXCLUDED.finished, version = flowbot_instances.version + 1, \
                     updated_at = now()",
            )
            .await?;
            writes.push(Box::pin(async move {
                tx.execute(&statement, &[&ids, &snapshots, &finished]).await
            }));
        }
        if !self.history.is_empty() {
            let mut ids = Vec::with_capacity(self.history.len());
            let mut seqs = Vec::with_capacity(self.history.len());
            let mut entries = Vec::with_capacity(self.history.len());
            for ((id, seq), entry) in self.history {
                ids.push(id);
                seqs.push(seq);
                entries.push(entry);
            }
            let statement = prepared(
                tx,
                cache,
                "INSERT INTO flowbot_history (instance, seq, entry) \
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::bytea[]) \
                     ON CONFLICT (instance, seq) DO UPDATE SET entry = EXCLUDED.entry",
            )
            .await?;
            writes.push(Box::pin(async move {
                tx.execute(&statement, &[&ids, &seqs, &entries]).await
            }));
        }
        if !self.outbox.is_empty() {
            let statement = prepared(
                tx,
                cache,
                "INSERT INTO flowbot_outbox (payload) \
                     SELECT p FROM UNNEST($1::bytea[]) WITH ORDINALITY AS u(p, n) ORDER BY n",
            )
            .await?;
            let outbox = self.outbox;
            writes.push(Box::pin(
                async move { tx.execute(&statement, &[&outbox]).await },
            ));
        }
        if !self.notifications.is_empty() {
            let (seqs, entries): (Vec<i64>, Vec<&[u8]>) = self.notifications.into_iter().unzip();
            let statement = prepared(
                tx,
                cache,
                "INSERT INTO flowbot_notifications (seq, entry) \
                     SELECT * FROM UNNEST($1::int8[], $2::bytea[])",
            )
            .await?;
            writes.push(Box::pin(async move {
                tx.execute(&statement, &[&seqs, &entries]).await
            }));
        }
        for (table, changes) in self.tables {
            let mut put_keys = Vec::new();
            let mut put_values = Vec::new();
            let mut removed = Vec::new();
            for (key, value) in changes {
                match value {
                    Some(value) => {
                        put_keys.push(key);
                        put_values.push(value);
                    }
                    None => removed.push(key),
                }
            }
            if !removed.is_empty() {
                let statement = prepared(
                    tx,
                    cache,
                    &format!("DELETE FROM {table} WHERE key = ANY($1::bytea[])"),
                )
                .await?;
                writes.push(Box::pin(async move {
                    tx.execute(&statement, &[&removed]).await
                }));
            }
            if !put_keys.is_empty() {
                let statement = prepared(
                    tx,
                    cache,
                    &format!(
                        "INSERT INTO {table} (key, value) \
                         SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                    ),
                )
                .await?;
                writes.push(Box::pin(async move {
                    tx.execute(&statement, &[&put_keys, &put_values]).await
                }));
            }
        }
        Ok(writes)
    }
}

/// A statement sent (or about to be) on the writer's connection, resolving to its row count.
/// Statements polled together are pipelined: all are sent before the first answer is awaited.
type Pending<'t> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 't>>;

/// Statements prepared on the writer's connection, by SQL text (emptied on a reconnect).
pub(crate) type Statements = HashMap<String, tokio_postgres::Statement>;

/// The statement for `sql`, prepared once per connection.
async fn prepared(
    tx: &tokio_postgres::Transaction<'_>,
    cache: &mut Statements,
    sql: &str,
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = tx.prepare(sql).await?;
    cache.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

/// The bounds of the keys that start with `prefix`: `key >= low AND (high IS NULL OR key < high)`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut high = prefix.to_vec();
    while let Some(last) = high.pop() {
        if last < 0xff {
            high.push(last + 1);
            return (prefix.to_vec(), Some(high));
        }
    }
    (prefix.to_vec(), None)
}

/// Writes one non-commit operation in `tx` (commits are merged, see [`write_batch`]).
async fn write_op(
    tx: &tokio_postgres::Transaction<'_>,
    op: &Op,
) -> Result<(), tokio_postgres::Error> {
    match op {
        Op::Commit(_) => {}
        Op::AckOutbox(seqs) => {
            let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
            tx.execute(
                "DELETE FROM flowbot_outbox WHERE seq = ANY($1::int8[])",
                &[&seqs],
            )
            .await?;
        }
        Op::Purge(id) => {
            let purged = tx
                .execute(
                    "DELETE FROM flowbot_instances WHERE id = $1 AND finished",
                    &[&id],
                )
                .await?;
            if purged > 0 {
                tx.execute("DELETE FROM flowbot_history WHERE instance = $1", &[&id])
                    .await?;
                let (low, high) = prefix_bounds(format!("{id}/").as_bytes());
                tx.execute(
                    "DELETE FROM flowbot_completions WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2)",
                    &[&low, &high],
                )
                .await?;
            }
        }
        Op::RemoveNotifications { through, keep } => {
            let limit = (*through).min(keep.saturating_sub(1)) as i64;
            tx.execute(
                "DELETE FROM flowbot_notifications WHERE seq <= $1",
                &[&limit],
            )
            .await?;
        }
    }
    Ok(())
}

/// The writer's connection, its batch counter and the shards it owns.
pub(crate) struct Writer {
    target: Target,
    handle: Handle,
    node_id: String,
    client: Option<Client>,
    /// Statements prepared on `client`.
    statements: Statements,
    /// Number of the last batch written (also in `flowbot_nodes.last_batch`).
    batch: i64,
    /// The epoch of each shard as this node took it.
    held: Held,
    /// Whether the node has the database to itself (exclusive node lock) or shares it.
    exclusive: bool,
    /// The highest notification number known committed (see [`crate::PgStore`]).
    last_notification: Arc<AtomicU64>,
    reconnect_for: Duration,
}

impl Writer {
    /// Connects, takes the node lock and registers the node. A node that has the database to
    /// itself (`exclusive`) takes every shard; one that shares it gives back what an earlier
    /// run under its name still owned, and takes shards later ([`crate::membership`]).
    pub(crate) async fn open(
        target: Target,
        handle: Handle,
        node_id: String,
        reconnect_for: Duration,
        held: Held,
        exclusive: bool,
        last_notification: Arc<AtomicU64>,
    ) -> Result<Self, PgStoreError> {
        let mut writer = Self {
            target,
            handle,
            node_id,
            client: None,
            statements: Statements::new(),
            batch: 0,
            held,
            exclusive,
            last_notification,
            reconnect_for,
        };
        let shown = writer.target.shown.clone();
        let db = |e: tokio_postgres::Error| PgStoreError::from_db(&shown, &e);
        let client = writer.connect().await?;
        let batch: i64 = client
            .query_one(
                "INSERT INTO flowbot_nodes (node_id) VALUES ($1) \
                 ON CONFLICT (node_id) DO UPDATE SET started_at = now() RETURNING last_batch",
                &[&writer.node_id],
            )
            .await
            .map_err(db)?
            .get(0);
        if !exclusive {
            client
                .execute(
                    "UPDATE flowbot_shards SET owner = NULL, lease_until = NULL, epoch = epoch + 1 \
                     WHERE owner = $1",
                    &[&writer.node_id],
                )
                .await
                .map_err(db)?;
            *held_epochs(&writer.held) = vec![NOT_HELD; SHARDS as usize];
            writer.batch = batch;
            writer.client = Some(client);
            return Ok(writer);
        }
        let mut taken: Vec<(i32, i64)> = client
            .query(
                "UPDATE flowbot_shards SET owner = $1, epoch = epoch + 1, lease_until = NULL \
                 RETURNING shard, epoch",
                &[&writer.node_id],
            )
            .await
            .map_err(db)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        taken.sort_unstable();
        if !taken.iter().map(|&(shard, _)| shard).eq(0..SHARDS as i32) {
            return Err(PgStoreError::Database {
                url: shown.clone(),
                detail: format!(
                    "flowbot_shards must hold the shards 0 to {} once each, it holds {} rows; \
                     the table was changed by hand: restore it from a backup",
                    SHARDS - 1,
                    taken.len()
                ),
            });
        }
        *held_epochs(&writer.held) = taken.into_iter().map(|(_, epoch)| epoch).collect();
        writer.batch = batch;
        writer.client = Some(client);
        Ok(writer)
    }

    /// A connection that holds the node lock (exclusive or shared, see [`NODE_LOCK`]).
    async fn connect(&self) -> Result<Client, PgStoreError> {
        let client = self.target.connect(&self.handle).await?;
        let shown = &self.target.shown;
        let take_lock = if self.exclusive {
            "SELECT pg_try_advisory_lock($1)"
        } else {
            "SELECT pg_try_advisory_lock_shared($1)"
        };
        // A node that just closed this database may still hold the lock for a moment.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let locked: bool = client
                .query_one(take_lock, &[&NODE_LOCK])
                .await
                .map_err(|e| PgStoreError::from_db(shown, &e))?
                .get(0);
            if locked {
                return Ok(client);
            }
            if Instant::now() >= deadline {
                let holder = client
                    .query_opt(
                        "SELECT a.application_name, a.client_addr::text FROM pg_locks l \
                         JOIN pg_stat_activity a ON a.pid = l.pid \
                         WHERE l.locktype = 'advisory' AND l.granted \
                         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                         AND l.classid = ($1::int8 >> 32)::oid AND l.objid = ($1::int8 & 4294967295)::oid",
                        &[&NODE_LOCK],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|row| {
                        let name: Option<String> = row.get(0);
                        let addr: Option<String> = row.get(1);
                        format!(
                            "`{}` from {}",
                            name.unwrap_or_default(),
                            addr.unwrap_or_else(|| "a local socket".into())
                        )
                    })
                    .unwrap_or_else(|| "another flowbot node".into());
                return Err(PgStoreError::InUse {
                    url: shown.clone(),
                    holder,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `ops` (each with its number in the group committer) in one transaction per
    /// `max_batch` commits and returns the ops refused because their shard was taken over (the
    /// transaction is repeated without them; the node no longer holds those shards). A broken
    /// connection is reconnected (for up to `reconnect_for`) and the transaction repeated,
    /// unless it had committed already (the batch number in `flowbot_nodes` tells).
    pub(crate) async fn write(
        &mut self,
        ops: Vec<(u64, Op)>,
        max_batch: usize,
    ) -> Result<Refused, StoreError> {
        let mut refused = Refused::new();
        let mut chunk = Vec::new();
        let mut commits = 0;
        let mut ops = ops.into_iter().peekable();
        while let Some((number, op)) = ops.next() {
            if matches!(op, Op::Commit { .. }) {
                commits += 1;
            }
            chunk.push((number, op));
            if commits >= max_batch.max(1) || ops.peek().is_none() {
                let mut pending = std::mem::take(&mut chunk);
                while !pending.is_empty() {
                    let (numbers, ops): (Vec<u64>, Vec<Op>) = pending.into_iter().unzip();
                    pending = match self.write_chunk(ops).await? {
                        None => Vec::new(),
                        Some((shards, owner, ops)) => {
                            forget(&self.held, shards.iter().copied().collect());
                            let (fenced, rest): (Vec<_>, Vec<_>) =
                                numbers.into_iter().zip(ops).partition(|(_, op)| {
                                    op.instance()
                                        .is_some_and(|id| shards.contains(&shard_of(id)))
                                });
                            refused.extend(fenced.into_iter().map(|(number, op)| {
                                let shard = op.instance().map(shard_of).unwrap_or_default();
                                let error = StoreError::Fenced {
                                    path: self.target.shown.clone(),
                                    shards: vec![shard],
                                    owner: owner.clone(),
                                };
                                (number, error)
                            }));
                            rest
                        }
                    };
                }
                commits = 0;
            }
        }
        Ok(refused)
    }

    /// Writes `ops` in one transaction; `Some((shards, owner, ops))` when it was rolled back
    /// because `shards` were taken over (by `owner`), with the ops given back for a repeat
    /// without theirs.
    async fn write_chunk(&mut self, ops: Vec<Op>) -> Result<Option<Fenced>, StoreError> {
        let batch = self.batch + 1;
        let started = Instant::now();
        let fence = Fence::new(&ops, &held_epochs(&self.held));
        let mut numbered = Vec::new();
        loop {
            let client = match self.client.as_mut() {
                Some(client) if !client.is_closed() => client,
                _ => {
                    self.reconnect(started)
                        .await
                        .map_err(StoreError::FlushFailed)?;
                    // Did the broken attempt commit before the connection went?
                    let done: i64 = self
                        .client
                        .as_ref()
                        .ok_or_else(|| StoreError::FlushFailed("no connection".into()))?
                        .query_one(
                            "SELECT last_batch FROM flowbot_nodes WHERE node_id = $1",
                            &[&self.node_id],
                        )
                        .await
                        .map_err(|e| StoreError::FlushFailed(describe(&e)))?
                        .get(0);
                    if done >= batch {
                        self.batch = batch;
                        self.publish(&numbered);
                        return Ok(None);
                    }
                    continue;
                }
            };
            let written = write_batch(
                client,
                &mut self.statements,
                &ops,
                &fence,
                &self.node_id,
                batch,
                &mut numbered,
            )
            .await;
            match written {
                Ok(()) => {
                    self.batch = batch;
                    self.publish(&numbered);
                    return Ok(None);
                }
                Err(BatchError::Fenced { shards, owner }) => {
                    drop(numbered);
                    return Ok(Some((shards, owner, ops)));
                }
                Err(BatchError::Database(err))
                    if client.is_closed() || err.is_closed() || connection_lost(&err) =>
                {
                    tracing::warn!(error = %describe(&err), "PostgreSQL write failed; reconnecting");
                    self.client = None;
                    self.statements.clear();
                }
                Err(BatchError::Database(err)) => {
                    return Err(StoreError::FlushFailed(describe(&err)))
                }
            }
        }
    }

    /// Hands the committed transaction's notification numbers to its commits and to the store.
    fn publish(&self, numbered: &[(&OnceLock<u64>, u64)]) {
        for &(cell, last) in numbered {
            let _ = cell.set(last);
        }
        if let Some(&(_, last)) = numbered.last() {
            self.last_notification.fetch_max(last, Ordering::SeqCst);
        }
    }

    async fn reconnect(&mut self, started: Instant) -> Result<(), String> {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.connect().await {
                Ok(client) => {
                    tracing::info!(url = %self.target.shown, "PostgreSQL writer reconnected");
                    self.statements.clear();
                    self.client = Some(client);
                    return Ok(());
                }
                Err(err @ PgStoreError::InUse { .. }) => return Err(err.to_string()),
                Err(err) if started.elapsed() >= self.reconnect_for => {
                    return Err(format!(
                        "gave up after {} s without a connection: {err}",
                        self.reconnect_for.as_secs()
                    ))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "PostgreSQL unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Releases the node lock (the server would, once it notices the closed connection).
    pub(crate) async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            let unlock = if self.exclusive {
                "SELECT pg_advisory_unlock($1)"
            } else {
                "SELECT pg_advisory_unlock_shared($1)"
            };
            let _ = client.execute(unlock, &[&NODE_LOCK]).await;
        }
    }
}

/// Whether `err` says the connection went (no SQL state: I/O; class 08: connection exception;
/// class 57: the server terminated the session or shuts down), so a repeat may succeed.
fn connection_lost(err: &tokio_postgres::Error) -> bool {
    err.code()
        .is_none_or(|state| matches!(&state.code()[..2], "08" | "57"))
}

/// The shards a transaction writes to and the epochs this node holds them at.
struct Fence {
    /// The shards written to, in order (the order their rows are locked in).
    shards: Vec<i32>,
    /// The epoch of each of `shards` as this node took it.
    epochs: Vec<i64>,
}

impl Fence {
    /// The fence of `ops`, given the epochs this node holds by shard number.
    fn new(ops: &[Op], held: &[i64]) -> Self {
        let shards: BTreeSet<u32> = ops.iter().filter_map(Op::instance).map(shard_of).collect();
        Self {
            shards: shards.iter().map(|&s| s as i32).collect(),
            epochs: shards
                .iter()
                .map(|&s| held.get(s as usize).copied().unwrap_or(-1))
                .collect(),
        }
    }
}

/// A transaction rolled back by the fence: the shards taken over, their owner, and the ops.
type Fenced = (Vec<u32>, String, Vec<Op>);

/// Why a write transaction failed.
enum BatchError {
    /// A statement or the connection failed.
    Database(tokio_postgres::Error),
    /// Shards written to were taken over (rolled back).
    Fenced { shards: Vec<u32>, owner: String },
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(err: tokio_postgres::Error) -> Self {
        BatchError::Database(err)
    }
}

/// The fence's statement: locks the rows of the shards a transaction writes to (share lock,
/// until the transaction ends) and reads their epochs and owners.
const FENCE: &str = "SELECT shard, epoch, coalesce(owner, 'no node') FROM flowbot_shards \
                     WHERE shard = ANY($1::int4[]) ORDER BY shard FOR SHARE";

/// Takes `entries` numbers of the notification log; returns the last one taken.
const NUMBER_NOTIFICATIONS: &str = "UPDATE flowbot_counters SET value = value + $1 \
                                    WHERE name = 'notifications' RETURNING value";

/// Records the batch number a transaction commits (read back after a lost connection).
const RECORD_BATCH: &str =
    "UPDATE flowbot_nodes SET last_batch = $2, last_write_at = now() WHERE node_id = $1";

/// Checks the epochs the fence's statement read (`rows`) against those `fence` holds.
fn check_fence(fence: &Fence, rows: &[tokio_postgres::Row]) -> Result<(), BatchError> {
    let mut lost = Vec::new();
    let mut owner = String::from("no node (the shard's row is gone)");
    for (&shard, &held) in fence.shards.iter().zip(&fence.epochs) {
        let row = rows.iter().find(|row| row.get::<_, i32>(0) == shard);
        match row {
            Some(row) if row.get::<_, i64>(1) == held => {}
            Some(row) => {
                lost.push(shard as u32);
                owner = row.get(2);
            }
            None => lost.push(shard as u32),
        }
    }
    if lost.is_empty() {
        Ok(())
    } else {
        Err(BatchError::Fenced {
            shards: lost,
            owner,
        })
    }
}

/// One transaction: the fence checked, the notification-log entries numbered, the ops in order
/// (runs of commits merged) and the batch number. The last notification number of each commit
/// goes to `numbered`, to be published once the transaction is known to have committed.
///
/// Statements that do not wait on each other's answers are pipelined, so a transaction of only
/// commits takes four round trips whatever it writes: `BEGIN`; the fence and the numbering; every
/// write and the batch number; `COMMIT`. Nothing is written before the fence has been checked.
async fn write_batch<'a>(
    client: &mut Client,
    cache: &mut Statements,
    ops: &'a [Op],
    fence: &Fence,
    node_id: &str,
    batch: i64,
    numbered: &mut Vec<(&'a OnceLock<u64>, u64)>,
) -> Result<(), BatchError> {
    numbered.clear();
    let tx = client.transaction().await?;
    let entries: i64 = ops
        .iter()
        .map(|op| match op {
            Op::Commit(commit) => commit.notifications.len() as i64,
            _ => 0,
        })
        .sum();
    let fence_statement = prepared(&tx, cache, FENCE).await?;
    let number_statement = prepared(&tx, cache, NUMBER_NOTIFICATIONS).await?;
    let fence_rows = async {
        if fence.shards.is_empty() {
            Ok(Vec::new())
        } else {
            tx.query(&fence_statement, &[&fence.shards]).await
        }
    };
    let last_number = async {
        if entries == 0 {
            Ok(None)
        } else {
            tx.query_one(&number_statement, &[&entries]).await.map(Some)
        }
    };
    let (fence_rows, last_number) = try_join(fence_rows, last_number).await?;
    check_fence(fence, &fence_rows)?;
    let mut next_number = match last_number {
        Some(row) => (row.get::<_, i64>(0) - entries + 1) as u64,
        None => 0,
    };
    let mut merged = Merged::default();
    for op in ops {
        match op {
            Op::Commit(commit) => {
                merged.add(commit, next_number);
                if !commit.notifications.is_empty() {
                    next_number += commit.notifications.len() as u64;
                    numbered.push((&commit.last_notification, next_number - 1));
                }
            }
            other => {
                if !merged.is_empty() {
                    try_join_all(std::mem::take(&mut merged).writes(&tx, cache).await?).await?;
                }
                write_op(&tx, other).await?;
            }
        }
    }
    let record_batch = prepared(&tx, cache, RECORD_BATCH).await?;
    let mut writes = merged.writes(&tx, cache).await?;
    writes.push(Box::pin(async {
        tx.execute(&record_batch, &[&node_id, &batch]).await
    }));
    try_join_all(writes).await?;
    Ok(tx.commit().await?)
}
