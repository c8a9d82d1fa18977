//! Errors of the PostgreSQL store: what went wrong at opening (each with what to do), and their
//! mapping onto the engine's [`StoreError`] for failures while running.

use flowbot_engine::store::StoreError;

/// Errors from opening, migrating or using a PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgStoreError {
    /// The URL does not parse.
    #[error("store URL `{url}` is not a PostgreSQL URL ({detail}); write it as postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]")]
    InvalidUrl {
        /// The URL, password removed.
        url: String,
        /// What the parser reported.
        detail: String,
    },
    /// The CA file for TLS cannot be read or holds no certificate.
    #[error("TLS CA file {path}: {detail}; name a PEM file with the server's CA certificate(s)")]
    Tls {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// No connection could be made (server down, wrong host or port, wrong password, no such
    /// database, TLS refused).
    #[error("cannot connect to {url}: {detail}; check that PostgreSQL runs there and accepts connections, and the user, password and database in the store URL")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// What the server or the network said.
        detail: String,
    },
    /// The user lacks a privilege the store needs.
    #[error("{url}: permission denied ({detail}); the store's user needs to create tables in the database's schema for migrations (GRANT CREATE ON SCHEMA public TO the user, or run `flowbot db migrate` as the owner) and to read and write the flowbot_* tables")]
    Permission {
        /// The URL, password removed.
        url: String,
        /// What the server said.
        detail: String,
    },
    /// The database was migrated by a newer Flowbot.
    #[error("database {url} has flowbot schema version {found}, this build of flowbot knows versions up to {supported}; run a flowbot release that knows version {found}, or use another database (nothing was changed)")]
    NewerSchema {
        /// The URL, password removed.
        url: String,
        /// The version found.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// Another node writes to the database, and this one may not join it (one of the two has the
    /// database to itself).
    #[error("database {url} is in use by {holder}; nodes share a database only when every one of them is started with --cluster (store.cluster, docs/cluster.md): start both so, stop the other node, or give this one another database")]
    InUse {
        /// The URL, password removed.
        url: String,
        /// Who holds the database, as far as the server tells.
        holder: String,
    },
    /// A statement failed.
    #[error("{url}: {detail}")]
    Database {
        /// The URL, password removed.
        url: String,
        /// What the server or the connection said.
        detail: String,
    },
    /// The store's own threads could not be started.
    #[error("cannot start the store's threads: {0}")]
    Threads(String),
}

impl PgStoreError {
    /// The error of a failed statement, classified: permissions apart from the rest.
    pub(crate) fn from_db(url: &str, err: &tokio_postgres::Error) -> Self {
        let detail = describe(err);
        match err.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => {
                PgStoreError::Permission {
                    url: url.into(),
                    detail,
                }
            }
            _ => PgStoreError::Database {
                url: url.into(),
                detail,
            },
        }
    }
}

impl From<PgStoreError> for StoreError {
    fn from(err: PgStoreError) -> Self {
        match err {
            PgStoreError::NewerSchema {
                url,
                found,
                supported,
            } => StoreError::SchemaMismatch {
                path: url,
                found: found.max(0) as u32,
                expected: supported.max(0) as u32,
            },
            PgStoreError::InUse { url, holder } => StoreError::Locked {
                path: url,
                detail: format!("in use by {holder}"),
            },
            other => StoreError::Io {
                path: String::new(),
                detail: other.to_string(),
            },
        }
    }
}

/// A database error with the server's message (and detail) when there is one.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = err.to_string();
            let mut source = std::error::Error::source(err);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}
