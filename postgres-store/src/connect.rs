//! Connections: the options of a store, the URL, TLS, and the store's own tokio runtime that
//! drives every connection, so that the synchronous [`Store`](flowbot_engine::Store) calls never
//! run database I/O on the caller's async workers.

use crate::error::{describe, PgStoreError};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to reach the database and how the store batches its writes.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=disable|prefer|require]`
    /// (every parameter tokio-postgres reads is accepted). `prefer`, the default, uses TLS when
    /// the server offers it.
    pub url: String,
    /// A PEM file of CA certificates trusted for TLS beside the public web roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The name this node writes under (`flowbot_nodes`, `application_name`).
    pub node_id: String,
    /// Connections for reads.
    pub pool_size: usize,
    /// How long the writer collects commits before writing them in one transaction.
    pub window: Duration,
    /// Commits at most per write transaction.
    pub max_batch: usize,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long the writer keeps reconnecting after the connection broke before it gives up
    /// (every later commit then fails; the service must be restarted).
    pub reconnect_for: Duration,
    /// `None` (the default): the database is this node's alone; it takes every shard at open
    /// and holds the node lock, so a second node is refused. `Some(lease)`: the node shares the
    /// database with other nodes that say so too; it owns the shards it takes with
    /// [`PgStore::balance`](crate::PgStore::balance), each under a lease of this length renewed
    /// by every round.
    pub cluster_lease: Option<Duration>,
}

impl PgOptions {
    /// Options for `url` with the defaults: group window 1 ms, 512 commits per transaction, 8
    /// read connections, node id `host-pid`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: None,
            node_id: default_node_id(),
            pool_size: 8,
            window: flowbot_engine::store::Durability::GROUP_WINDOW,
            max_batch: flowbot_engine::store::Durability::GROUP_MAX_BATCH,
            connect_timeout: Duration::from_secs(10),
            reconnect_for: Duration::from_secs(60),
            cluster_lease: None,
        }
    }
}

/// The default node id: the host name and the process id.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
    .split('?')
    .next()
    .unwrap_or_default()
    .to_string()
}

/// The parsed connection settings and the TLS connector, shared by the writer and the pool.
#[derive(Clone)]
pub(crate) struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The URL without password, for messages.
    pub shown: String,
}

impl Target {
    pub(crate) fn new(options: &PgOptions) -> Result<Self, PgStoreError> {
        let shown = redact(&options.url);
        let mut config: tokio_postgres::Config =
            options
                .url
                .parse()
                .map_err(|e: tokio_postgres::Error| PgStoreError::InvalidUrl {
                    url: shown.clone(),
                    detail: e.to_string(),
                })?;
        if config.get_hosts().is_empty() {
            return Err(PgStoreError::InvalidUrl {
                url: shown,
                detail: "no host".into(),
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        config.application_name(format!("flowbot node {}", options.node_id));
        let tls = MakeRustlsConnect::new(tls_config(options.ca_file.as_ref())?);
        Ok(Self { config, tls, shown })
    }

    /// A new connection, its connection task spawned on `handle`.
    pub(crate) async fn connect(
        &self,
        handle: &Handle,
    ) -> Result<tokio_postgres::Client, PgStoreError> {
        let (client, connection) =
            self.config
                .connect(self.tls.clone())
                .await
                .map_err(|e| match e.code() {
                    Some(_) => PgStoreError::from_db(&self.shown, &e),
                    None => PgStoreError::Connect {
                        url: self.shown.clone(),
                        detail: describe(&e),
                    },
                })?;
        handle.spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %describe(&err), "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

/// The TLS settings: the public web roots, and the certificates of `ca_file` when given.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, PgStoreError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let bad = |detail: String| PgStoreError::Tls {
            path: shown.clone(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| bad(format!("not PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("a certificate is refused: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificate in it".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgStoreError::Tls {
            path: "(built-in settings)".into(),
            detail: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The store's own tokio runtime: it drives every connection of the store.
pub(crate) struct Bridge {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Bridge {
    pub(crate) fn start() -> Result<Self, PgStoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flowbot-postgres")
            .enable_all()
            .build()
            .map_err(|e| PgStoreError::Threads(e.to_string()))?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `future` on the store's runtime and blocks the calling thread until it is done. On a
    /// worker of a multi-threaded tokio runtime the wait goes through `block_in_place`, so the
    /// worker's other tasks move to another thread meanwhile; on a current-thread runtime (tests)
    /// the thread simply waits.
    pub(crate) fn run<T, F>(&self, future: F) -> Option<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(future.await);
        });
        let wait = move || rx.recv().ok();
        match Handle::try_current() {
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropped from async code (a store held by a task) the runtime may not block.
            if Handle::try_current().is_ok() {
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://ann:secret@db.example:5432/flow?sslmode=require"),
            "postgres://ann@db.example:5432/flow"
        );
        assert_eq!(
            redact("postgres://ann@127.0.0.1/flow"),
            "postgres://ann@127.0.0.1/flow"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn a_bad_url_is_refused_with_the_expected_form() {
        let err = match Target::new(&PgOptions::new("postgres://ann:pw@host:notaport/db")) {
            Err(err) => err,
            Ok(_) => panic!("a bad port was accepted"),
        };
        let text = err.to_string();
        assert!(text.contains("postgres://USER"), "{text}");
        assert!(!text.contains("pw"), "password in message: {text}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let mut options = PgOptions::new("postgres://ann@localhost/db");
        options.ca_file = Some("/nonexistent/ca.pem".into());
        let err = match Target::new(&options) {
            Err(err) => err,
            Ok(_) => panic!("a missing CA file was accepted"),
        };
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
