//! The store conformance suite and the PostgreSQL-specific checks, against the database server
//! named by `FLOWBOT_TEST_POSTGRES_URL` (`scripts/postgres-test-cluster.sh start` prints one).
//! Each test works in a database of its own, created fresh. Without the variable the tests say
//! so and pass, except under CI (`CI` set), where that is a failure.

use flowbot_engine::shard::ShardSet;
use flowbot_engine::store::conformance;
use flowbot_engine::store::{Ack, SnapshotChange, StepCommit, Store, StoreError};
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
    // Nodes started together on an empty database: one migrates, the others wait for it.
    let url = fresh_database("migrate_together").unwrap();
    let together: Vec<_> = (0..4)
        .map(|n| {
            let options = options(&url, &format!("m{n}"));
            std::thread::spawn(move || PgStore::migrate(&options))
        })
        .collect();
    let applied: usize = together
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}"))
                .applied
                .len()
        })
        .sum();
    assert_eq!(applied, SCHEMA_VERSION as usize);
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
    assert!(err.to_string().contains("node-b serves"), "{err}");
    // Steps of the same group in other shards are written without it, and so are later ones;
    // the lost shard stays refused.
    let other = (0..)
        .map(|n| format!("other-{n}"))
        .find(|id| shard_of(id) != shard)
        .unwrap();
    let together = [
        store.commit(step_of(&other, "x", 0)).unwrap(),
        store.commit(step_of("order-7", "third", 1)).unwrap(),
    ];
    let [written, refused] = together.map(Ack::wait);
    written.unwrap();
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "{refused:?}"
    );
    store
        .commit(step_of(&other, "y", 1))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(
        store.history(&other).unwrap(),
        vec![b"x".to_vec(), b"y".to_vec()]
    );
    drop(store);
    // Nothing of the refused steps is stored; restarted, the node takes every shard again.
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

/// A node that shares the database `url`, with shard leases of `lease`.
fn open_shared(url: &str, node: &str, lease: std::time::Duration) -> PgStore {
    let mut options = options(url, node);
    options.cluster_lease = Some(lease);
    PgStore::open(options).unwrap_or_else(|e| panic!("{e}"))
}

/// An instance id in `shard`.
fn id_in(shard: u32) -> String {
    (0..)
        .map(|n| format!("order-{n}"))
        .find(|id| shard_of(id) == shard)
        .unwrap_or_default()
}

#[test]
fn nodes_sharing_a_database_split_the_shards_fence_each_other_and_take_over_expired_leases() {
    let Some(url) = fresh_database("membership") else {
        return;
    };
    let lease = std::time::Duration::from_secs(1);
    let a = open_shared(&url, "node-a", lease);
    let b = open_shared(&url, "node-b", lease);
    assert_eq!(
        a.held_shards(),
        ShardSet::NONE,
        "a shared node starts with no shard"
    );

    // Alone (b has not sent a heartbeat yet), a takes every shard.
    let round = a.balance().unwrap();
    assert_eq!((round.acquired, round.live_nodes), (ShardSet::ALL, 1));
    // b counts now but finds no free shard; a sees two nodes and names its excess.
    let round = b.balance().unwrap();
    assert_eq!((round.acquired, round.live_nodes), (ShardSet::NONE, 2));
    let round = a.balance().unwrap();
    let upper: ShardSet = (32..64).collect();
    assert_eq!(
        (round.excess, round.lost, round.live_nodes),
        (upper, ShardSet::NONE, 2)
    );
    a.release_shards(round.excess).unwrap();
    assert_eq!(b.balance().unwrap().acquired, upper);
    assert_eq!(a.held_shards(), ShardSet::ALL.minus(upper));
    assert_eq!(b.held_shards(), upper);

    // Each writes to its own shards; a write to a shard the writer does not hold is refused
    // and leaves nothing (a third node, holding none, plays the stale one).
    let (mine, theirs) = (id_in(3), id_in(40));
    a.commit(step_of(&mine, "a", 0)).unwrap().wait().unwrap();
    b.commit(step_of(&theirs, "b", 0)).unwrap().wait().unwrap();
    let stale = open_shared(&url, "node-stale", lease);
    let err = stale
        .commit(step_of(&theirs, "late", 1))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fenced { shards, owner, .. } if shards == &[40] && owner == "node-b"),
        "{err}"
    );
    assert_eq!(b.history(&theirs).unwrap(), vec![b"b".to_vec()]);
    drop(stale);

    // b stops (its leases stay until they expire); a takes its shards once they have.
    assert_eq!(b.balance().unwrap().acquired, ShardSet::NONE);
    drop(b);
    let round = a.balance().unwrap();
    assert_eq!(round.acquired, ShardSet::NONE, "b's leases still run");
    std::thread::sleep(lease + std::time::Duration::from_millis(500));
    let round = a.balance().unwrap();
    assert_eq!((round.acquired, round.live_nodes), (upper, 1));
    a.commit(step_of(&theirs, "a", 1)).unwrap().wait().unwrap();
    assert_eq!(
        a.history(&theirs).unwrap(),
        vec![b"b".to_vec(), b"a".to_vec()]
    );
}

#[test]
fn a_node_alone_on_its_database_does_not_balance() {
    let Some(url) = fresh_database("no_balance") else {
        return;
    };
    let store = open(&url);
    assert_eq!(store.held_shards(), ShardSet::ALL);
    let err = store.balance().unwrap_err();
    assert!(err.to_string().contains("no cluster lease"), "{err}");
}

/// start → review (a user task) → an hour's timer → end.
const REVIEW_THEN_WAIT: &str = "
process: p
nodes:
  s: { start: ~, next: review }
  review: { user: ~, next: wait }
  wait: { catch: { timer: { duration: PT1H } }, next: e }
  e: { end: ~ }
";

/// The definitions of a YAML process.
fn parsed(yaml: &str) -> flowbot_engine::Definitions {
    let (defs, diagnostics) =
        flowbot_engine::yaml::parse_yaml(std::path::Path::new("test.yaml"), yaml);
    defs.unwrap_or_else(|| panic!("{diagnostics:?}"))
}

/// An engine on `store` that owns no shard until a membership round gives it some.
async fn shared_engine(
    store: Arc<PgStore>,
    clock: &(impl flowbot_engine::clock::Clock + Clone),
) -> flowbot_engine::Engine {
    flowbot_engine::Engine::builder()
        .store(store)
        .clock(Arc::new(clock.clone()))
        .options(flowbot_engine::EngineOptions {
            shards: ShardSet::NONE,
            ..Default::default()
        })
        .build()
        .await
        .unwrap()
}

/// One membership round as a node runs it (`app/src/cluster.rs`): drop what the store no longer
/// holds or holds too much of, give the excess back, load what was taken.
async fn round(engine: &flowbot_engine::Engine, store: &PgStore) -> flowbot_postgres::Balance {
    let round = store.balance().unwrap();
    let gone = engine.owned_shards().minus(store.held_shards());
    engine.release_shards(gone.union(round.excess));
    if !round.excess.is_empty() {
        store.release_shards(round.excess).unwrap();
    }
    engine.acquire_shards(round.acquired).await.unwrap();
    round
}

/// Completes the review task of `id` on `engine`.
async fn review(engine: &flowbot_engine::Engine, id: &str) {
    let info = engine.instance(id).unwrap();
    let activation = info
        .waiting_on
        .iter()
        .find(|w| w.node == "review")
        .map(|w| w.activation)
        .unwrap_or_else(|| panic!("{id} waits on no review"));
    engine
        .complete_task(id, activation, Default::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_share_a_database_and_one_finishes_what_a_dead_one_left() {
    let Some(url) = tokio::task::block_in_place(|| fresh_database("two_engines")) else {
        return;
    };
    let lease = std::time::Duration::from_secs(1);
    let clock = flowbot_engine::clock::VirtualClock::starting_at(0);
    let defs = parsed(REVIEW_THEN_WAIT);

    let store_a = Arc::new(open_shared(&url, "node-a", lease));
    let a = shared_engine(store_a.clone(), &clock).await;
    assert_eq!(round(&a, &store_a).await.acquired, ShardSet::ALL);
    a.deploy(&defs, None).await.unwrap();
    let store_b = Arc::new(open_shared(&url, "node-b", lease));
    let b = shared_engine(store_b.clone(), &clock).await;
    round(&b, &store_b).await;
    let excess = round(&a, &store_a).await.excess;
    assert_eq!(round(&b, &store_b).await.acquired, excess);
    assert_eq!(a.owned_shards().union(b.owned_shards()), ShardSet::ALL);
    assert_eq!(a.owned_shards().minus(b.owned_shards()), a.owned_shards());

    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..8 {
        on_a.push(a.start("p", Default::default()).await.unwrap().id);
        on_b.push(b.start("p", Default::default()).await.unwrap().id);
    }
    assert!(on_a.iter().all(|id| a.owned_shards().holds(id)));
    assert!(on_b.iter().all(|id| b.owned_shards().holds(id)));
    for id in &on_a[..4] {
        review(&a, id).await;
    }

    // A deployment on one node reaches the other by itself (it polls the shared store).
    let q = parsed(&REVIEW_THEN_WAIT.replace("process: p", "process: q"));
    b.deploy(&q, None).await.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !a.deployments().iter().any(|d| d.process_id == "q") {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "a never saw b's deployment");

    // A message for b's instance, correlated on a, waits in the inbox until b delivers it by
    // itself.
    let m = parsed(
        "process: m\nnodes:\n  s: { start: ~, next: paid }\n  \
         paid: { catch: { message: { name: paid, correlation_key: order } }, next: e }\n  \
         e: { end: ~ }\n",
    );
    a.deploy(&m, None).await.unwrap();
    b.deploy(&m, None).await.unwrap();
    let mut vars = serde_json::Map::new();
    vars.insert("order".into(), "SO-9".into());
    let waiting = b.start("m", vars.clone()).await.unwrap().id;
    let outcome = a
        .correlate_message("paid", Some("SO-9"), vars)
        .await
        .unwrap();
    assert!(
        matches!(&outcome, flowbot_engine::runtime::Correlation::Queued { instance, .. } if *instance == waiting),
        "{outcome:?}"
    );
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), b.wait_for_end(&waiting))
        .await
        .expect("b delivered the message from its inbox")
        .unwrap();
    assert_eq!(done.path, ["s", "paid", "e"]);

    // a dies without giving anything back; b takes its shards once their leases have run out
    // and carries its instances on, those waiting for review and those waiting for the timer.
    a.shutdown().await;
    drop(a);
    drop(store_a);
    tokio::time::sleep(lease + std::time::Duration::from_millis(500)).await;
    let taken = round(&b, &store_b).await;
    assert_eq!(taken.acquired, ShardSet::ALL.minus(excess));
    assert_eq!(b.owned_shards(), ShardSet::ALL);
    for id in on_a[4..].iter().chain(&on_b) {
        review(&b, id).await;
    }
    for id in on_a.iter().chain(&on_b) {
        let done = tokio::time::timeout(std::time::Duration::from_secs(30), b.wait_for_end(id))
            .await
            .unwrap_or_else(|_| panic!("{id} did not end"))
            .unwrap();
        assert_eq!(done.path, ["s", "review", "wait", "e"], "{id}");
        let history = b.history(id).unwrap();
        let fired = history
            .iter()
            .filter(|r| {
                matches!(
                    r.entry,
                    flowbot_engine::runtime::HistoryEntry::TimerFired { .. }
                )
            })
            .count();
        assert_eq!(fired, 1, "{id}");
    }
}

#[test]
fn nodes_sharing_a_database_number_one_notification_log_in_commit_order() {
    let Some(url) = fresh_database("shared_log") else {
        return;
    };
    let lease = std::time::Duration::from_secs(30);
    let a = Arc::new(open_shared(&url, "node-a", lease));
    let b = Arc::new(open_shared(&url, "node-b", lease));
    a.balance().unwrap();
    b.balance().unwrap();
    a.release_shards(a.balance().unwrap().excess).unwrap();
    b.balance().unwrap();
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                let held = store.held_shards();
                let ids = (0..).map(|n| format!("n-{n}")).filter(|id| held.holds(id));
                let mut numbers = Vec::new();
                for id in ids.take(60) {
                    let mut commit = step_of(&id, "s", 0);
                    commit.notifications = vec![id.clone().into_bytes(), id.into_bytes()];
                    let ack = store.commit(commit).unwrap();
                    let last = ack.last_notification();
                    ack.wait().unwrap();
                    numbers.push(last.get().expect("numbered once durable"));
                }
                numbers
            })
        })
        .collect();
    let per_node: Vec<Vec<u64>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    // Each node's commits are numbered in the order it committed them, and together the
    // numbers are those of one log without gaps or repeats.
    for numbers in &per_node {
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    }
    let mut all: Vec<u64> = per_node.concat();
    all.sort_unstable();
    assert_eq!(all, (1..=120).map(|n| 2 * n).collect::<Vec<_>>());
    // Either node reads the whole log, and knows how far the other has written.
    assert_eq!(a.last_notification().unwrap(), 240);
    assert_eq!(b.last_notification().unwrap(), 240);
    let log = a.notifications_after(0, 1_000).unwrap();
    assert_eq!(log.len(), 240);
    assert!(log.iter().map(|(n, _)| *n).eq(1..=240));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_cannot_commit_and_lets_go_at_its_next_round() {
    let Some(url) = tokio::task::block_in_place(|| fresh_database("lease_ran_out")) else {
        return;
    };
    let lease = std::time::Duration::from_secs(1);
    let clock = flowbot_engine::clock::VirtualClock::starting_at(0);
    let defs = parsed(REVIEW_THEN_WAIT);
    let store_a = Arc::new(open_shared(&url, "node-a", lease));
    let a = shared_engine(store_a.clone(), &clock).await;
    round(&a, &store_a).await;
    a.deploy(&defs, None).await.unwrap();
    let id = a.start("p", Default::default()).await.unwrap().id;

    // a misses its renewals (paused, say) until its leases run out, and b takes every shard.
    tokio::time::sleep(lease + std::time::Duration::from_millis(500)).await;
    let store_b = Arc::new(open_shared(&url, "node-b", lease));
    let b = shared_engine(store_b.clone(), &clock).await;
    assert_eq!(round(&b, &store_b).await.acquired, ShardSet::ALL);

    // a still has the instance in memory, but its write is refused and leaves nothing.
    let info = a.instance(&id).unwrap();
    let activation = info.waiting_on[0].activation;
    let err = a
        .complete_task(&id, activation, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("node-b serves"), "{err}");
    // Its next round finds the shards gone and drops them; b carries the instance on.
    round(&a, &store_a).await;
    assert_eq!(a.owned_shards(), ShardSet::NONE);
    assert!(a.running().is_empty());
    review(&b, &id).await;
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), b.wait_for_end(&id))
        .await
        .expect("b finishes it")
        .unwrap();
    assert_eq!(done.path, ["s", "review", "wait", "e"]);
    // The review was completed once: by b (a's attempt left nothing).
    let reviews = b
        .history(&id)
        .unwrap()
        .iter()
        .filter(|r| {
            matches!(&r.entry, flowbot_engine::runtime::HistoryEntry::Executor {
                event: flowbot_engine::executor::Event::WaitCompleted { node, .. },
            } if node == "review")
        })
        .count();
    assert_eq!(reviews, 1);
}

/// Process `p`, whose script sets `marker`: each marker is different content.
fn marked(marker: &str) -> flowbot_engine::Definitions {
    parsed(&format!(
        "process: p\nnodes:\n  s: {{ start: ~, next: w }}\n  \
         w: {{ script: let marker = \"{marker}\";, next: e }}\n  e: {{ end: ~ }}\n"
    ))
}

/// (version, content hash) of every version of `process_id` that `engine` knows, in order.
fn versions_known(engine: &flowbot_engine::Engine, process_id: &str) -> Vec<(u32, String)> {
    let mut known: Vec<(u32, String)> = engine
        .deployments()
        .iter()
        .filter(|d| d.process_id == process_id)
        .map(|d| (d.version, d.content_hash.clone()))
        .collect();
    known.sort();
    known
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_deploying_at_once_never_give_one_version_number_to_different_content() {
    let Some(url) = tokio::task::block_in_place(|| fresh_database("concurrent_deploys")) else {
        return;
    };
    let lease = std::time::Duration::from_secs(1);
    let clock = flowbot_engine::clock::VirtualClock::starting_at(0);
    let a = shared_engine(Arc::new(open_shared(&url, "node-a", lease)), &clock).await;
    let b = shared_engine(Arc::new(open_shared(&url, "node-b", lease)), &clock).await;

    // Pairs of deployments of different content, one on each node, at the same moment.
    let mut deployed = Vec::new();
    for pair in 0..5 {
        let (on_a, on_b) = (a.clone(), b.clone());
        let from_a =
            tokio::spawn(async move { on_a.deploy(&marked(&format!("a{pair}")), None).await });
        let from_b =
            tokio::spawn(async move { on_b.deploy(&marked(&format!("b{pair}")), None).await });
        for deployment in [from_a.await.unwrap(), from_b.await.unwrap()] {
            let deployment = deployment.unwrap();
            assert!(deployment.created);
            deployed.push((
                deployment.deployed.version,
                deployment.deployed.content_hash.clone(),
            ));
        }
    }
    deployed.sort();
    let numbers: Vec<u32> = deployed.iter().map(|(version, _)| *version).collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<_>>(), "{deployed:?}");
    // Each node knows every version with the content its deployment stored.
    for engine in [&a, &b] {
        engine.refresh_deployments().unwrap();
        assert_eq!(versions_known(engine, "p"), deployed);
    }

    // Content deployed on one node is the existing version when the other deploys it too.
    let first = a.deploy(&marked("last"), None).await.unwrap();
    let again = b.deploy(&marked("last"), None).await.unwrap();
    assert_eq!((first.created, first.deployed.version), (true, 11));
    assert_eq!((again.created, again.deployed.version), (false, 11));
}

/// A clock that moves only when the test moves it.
#[derive(Clone)]
struct ManualClock {
    now: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ManualClock {
    fn starting_at(ms: u64) -> Self {
        Self {
            now: Arc::new(tokio::sync::watch::channel(ms).0),
        }
    }

    fn set(&self, ms: u64) {
        self.now.send_modify(|now| *now = (*now).max(ms));
    }
}

impl flowbot_engine::clock::Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, due_ms: u64) -> flowbot_engine::clock::Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= due_ms).await;
        })
    }
}

const MINUTE_MS: u64 = 60_000;

/// Process `ticks`: a timer start event on `cycle`, a script setting `marker`, an end.
fn ticking(cycle: &str, marker: &str) -> flowbot_engine::Definitions {
    parsed(&format!(
        "process: ticks\nnodes:\n  tick: {{ start: {{ timer: {{ cycle: \"{cycle}\" }} }}, next: work }}\n  \
         work: {{ script: let marker = \"{marker}\";, next: done }}\n  done: {{ end: ~ }}\n"
    ))
}

/// (tick due time, occurrence, version) of every instance a timer start event started, by due
/// time, as `engine` reads them from the store.
fn ticks(engine: &flowbot_engine::Engine) -> Vec<(u64, u32, u32)> {
    let page = engine
        .list_instances(&Default::default(), None, 1_000)
        .unwrap();
    let mut ticks = Vec::new();
    for instance in page.items {
        for record in engine.history(&instance.id).unwrap() {
            if let flowbot_engine::runtime::HistoryEntry::StartedByTimer {
                due_ms,
                occurrence,
                ..
            } = record.entry
            {
                ticks.push((due_ms, occurrence, instance.version));
            }
        }
    }
    ticks.sort();
    ticks
}

/// Waits until `engine` reads `expected` ticks from the store (bounded rounds, no timing).
async fn until_ticks(engine: &flowbot_engine::Engine, expected: &[(u64, u32, u32)]) {
    for _ in 0..400 {
        if ticks(engine) == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(ticks(engine), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_start_redeployed_on_a_node_that_does_not_own_it_moves_on_its_owner() {
    let Some(url) = tokio::task::block_in_place(|| fresh_database("remote_schedules")) else {
        return;
    };
    let lease = std::time::Duration::from_secs(1);
    let hour = 60 * MINUTE_MS;
    let clock = ManualClock::starting_at(0);
    // a owns every shard; b none (it runs no membership round until a is gone).
    let store_a = Arc::new(open_shared(&url, "node-a", lease));
    let a = shared_engine(store_a.clone(), &clock).await;
    assert_eq!(round(&a, &store_a).await.acquired, ShardSet::ALL);
    a.deploy(&ticking("R/PT1H", "v1"), None).await.unwrap();
    let store_b = Arc::new(open_shared(&url, "node-b", lease));
    let b = shared_engine(store_b.clone(), &clock).await;
    clock.set(hour);
    until_ticks(&a, &[(hour, 1, 1)]).await;

    // b, whose copy of the schedule is from before that tick, redeploys with the same timer:
    // the schedule keeps its place (the second occurrence at 2 h), on a as in the store.
    b.deploy(&ticking("R/PT1H", "v2"), None).await.unwrap();
    for _ in 0..400 {
        if versions_known(&a, "ticks").len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        versions_known(&a, "ticks").len(),
        2,
        "a never saw version 2"
    );
    // (A tick armed from a stale copy would fire at once: give it the chance.)
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    clock.set(2 * hour);
    until_ticks(&a, &[(hour, 1, 1), (2 * hour, 2, 2)]).await;

    // b deploys another timer at 2 h 10: the owner ticks on it from 2 h 40 with version 3, and
    // no more on the hourly one.
    clock.set(2 * hour + 10 * MINUTE_MS);
    b.deploy(&ticking("R/PT30M", "v3"), None).await.unwrap();
    clock.set(2 * hour + 40 * MINUTE_MS);
    let mut expected = vec![
        (hour, 1, 1),
        (2 * hour, 2, 2),
        (2 * hour + 40 * MINUTE_MS, 1, 3),
    ];
    until_ticks(&a, &expected).await;
    clock.set(3 * hour + 10 * MINUTE_MS);
    expected.push((3 * hour + 10 * MINUTE_MS, 2, 3));
    until_ticks(&a, &expected).await;

    // a dies; b takes its shards and goes on from the stored schedule: no tick repeated.
    a.shutdown().await;
    drop(a);
    drop(store_a);
    tokio::time::sleep(lease + std::time::Duration::from_millis(500)).await;
    assert_eq!(round(&b, &store_b).await.acquired, ShardSet::ALL);
    clock.set(3 * hour + 40 * MINUTE_MS);
    expected.push((3 * hour + 40 * MINUTE_MS, 3, 3));
    until_ticks(&b, &expected).await;
}
