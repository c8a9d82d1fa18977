//! Flowbot's store on PostgreSQL: [`PgStore`] implements the engine's
//! [`Store`](flowbot_engine::Store) over tokio-postgres, with versioned schema migrations applied
//! at start ([`PgStore::migrate`] alone for `flowbot db migrate`), group commit (many steps per
//! transaction), TLS (rustls; `sslmode` in the URL, a private CA with [`PgOptions::ca_file`]) and a
//! pool of read connections.
//!
//! Instances are grouped into [`SHARDS`] shards ([`shard_of`]), and each write transaction checks
//! that the shards it writes to are still this node's (a write to a shard taken over fails with
//! [`StoreError::Fenced`](flowbot_engine::store::StoreError::Fenced)). By default a node has the
//! database to itself: it takes an advisory lock (a second node is refused with
//! [`PgStoreError::InUse`]) and every shard at start. With [`PgOptions::cluster_lease`] nodes
//! share the database: each takes shards under leases in rounds of [`PgStore::balance`]
//! ([`Balance`]). `docs/cluster.md` describes the layout, the protocol and what is built of it.

mod connect;
mod deployment_lock;
mod error;
mod membership;
mod migrations;
mod store;
mod writer;

pub use connect::{default_node_id, redact, PgOptions};
pub use error::PgStoreError;
pub use flowbot_engine::shard::{shard_of, SHARDS};
pub use membership::Balance;
pub use migrations::{Migration, MigrationReport, MIGRATIONS, SCHEMA_VERSION};
pub use store::PgStore;

/// Whether `location` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(location: &str) -> bool {
    let lower = location.trim_start().to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}
