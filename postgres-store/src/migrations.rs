//! Versioned schema migrations: each is an SQL file under `migrations/`, applied once, in order,
//! in its own transaction, and recorded in `flowbot_schema_migrations`. Concurrent starts take
//! turns (a transaction-level advisory lock). A database migrated by a newer Flowbot is refused.

use crate::error::PgStoreError;

/// A schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version: 1, 2, ... in order.
    pub version: i32,
    /// A short name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "shards",
        sql: include_str!("../migrations/0002_shards.sql"),
    },
    Migration {
        version: 3,
        name: "cluster",
        sql: include_str!("../migrations/0003_cluster.sql"),
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = 3;

/// Advisory lock key that serializes migrations (a transaction-level lock).
const MIGRATION_LOCK: i64 = 0x666c_6f77_0001;

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version before.
    pub from: i32,
    /// The version now.
    pub to: i32,
    /// The migrations applied, as `version name`.
    pub applied: Vec<String>,
}

/// Brings the schema to [`SCHEMA_VERSION`]; refuses a database of a newer version.
pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    shown: &str,
) -> Result<MigrationReport, PgStoreError> {
    let db = |e: tokio_postgres::Error| PgStoreError::from_db(shown, &e);
    let tx = client.transaction().await.map_err(db)?;
    // Taken first: nodes started together on an empty database create the table one after
    // the other (two `CREATE TABLE IF NOT EXISTS` at once collide in the catalog).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS flowbot_schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(db)?;
    let from: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM flowbot_schema_migrations",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    if from > SCHEMA_VERSION {
        return Err(PgStoreError::NewerSchema {
            url: shown.into(),
            found: from,
            supported: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > from) {
        tx.batch_execute(migration.sql).await.map_err(|e| {
            let err = PgStoreError::from_db(shown, &e);
            match err {
                PgStoreError::Database { url, detail } => PgStoreError::Database {
                    url,
                    detail: format!(
                        "migration {} ({}) failed: {detail}",
                        migration.version, migration.name
                    ),
                },
                other => other,
            }
        })?;
        tx.execute(
            "INSERT INTO flowbot_schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(db)?;
        applied.push(format!("{} {}", migration.version, migration.name));
    }
    tx.commit().await.map_err(db)?;
    for migration in &applied {
        tracing::info!(url = shown, migration = %migration, "schema migration applied");
    }
    Ok(MigrationReport {
        from,
        to: SCHEMA_VERSION,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_schema_version() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1, "{}", migration.name);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
