//! Membership of nodes that share a database: heartbeats, shard leases and balance
//! (docs/cluster.md).
//!
//! One round ([`balance`]) is one transaction: the node's heartbeat, the renewal of the leases
//! of the shards it holds (a shard whose row no longer names this node was taken over: it is
//! *lost*), the count of live nodes (heartbeat younger than a lease), and, below its share of
//! `ceil(64 / live nodes)` shards, free or expired shards taken under a new epoch (`FOR UPDATE
//! SKIP LOCKED`, so two nodes never take the same shard in one round). Above its share, the
//! round names the *excess*, which the caller gives back with [`release`] once its engine has let
//! go of them.
//!
//! Invariant: the epochs in [`Held`] are only those of committed takes, so a write under them is
//! fenced exactly as the database says; a shard is given back only after every write queued
//! before is in the database, and its epoch goes up, so no later write of this node lands in it.

use crate::writer::{forget, held_epochs, Held, NOT_HELD};
use flowbot_engine::shard::{ShardSet, SHARDS};
use std::time::Duration;

/// What one round of [`balance`] changed for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Shards taken in this round: load their instances.
    pub acquired: ShardSet,
    /// Shards that other nodes took over (this node's lease had expired): drop their instances.
    pub lost: ShardSet,
    /// Shards beyond this node's share: let go of their instances, then give them back with
    /// [`crate::PgStore::release_shards`].
    pub excess: ShardSet,
    /// Live nodes, this one included.
    pub live_nodes: u32,
}

/// Runs one round for `node_id` with leases of `lease` (see the module docs).
pub(crate) async fn balance(
    client: &mut deadpool_postgres::Object,
    node_id: &str,
    lease: Duration,
    held: &Held,
) -> Result<Balance, tokio_postgres::Error> {
    let lease_s = lease.as_secs_f64();
    let tx = client.transaction().await?;
    // Row locks in the writers' order: shard rows by number, then the node's row (a write
    // transaction share-locks its shards, then updates its node row), so rounds and writes
    // never wait for each other in a circle.
    tx.execute(
        "SELECT shard FROM flowbot_shards WHERE owner = $1 ORDER BY shard FOR UPDATE",
        &[&node_id],
    )
    .await?;
    let renewed = tx
        .query(
            "UPDATE flowbot_shards SET lease_until = now() + make_interval(secs => $2) \
             WHERE owner = $1 RETURNING shard, epoch",
            &[&node_id, &lease_s],
        )
        .await?;
    let before = held_epochs(held).clone();
    let still: ShardSet = renewed
        .iter()
        .filter(|row| {
            let (shard, epoch): (i32, i64) = (row.get(0), row.get(1));
            before.get(shard as usize) == Some(&epoch)
        })
        .map(|row| row.get::<_, i32>(0) as u32)
        .collect();
    let had = epochs_held(&before);
    let lost = had.minus(still);
    let live_nodes: i64 = tx
        .query_one(
            "SELECT count(*) FROM flowbot_nodes \
             WHERE node_id = $2 OR heartbeat_at > now() - make_interval(secs => $1)",
            &[&lease_s, &node_id],
        )
        .await?
        .get(0);
    let live_nodes = live_nodes as u32;
    let share = SHARDS.div_ceil(live_nodes);
    let mut taken = Vec::new();
    if still.len() < share {
        let wanted = i64::from(share - still.len());
        taken = tx
            .query(
                "UPDATE flowbot_shards SET owner = $1, epoch = epoch + 1, \
                 lease_until = now() + make_interval(secs => $2) \
                 WHERE shard IN (SELECT shard FROM flowbot_shards \
                     WHERE owner IS NULL OR lease_until < now() \
                     ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING shard, epoch",
                &[&node_id, &lease_s, &wanted],
            )
            .await?
            .iter()
            .map(|row| (row.get::<_, i32>(0) as u32, row.get::<_, i64>(1)))
            .collect();
    }
    let excess: ShardSet = still.iter().skip(share as usize).collect::<ShardSet>();
    tx.execute(
        "UPDATE flowbot_nodes SET heartbeat_at = now() WHERE node_id = $1",
        &[&node_id],
    )
    .await?;
    tx.commit().await?;
    let acquired: ShardSet = taken.iter().map(|&(shard, _)| shard).collect();
    forget(held, lost);
    let mut epochs = held_epochs(held);
    for (shard, epoch) in taken {
        epochs[shard as usize] = epoch;
    }
    drop(epochs);
    Ok(Balance {
        acquired,
        lost,
        excess,
        live_nodes,
    })
}

/// Gives `shards` back: forgets them (later writes to them are fenced), then frees their rows
/// under a new epoch (locked by number first, as writers lock them). The caller has made sure
/// every write queued before is in the database.
pub(crate) async fn release(
    client: &mut deadpool_postgres::Object,
    node_id: &str,
    shards: ShardSet,
    held: &Held,
) -> Result<(), tokio_postgres::Error> {
    forget(held, shards);
    let numbers: Vec<i32> = shards.iter().map(|s| s as i32).collect();
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT shard FROM flowbot_shards WHERE shard = ANY($1) ORDER BY shard FOR UPDATE",
        &[&numbers],
    )
    .await?;
    tx.execute(
        "UPDATE flowbot_shards SET owner = NULL, lease_until = NULL, epoch = epoch + 1 \
         WHERE shard = ANY($2) AND owner = $1",
        &[&node_id, &numbers],
    )
    .await?;
    tx.commit().await
}

/// The shards held in `epochs`.
pub(crate) fn epochs_held(epochs: &[i64]) -> ShardSet {
    epochs
        .iter()
        .enumerate()
        .filter(|(_, &epoch)| epoch != NOT_HELD)
        .map(|(shard, _)| shard as u32)
        .collect()
}
