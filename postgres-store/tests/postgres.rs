//! The store conformance suite and the PostgreSQL-specific checks, against the database server
//! named by `FLOWBOT_TEST_POSTGRES_URL` (`scripts/postgres-test-cluster.sh start` prints one).
//! Each test works in a database of its own, created fresh. Without the variable the tests say
//! so and pass, except under CI (`CI` set), where that is a failure.

use flowbot_engine::store::conformance;
use flowbot_engine::store::{SnapshotChange, StepCommit, Store, StoreError};
use flowbot_postgres::{shard_of, PgOptions, PgStore, PgStoreError, SCHEMA_VERSION};
use std::sync::Arc;

/// The server's URL, or `None` (with a notice) when none is set outside CI.
fn server_url() -> Option<String> {
    match std::env::var("FLOWBOT_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "FLOWBOT_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL store tests \
             (scripts/test-all.sh starts scripts/postgres-test-cluster.sh)"
        ),
        _ => {
            eprintln!(
                "skipped: FLOWBOT_TEST_POSTGRES_URL is not set \
                 (eval \"$(scripts/postgres-test-cluster.sh start)\" sets it)"
            );
            None
        }
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    format!("{host_part}/{database}{query}")
}

/// Runs `work` with a connection to `url`, on a runtime of its own.
fn on_client<T, Work, Done>(url: &str, work: Work) -> T
where
    Work: FnOnce(tokio_postgres::Client) -> Done,
    Done: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        tokio::spawn(connection);
        work(client).await
    })
}

/// Runs SQL statements on the database `url` names.
fn admin(url: &str, statements: &[String]) {
    on_client(url, |client| async move {
        for statement in statements {
            client
                .batch_execute(statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
    });
}

/// A fresh, empty database named after the test; returns its URL.
fn fresh_database(name: &str) -> Option<String> {
    let url = server_url()?;
    let database = format!("flowbot_test_{name}");
    admin(
        &url,
        &[
            format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
            format!("CREATE DATABASE {database}"),
        ],
    );
    Some(with_database(&url, &database))
}

fn options(url: &str, node: &str) -> PgOptions {
    let mut options = PgOptions::new(url);
    options.node_id = node.into();
    options.reconnect_for = std::time::Duration::from_secs(10);
    options
}

fn open(url: &str) -> PgStore {
    PgStore::open(options(url, "test-node")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn postgres_store_passes_the_conformance_suite() {
    let Some(url) = fresh_database("conformance_reads") else {
        return;
    };
    conformance::commits_and_reads_back(&open(&url));
    let url = fresh_database("conformance_keys").unwrap();
    conformance::keyed_tables_scan_bytewise(&open(&url));
    let url = fresh_database("conformance_notifications").unwrap();
    conformance::notification_log_reads_and_removes_exactly(&open(&url));
    let url = fresh_database("conformance_concurrent").unwrap();
    conformance::concurrent_commits_are_all_acknowledged(Arc::new(open(&url)));
    let url = fresh_database("conformance_history").unwrap();
    conformance::history_across_turns(&open(&url));
    conformance::reopened_store_keeps_history(&open(&url));
    let url = fresh_database("conformance_reopen").unwrap();
    let ids = conformance::commit_before_reopen(&open(&url));
    conformance::reopened_store_resumes(&open(&url), &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acks_resolve_on_async_workers() {
    let Some(url) = tokio::task::block_in_place(|| fresh_database("conformance_async")) else {
        return;
    };
    let store = Arc::new(tokio::task::block_in_place(|| open(&url)));
    conformance::acks_resolve_on_async_workers(store.clone()).await;
    let stats = store.flush_stats().unwrap();
    assert_eq!(stats.commits, 100);
}

#[test]
fn a_database_of_a_newer_schema_is_refused_saying_what_to_do() {
    let Some(url) = fresh_database("newer_schema") else {
        return;
    };
    drop(open(&url));
    let newer = SCHEMA_VERSION + 5;
    admin(
        &url,
        &[format!(
            "INSERT INTO flowbot_schema_migrations (version, name) VALUES ({newer}, 'future')"
        )],
    );
    let err = PgStore::open(options(&url, "test-node")).unwrap_err();
    assert!(
        matches!(err, PgStoreError::NewerSchema { found, supported, .. } if found == newer && supported == SCHEMA_VERSION),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&format!("schema version {newer}")), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
}

#[test]
fn migrations_run_once_and_alone() {
    let Some(url) = fresh_database("migrate") else {
        return;
    };
    let first = PgStore::migrate(&options(&url, "m")).unwrap();
    assert_eq!((first.from, first.to), (0, SCHEMA_VERSION));
    assert_eq!(first.applied.len(), SCHEMA_VERSION as usize);
    let again = PgStore::migrate(&options(&url, "m")).unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.from, SCHEMA_VERSION);
}

#[test]
fn a_second_node_on_the_same_database_is_refused_naming_the_first() {
    let Some(url) = fresh_database("second_node") else {
        return;
    };
    let first = PgStore::open(options(&url, "node-a")).unwrap();
    let err = PgStore::open(options(&url, "node-b")).unwrap_err();
    assert!(matches!(err, PgStoreError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("node-a"), "{err}");
    drop(first);
    PgStore::open(options(&url, "node-b")).expect("free once the first node closed");
}

#[test]
fn an_unreachable_server_and_a_missing_database_are_clear_errors() {
    let Some(url) = server_url() else {
        return;
    };
    let mut unreachable = options("postgres://flowbot@127.0.0.1:1/flowbot", "n");
    unreachable.connect_timeout = std::time::Duration::from_secs(2);
    let err = PgStore::open(unreachable).unwrap_err();
    assert!(matches!(err, PgStoreError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains("check that PostgreSQL runs"),
        "{err}"
    );
    let missing = with_database(&url, "flowbot_no_such_database");
    let err = PgStore::open(options(&missing, "n")).unwrap_err();
    assert!(
        err.to_string().contains("flowbot_no_such_database"),
        "{err}"
    );
}

#[test]
fn a_user_without_privileges_is_told_what_to_grant() {
    let Some(url) = fresh_database("no_privileges") else {
        return;
    };
    admin(
        &url,
        &[
            "DROP ROLE IF EXISTS flowbot_reader".into(),
            "CREATE ROLE flowbot_reader LOGIN".into(),
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC".into(),
        ],
    );
    let reader_url = url.replacen("://postgres@", "://flowbot_reader@", 1);
    assert_ne!(
        reader_url, url,
        "the test server's URL names the postgres user"
    );
    let err = PgStore::open(options(&reader_url, "n")).unwrap_err();
    assert!(matches!(err, PgStoreError::Permission { .. }), "{err}");
    assert!(err.to_string().contains("GRANT CREATE"), "{err}");
}

#[test]
fn the_writer_reconnects_after_its_connection_is_killed_and_loses_nothing() {
    let Some(url) = fresh_database("reconnect") else {
        return;
    };
    let store = open(&url);
    let commit = |id: &str| {
        store
            .commit(conformance::step(
                id,
                SnapshotChange::Running(id.as_bytes().to_vec()),
                0,
                &["e"],
            ))
            .unwrap()
            .wait()
            .unwrap()
    };
    commit("before");
    admin(
        &url,
        &["SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
           WHERE application_name = 'flowbot node test-node' AND datname = current_database() \
           AND pid <> pg_backend_pid()"
            .into()],
    );
    commit("after");
    let ids: Vec<String> = store
        .unfinished()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, ["after", "before"]);
    assert_eq!(store.history("after").unwrap(), vec![b"e".to_vec()]);
}

/// A step of `id` whose snapshot and only history entry are `body`, entry number `at`.
fn step_of(id: &str, body: &str, at: u64) -> StepCommit {
    conformance::step(
        id,
        SnapshotChange::Running(body.as_bytes().to_vec()),
        at,
        &[body],
    )
}

#[test]
fn a_write_to_a_shard_another_node_took_over_is_refused_and_leaves_nothing() {
    let Some(url) = fresh_database("fencing") else {
        return;
    };
    let store = open(&url);
    store
        .commit(step_of("order-7", "first", 0))
        .unwrap()
        .wait()
        .unwrap();
    // Another node takes the shard of order-7: what a takeover does to the shard's row.
    let shard = shard_of("order-7");
    admin(
        &url,
        &[format!(
            "UPDATE flowbot_shards SET owner = 'node-b', epoch = epoch + 1 WHERE shard = {shard}"
        )],
    );
    let err = store
        .commit(step_of("order-7", "second", 1))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { shards, owner, .. } if shards == &[shard] && owner == "node-b"),
        "{err}"
    );
    assert!(err.to_string().contains("restart it"), "{err}");
    // The fenced node writes nothing more, in any shard.
    let other = (0..)
        .map(|n| format!("other-{n}"))
        .find(|id| shard_of(id) != shard);
    let later = store
        .commit(step_of(&other.unwrap(), "x", 0))
        .unwrap()
        .wait();
    assert!(matches!(later, Err(StoreError::Fenced { .. })), "{later:?}");
    drop(store);
    // Nothing of the refused step is stored; restarted, the node takes every shard again.
    let store = open(&url);
    assert_eq!(store.instance("order-7").unwrap(), Some(b"first".to_vec()));
    assert_eq!(store.history("order-7").unwrap(), vec![b"first".to_vec()]);
    store
        .commit(step_of("order-7", "second", 1))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store.history("order-7").unwrap(),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
}

#[test]
fn a_node_takes_every_shard_at_start_under_a_new_epoch() {
    let Some(url) = fresh_database("shards") else {
        return;
    };
    let epochs = || {
        on_client(&url, |client| async move {
            client
                .query(
                    "SELECT owner, epoch FROM flowbot_shards ORDER BY shard",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
                .collect::<Vec<_>>()
        })
    };
    drop(open(&url));
    let first = epochs();
    assert_eq!(first.len(), flowbot_postgres::SHARDS as usize);
    assert!(first
        .iter()
        .all(|(owner, epoch)| owner == "test-node" && *epoch == 1));
    drop(open(&url));
    assert!(epochs().iter().all(|(_, epoch)| *epoch == 2));
}
