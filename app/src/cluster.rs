//! Membership of a node that shares its PostgreSQL database with other nodes (docs/cluster.md):
//! rounds of [`PgStore::balance`] decide which shards the node's engine serves, every third of
//! the lease, until the node stops and gives its shards back.
//!
//! Invariant: the engine lets go of a shard (its instances leave memory) before the store gives
//! it back, and loads a shard only after the store took it under a new epoch, so two nodes never
//! both act on an instance: the one that lost a shard without noticing is fenced by the store.

use crate::error::{AppError, ErrorKind};
use flowbot_engine::shard::ShardSet;
use flowbot_engine::Engine;
use flowbot_postgres::{Balance, PgStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The membership rounds of one node, running in the background.
pub(crate) struct Membership {
    store: Arc<PgStore>,
    stop: watch::Sender<bool>,
    rounds: JoinHandle<()>,
}

impl Membership {
    /// Runs a first round (so the node serves its share at once when it is alone or the others
    /// have room), then one every third of `lease`.
    pub(crate) async fn start(
        engine: Engine,
        store: Arc<PgStore>,
        lease: Duration,
    ) -> Result<Membership, AppError> {
        round(&engine, &store).await?;
        let (stop, mut stopped) = watch::channel(false);
        let rounds = {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(lease / 3) => {}
                        _ = stopped.changed() => return,
                    }
                    if let Err(error) = round(&engine, &store).await {
                        tracing::warn!(%error, "membership round failed; the next one tries again");
                    }
                }
            })
        };
        Ok(Membership {
            store,
            stop,
            rounds,
        })
    }

    /// Stops the rounds and gives every shard back, so that the other nodes take them at their
    /// next round instead of after the lease (the engine has stopped already).
    pub(crate) async fn leave(self) {
        self.stop.send_replace(true);
        let _ = self.rounds.await;
        let store = self.store;
        let held = store.held_shards();
        let released = tokio::task::spawn_blocking(move || store.release_shards(held)).await;
        match released {
            Ok(Ok(())) => tracing::info!(shards = %held, "shards given back"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot give the shards back; they expire with the lease")
            }
            Err(error) => tracing::warn!(%error, "giving the shards back stopped"),
        }
    }
}

/// One round: the engine drops the shards the store no longer holds (lost to another node, found
/// in this round or by a refused write) or holds beyond this node's share, the store gives the
/// excess back, and the engine loads the shards the store took.
pub(crate) async fn round(engine: &Engine, store: &Arc<PgStore>) -> Result<Balance, AppError> {
    let balance = blocking(store, PgStore::balance).await?;
    // Lost in this round, or earlier when a write to them was refused by the fence.
    let gone = engine.owned_shards().minus(store.held_shards());
    let dropped = gone.union(balance.excess);
    if !dropped.is_empty() {
        let instances = engine.release_shards(dropped);
        tracing::info!(lost = %gone, excess = %balance.excess, instances, "shards let go");
    }
    if !balance.excess.is_empty() {
        let excess = balance.excess;
        blocking(store, move |store| store.release_shards(excess)).await?;
    }
    if balance.acquired != ShardSet::NONE {
        let instances = engine.acquire_shards(balance.acquired).await?;
        tracing::info!(acquired = %balance.acquired, instances, live_nodes = balance.live_nodes, "shards taken");
    }
    Ok(balance)
}

/// Runs a store call off the async workers.
async fn blocking<T, F>(store: &Arc<PgStore>, call: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&PgStore) -> Result<T, flowbot_engine::store::StoreError> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(&store))
        .await
        .map_err(|e| AppError::new(ErrorKind::Internal, e.to_string()))?
        .map_err(AppError::from)
}
