//! [`PgStore`]: the engine's [`Store`] on PostgreSQL.
//!
//! Writes: `commit` queues the step and returns at once; the engine's [`GroupCommitter`] calls the
//! writer on its own thread, which writes everything queued as one transaction (or one per
//! `max_batch` commits) and resolves the acks once PostgreSQL has committed it. Queue order is
//! commit order: notification numbers are given under the queue's lock.
//!
//! Reads see only committed data: each read first waits until every commit queued before it is
//! in the database (the committer's barrier; no wait when nothing is pending), then queries a
//! pooled connection. So a read after a commit sees it, as with the other stores, and a read
//! never sees a step that a crash could take back.
//!
//! Every database call runs on the store's own runtime ([`Bridge`]); a synchronous caller on a
//! tokio worker waits through `block_in_place`, never blocking the worker's other tasks.

use crate::connect::{Bridge, PgOptions, Target};
use crate::deployment_lock;
use crate::error::{describe, PgStoreError};
use crate::membership::{self, epochs_held, Balance};
use crate::migrations::{migrate, MigrationReport};
use crate::writer::{held_epochs, prefix_bounds, table_name, Held, Op, Prepared, Writer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use flowbot_engine::shard::ShardSet;
use flowbot_engine::store::{
    Ack, DeploymentLock, FlushStats, GroupCommitter, KeyValue, NotificationNumber, OutboxEntry,
    Refused, StepCommit, Store, StoreError, Table,
};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// Ids per block taken from the `flowbot_id_blocks` sequence (its increment).
const ID_BLOCK: u64 = 1024;

/// What the writer has not written yet, in commit order, each op with its number in the group
/// committer.
#[derive(Debug, Default)]
struct Queue {
    ops: Vec<(u64, Op)>,
}

/// A store in a PostgreSQL database (see the module docs).
pub struct PgStore {
    shown: String,
    /// Declared before `bridge`: the committer's last flush needs the runtime.
    group: Option<GroupCommitter>,
    queue: Arc<Mutex<Queue>>,
    pool: Pool,
    /// Instance ids: the current block `(next, end)`.
    ids: Mutex<(u64, u64)>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// The shards this node holds, at their epochs (read by the writer's fence).
    held: Held,
    node_id: String,
    /// The shard lease of a node that shares the database ([`PgOptions::cluster_lease`]).
    cluster_lease: Option<Duration>,
    /// Where the database is (the deployment lock opens a connection of its own).
    target: Target,
    /// The highest notification-log number known committed (by the writer; in a shared
    /// database also by other nodes, read by [`Store::last_notification`]).
    last_notification: Arc<AtomicU64>,
    bridge: Bridge,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.shown).finish()
    }
}

impl PgStore {
    /// Connects, applies the schema migrations this build knows, takes the database for this
    /// node and starts the writer. Fails with a message that says what to do on a bad URL, an
    /// unreachable server, missing privileges, a database of a newer schema, or a database
    /// another node writes to.
    pub fn open(options: PgOptions) -> Result<Self, PgStoreError> {
        let target = Target::new(&options)?;
        let shown = target.shown.clone();
        let bridge = Bridge::start()?;
        let handle = bridge.handle().clone();
        let held: Held = Arc::new(Mutex::new(Vec::new()));
        let last_notification = Arc::new(AtomicU64::new(0));
        let writer = {
            let (target, handle, node) = (target.clone(), handle.clone(), options.node_id.clone());
            let reconnect_for = options.reconnect_for;
            let (held, exclusive) = (held.clone(), options.cluster_lease.is_none());
            let numbered = last_notification.clone();
            bridge
                .run(async move {
                    let mut client = target.connect(&handle).await?;
                    migrate(&mut client, &target.shown).await?;
                    let last: i64 = client
                        .query_one(
                            "SELECT value FROM flowbot_counters WHERE name = 'notifications'",
                            &[],
                        )
                        .await
                        .map_err(|e| PgStoreError::from_db(&target.shown, &e))?
                        .get(0);
                    drop(client);
                    numbered.store(last as u64, Ordering::SeqCst);
                    Writer::open(
                        target,
                        handle,
                        node,
                        reconnect_for,
                        held,
                        exclusive,
                        numbered,
                    )
                    .await
                })
                .ok_or_else(|| PgStoreError::Threads("the store's runtime stopped".into()))??
        };
        let manager = Manager::from_config(
            target.config.clone(),
            target.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(options.connect_timeout))
            .wait_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| PgStoreError::Threads(e.to_string()))?;
        let queue = Arc::new(Mutex::new(Queue::default()));
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let group = {
            let (queue, writer, handle) = (queue.clone(), writer.clone(), handle.clone());
            let max_batch = options.max_batch;
            GroupCommitter::start(options.window, options.max_batch, move || {
                let ops = std::mem::take(&mut lock(&queue).ops);
                if ops.is_empty() {
                    return Ok(Refused::new());
                }
                // The flusher's own thread: blocking on the store's runtime is fine here.
                handle.block_on(async { writer.lock().await.write(ops, max_batch).await })
            })
            .map_err(|e| PgStoreError::Threads(e.to_string()))?
        };
        tracing::info!(url = %shown, node = %options.node_id, "PostgreSQL store opened");
        Ok(Self {
            shown,
            group: Some(group),
            queue,
            pool,
            ids: Mutex::new((0, 0)),
            writer,
            held,
            node_id: options.node_id,
            cluster_lease: options.cluster_lease,
            target,
            last_notification,
            bridge,
        })
    }

    /// The shards this node holds now.
    pub fn held_shards(&self) -> ShardSet {
        epochs_held(&held_epochs(&self.held))
    }

    /// One round of membership for a node that shares the database (heartbeat, lease renewal,
    /// shards taken up to this node's share; see [`crate::membership`]); call it every third of
    /// the lease. The caller's engine loads the instances of `acquired`, drops those of `lost`,
    /// and drops those of `excess` before giving them back with [`PgStore::release_shards`].
    pub fn balance(&self) -> Result<Balance, StoreError> {
        let Some(lease) = self.cluster_lease else {
            return Err(self.io(
                "this node has the database to itself (no cluster lease): it holds every shard",
            ));
        };
        let (node_id, held) = (self.node_id.clone(), self.held.clone());
        self.query_now(move |mut client| async move {
            membership::balance(&mut client, &node_id, lease, &held).await
        })
    }

    /// Records `url` as where the other nodes reach this one (they forward requests about the
    /// instances of its shards there).
    pub fn advertise(&self, url: &str) -> Result<(), StoreError> {
        let (node_id, url) = (self.node_id.clone(), url.to_string());
        self.query_now(move |client| async move {
            client
                .execute(
                    "UPDATE flowbot_nodes SET url = $2 WHERE node_id = $1",
                    &[&node_id, &url],
                )
                .await
                .map(drop)
        })
    }

    /// The node whose lease holds `shard` now and the address it advertised (`None` while no
    /// node holds it; the address is `None` when that node advertised none).
    pub fn shard_owner(&self, shard: u32) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.query_now(move |client| async move {
            let row = client
                .query_opt(
                    "SELECT s.owner, n.url FROM flowbot_shards s \
                     LEFT JOIN flowbot_nodes n ON n.node_id = s.owner \
                     WHERE s.shard = $1 AND s.owner IS NOT NULL \
                     AND (s.lease_until IS NULL OR s.lease_until > now())",
                    &[&(shard as i32)],
                )
                .await?;
            Ok(row.map(|row| (row.get(0), row.get(1))))
        })
    }

    /// Gives `shards` back to the other nodes once every commit queued before is in the
    /// database; later writes of this node to them fail with [`StoreError::Fenced`].
    pub fn release_shards(&self, shards: ShardSet) -> Result<(), StoreError> {
        let (node_id, held) = (self.node_id.clone(), self.held.clone());
        self.query(move |mut client| async move {
            membership::release(&mut client, &node_id, shards, &held).await
        })
    }

    /// Applies the schema migrations this build knows and returns what was done, without
    /// opening the store (`flowbot db migrate`).
    pub fn migrate(options: &PgOptions) -> Result<MigrationReport, PgStoreError> {
        let target = Target::new(options)?;
        let bridge = Bridge::start()?;
        let handle = bridge.handle().clone();
        bridge
            .run(async move {
                let mut client = target.connect(&handle).await?;
                migrate(&mut client, &target.shown).await
            })
            .ok_or_else(|| PgStoreError::Threads("the store's runtime stopped".into()))?
    }

    fn io(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Io {
            path: self.shown.clone(),
            detail: detail.into(),
        }
    }

    /// Waits until every commit queued so far is in the database.
    fn barrier(&self) -> Result<(), StoreError> {
        match &self.group {
            Some(group) => group.barrier().wait(),
            None => Ok(()),
        }
    }

    /// Runs `f` with a pooled connection on the store's runtime, after the read barrier.
    fn query<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        self.barrier()?;
        self.query_now(f)
    }

    /// Runs `f` with a pooled connection on the store's runtime, without the read barrier.
    fn query_now<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let pool = self.pool.clone();
        let outcome = self.bridge.run(async move {
            let client = pool.get().await.map_err(|e| match e {
                deadpool_postgres::PoolError::Backend(e) => describe(&e),
                other => format!("no connection: {other}"),
            })?;
            f(client).await.map_err(|e| describe(&e))
        });
        match outcome {
            Some(result) => result.map_err(|e| self.io(e)),
            None => Err(self.io("the store's runtime stopped")),
        }
    }

    /// Rows of `sql` with `params`, mapped by `row`.
    fn rows<T, P>(
        &self,
        sql: String,
        params: P,
        row: fn(&tokio_postgres::Row) -> T,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        P: Params,
    {
        self.query(move |client| async move {
            let statement = client.prepare_cached(&sql).await?;
            let rows = client.query(&statement, &params.refs()).await?;
            Ok(rows.iter().map(row).collect())
        })
    }

    /// Registers `op` with the committer and queues it with its number, under the queue lock
    /// (so that every registered op is in the queue when the flusher takes it); returns the ack
    /// of its transaction.
    fn enqueue(&self, op: Op) -> Result<Ack, StoreError> {
        let mut queue = lock(&self.queue);
        let ack = match &self.group {
            Some(group) => group.committed(),
            None => return Err(self.io("the store is closed")),
        };
        queue.ops.push((ack.number().unwrap_or_default(), op));
        Ok(ack)
    }
}

/// Query parameters owned by a query's future.
trait Params: Send + 'static {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)>;
}

impl Params for () {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        Vec::new()
    }
}

impl<A: ToSql + Sync + Send + 'static> Params for (A,) {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.0]
    }
}

impl<A: ToSql + Sync + Send + 'static, B: ToSql + Sync + Send + 'static> Params for (A, B) {
    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![&self.0, &self.1]
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn key_value(row: &tokio_postgres::Row) -> KeyValue {
    (row.get(0), row.get(1))
}

fn id_snapshot(row: &tokio_postgres::Row) -> (String, Vec<u8>) {
    (row.get(0), row.get(1))
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store for PgStore {
    fn commit(&self, commit: StepCommit) -> Result<Ack, StoreError> {
        let numbered = !commit.notifications.is_empty();
        let last = Arc::new(OnceLock::new());
        let prepared = Prepared::new(commit, last.clone()).map_err(|e| self.io(e))?;
        let ack = self.enqueue(Op::Commit(prepared))?;
        Ok(ack.with_last_notification(if numbered {
            NotificationNumber::Pending(last)
        } else {
            NotificationNumber::None
        }))
    }

    fn instance(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .rows(
                "SELECT snapshot FROM flowbot_instances WHERE id = $1".into(),
                (id.to_string(),),
                |row| row.get(0),
            )?
            .pop())
    }

    fn unfinished(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.rows(
            "SELECT id, snapshot FROM flowbot_instances WHERE NOT finished ORDER BY id".into(),
            (),
            id_snapshot,
        )
    }

    fn history(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows(
            "SELECT entry FROM flowbot_history WHERE instance = $1 ORDER BY seq".into(),
            (id.to_string(),),
            |row| row.get(0),
        )
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = table_name(table).map_err(|e| self.io(e))?;
        Ok(self
            .rows(
                format!("SELECT value FROM {table} WHERE key = $1"),
                (key.to_vec(),),
                |row| row.get(0),
            )?
            .pop())
    }

    fn scan(&self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let table = table_name(table).map_err(|e| self.io(e))?;
        let (low, high) = prefix_bounds(prefix);
        self.rows(
            format!(
                "SELECT key, value FROM {table} \
                 WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) ORDER BY key"
            ),
            (low, high),
            key_value,
        )
    }

    fn pending_outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.rows(
            "SELECT seq, payload FROM flowbot_outbox ORDER BY seq".into(),
            (),
            |row| OutboxEntry {
                seq: row.get::<_, i64>(0) as u64,
                payload: row.get(1),
            },
        )
    }

    fn ack_outbox(&self, seqs: &[u64]) -> Result<(), StoreError> {
        // Nobody waits: a delivery acknowledged but lost in a crash is redelivered.
        drop(self.enqueue(Op::AckOutbox(seqs.to_vec()))?);
        Ok(())
    }

    fn instance_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .rows("SELECT count(*) FROM flowbot_instances".into(), (), |row| {
                row.get::<_, i64>(0) as u64
            })?
            .pop()
            .unwrap_or(0))
    }

    fn instance_ids(&self) -> Result<Vec<String>, StoreError> {
        self.rows(
            "SELECT id FROM flowbot_instances ORDER BY id".into(),
            (),
            |row| row.get(0),
        )
    }

    fn next_id(&self) -> Result<u64, StoreError> {
        let mut ids = lock(&self.ids);
        if ids.0 >= ids.1 {
            // Each value of the sequence starts a block of `ID_BLOCK` ids no other call (nor
            // node) is given; a restart takes a new block.
            let start = self
                .rows("SELECT nextval('flowbot_id_blocks')".into(), (), |row| {
                    row.get::<_, i64>(0) as u64
                })?
                .pop()
                .ok_or_else(|| self.io("the id sequence returned nothing"))?;
            *ids = (start, start + ID_BLOCK);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    fn instances_after(
        &self,
        after: Option<&str>,
        limit_n: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match after {
            Some(after) => self.rows(
                "SELECT id, snapshot FROM flowbot_instances WHERE id > $1 ORDER BY id LIMIT $2"
                    .into(),
                (after.to_string(), limit(limit_n)),
                id_snapshot,
            ),
            None => self.rows(
                "SELECT id, snapshot FROM flowbot_instances ORDER BY id LIMIT $1".into(),
                (limit(limit_n),),
                id_snapshot,
            ),
        }
    }

    fn purge_instance(&self, id: &str) -> Result<(), StoreError> {
        // Nobody waits: a purge lost in a crash is repeated by the next sweep.
        drop(self.enqueue(Op::Purge(id.to_string()))?);
        Ok(())
    }

    fn notifications_after(
        &self,
        after: u64,
        limit_n: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.rows(
            "SELECT seq, entry FROM flowbot_notifications WHERE seq > $1 ORDER BY seq LIMIT $2"
                .into(),
            (limit(after as usize), limit(limit_n)),
            |row| (row.get::<_, i64>(0) as u64, row.get(1)),
        )
    }

    fn last_notification(&self) -> Result<u64, StoreError> {
        if self.cluster_lease.is_some() {
            // Other nodes append too: the counter row holds the last number committed by any.
            let last = self
                .rows(
                    "SELECT value FROM flowbot_counters WHERE name = 'notifications'".into(),
                    (),
                    |row| row.get::<_, i64>(0) as u64,
                )?
                .pop()
                .unwrap_or(0);
            self.last_notification.fetch_max(last, Ordering::SeqCst);
        }
        Ok(self.last_notification.load(Ordering::SeqCst))
    }

    fn shared(&self) -> bool {
        self.cluster_lease.is_some()
    }

    fn lock_deployments(&self) -> Result<DeploymentLock, StoreError> {
        if !self.shared() {
            // Alone on its database (a second node is refused): the engine's locks suffice.
            return Ok(DeploymentLock::default());
        }
        let (target, runtime) = (self.target.clone(), self.bridge.handle().clone());
        match self
            .bridge
            .run(async move { deployment_lock::acquire(&target, &runtime).await })
        {
            Some(Ok(Some(held))) => Ok(DeploymentLock::held_by(held)),
            Some(Ok(None)) => Err(self.io(format!(
                "another node has been deploying for {} s (it holds the deployment lock); \
                 try again once it is done",
                deployment_lock::DEPLOYMENT_LOCK_WAIT.as_secs()
            ))),
            Some(Err(err)) => Err(self.io(err)),
            None => Err(self.io("the store's runtime stopped")),
        }
    }

    fn remove_notifications_through(&self, through: u64) -> Result<(), StoreError> {
        let keep = self.last_notification.load(Ordering::SeqCst);
        drop(self.enqueue(Op::RemoveNotifications { through, keep })?);
        Ok(())
    }

    fn flush_stats(&self) -> Option<FlushStats> {
        self.group.as_ref().map(GroupCommitter::stats)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.query_now(|client| async move {
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The committer writes what is queued before it stops; then the node lock goes.
        self.group.take();
        let writer = self.writer.clone();
        let _ = self
            .bridge
            .run(async move { writer.lock().await.close().await });
    }
}
