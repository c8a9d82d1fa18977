//! `flowbot serve --store postgres://...` end to end, on the server named by
//! `FLOWBOT_TEST_POSTGRES_URL` (`scripts/postgres-test-cluster.sh start`; skipped with a notice
//! without it, a failure under CI): orders started and read back, `/readyz` false while the
//! database refuses connections and true again after, a second node on the same database refused
//! naming the first, and `flowbot db migrate`; and the database server restarted under load
//! (`FLOWBOT_TEST_POSTGRES_RESTART`, the command that restarts it, set by `scripts/test-all.sh`):
//! every start acknowledged before, during or after is there afterwards, once. Clusters of
//! nodes on one database: three sharing the work with one killed, any node answering for any
//! instance, and the webhooks handed over when their coordinator is killed.

use flowbot_e2e::serve::{project, Server};
use flowbot_e2e::webhooks;
use flowbot_e2e::{flowbot, repo_root};
use serde_json::json;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DATABASE: &str = "flowbot_e2e_serve";

/// Held by each test: one restarts the database server, which the other must not see.
static DATABASE_SERVER: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    DATABASE_SERVER.lock().unwrap_or_else(|e| e.into_inner())
}

/// The environment variable `name`, or `None` (with a notice) when it is not set outside CI;
/// under CI its absence fails the test (`what` needs it).
fn required_env(name: &str, what: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{name} is not set: CI must run {what}")
        }
        _ => {
            eprintln!("skipped: {name} is not set");
            None
        }
    }
}

/// The server's URL.
fn server_url() -> Option<String> {
    required_env("FLOWBOT_TEST_POSTGRES_URL", "the PostgreSQL tests")
}

/// Runs SQL through `psql` on the server's maintenance database; returns what it selects, as
/// unaligned text.
fn psql_value(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-qtA", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql runs (it comes with the postgresql package)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql(url: &str, sql: &str) {
    psql_value(url, sql);
}

/// The URL of `database`, created empty on the server of `admin_url`.
fn fresh_database(admin_url: &str, database: &str) -> String {
    psql(
        admin_url,
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    psql(admin_url, &format!("CREATE DATABASE {database}"));
    format!("{}/{database}", admin_url.rsplit_once('/').unwrap().0)
}

/// A project with the order process and its review table, and the `serve` arguments that run it
/// with built-in job completion on the database at `url`.
fn order_project(url: &str) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
    let workflows =
        std::fs::read_to_string(repo_root().join("workflows/order_processing.yaml")).unwrap();
    let review = std::fs::read_to_string(repo_root().join("workflows/order_review.dmn")).unwrap();
    let (dir, workflows_dir, rules, data) = project(&[
        ("order_processing.yaml", &workflows),
        ("order_review.dmn", &review),
    ]);
    let args = [
        "--workflows",
        workflows_dir.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--complete-jobs",
        "--store",
        url,
    ]
    .map(String::from)
    .to_vec();
    (dir, data, args)
}

/// The start request of an order that runs to its review task.
fn order_body(order: &str) -> serde_json::Value {
    json!({"process": "order_processing",
           "variables": {"order_id": order, "customer": "ann", "amount": 20000}})
}

fn start_order(server: &Server, order: &str) -> String {
    let answer = server.post("/api/v1/instances", &order_body(order));
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn serve_on_postgres_starts_orders_reports_readiness_and_refuses_a_second_node() {
    let Some(admin_url) = server_url() else {
        return;
    };
    let _server = exclusive();
    let url = fresh_database(&admin_url, DATABASE);
    let (_dir, data, args) = order_project(&url);
    let common: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&data, &[&common[..], &["--node-id", "e2e-node-a"]].concat());
    assert_eq!(server.get("/readyz").status, 200);
    let first = start_order(&server, "SO-1");
    let read = server.get(&format!("/api/v1/instances/{first}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["status"], "waiting");

    // The database refuses connections: not ready; back: ready, and work goes on.
    psql(
        &admin_url,
        &format!("ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS false"),
    );
    psql(
        &admin_url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{DATABASE}'"
        ),
    );
    server.wait_for("/readyz 503", Duration::from_secs(30), |s| {
        s.get("/readyz").status == 503
    });
    psql(
        &admin_url,
        &format!("ALTER DATABASE {DATABASE} ALLOW_CONNECTIONS true"),
    );
    server.wait_for("/readyz 200", Duration::from_secs(30), |s| {
        s.get("/readyz").status == 200
    });
    let second = start_order(&server, "SO-2");
    assert_ne!(first, second);
    assert_eq!(
        server.get(&format!("/api/v1/instances/{first}")).status,
        200
    );

    // A second node on the same database is refused, naming the first.
    let other_data = data.with_file_name("data-b");
    let refused = Server::try_start(
        &other_data,
        &[&common[..], &["--node-id", "e2e-node-b"]].concat(),
    )
    .err()
    .expect("a second node on the same database is refused");
    assert!(refused.contains("in use by"), "{refused}");
    assert!(refused.contains("e2e-node-a"), "{refused}");
    assert!(
        refused.contains("--cluster"),
        "says how nodes share: {refused}"
    );

    assert_eq!(server.terminate(), Some(0));
    let migrate = flowbot(&["db", "migrate", "--store", &url]);
    assert!(migrate.stdout.contains("up to date"), "{migrate:?}");
}

/// The shell command that restarts the database server.
fn restart_command() -> Option<String> {
    required_env("FLOWBOT_TEST_POSTGRES_RESTART", "the database-restart test")
}

#[test]
fn a_database_restart_under_load_loses_no_acknowledged_start() {
    let (Some(admin_url), Some(restart)) = (server_url(), restart_command()) else {
        return;
    };
    let _server = exclusive();
    let url = fresh_database(&admin_url, "flowbot_e2e_restart");
    let (_dir, data, args) = order_project(&url);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--node-id", "e2e-restart"]);
    let server = Server::start(&data, &args);
    restart_under_load(&admin_url, &restart, &[&server]);
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn a_database_restart_under_load_loses_nothing_a_cluster_acknowledged() {
    let (Some(admin_url), Some(restart)) = (server_url(), restart_command()) else {
        return;
    };
    let _server = exclusive();
    let url = fresh_database(&admin_url, "flowbot_e2e_restart_cluster");
    let (dir, data, args) = order_project(&url);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push("--cluster");
    let nodes: Vec<Server> = ["n-a", "n-b"]
        .into_iter()
        .map(|name| {
            let data = dir.path().join(format!("data-{name}"));
            let node = Server::start(&data, &[&args[..], &["--node-id", name]].concat());
            node.wait_for("a share of the shards", Duration::from_secs(30), |s| {
                s.get("/readyz").status == 200
            });
            node
        })
        .collect();
    drop(data);
    let nodes: Vec<&Server> = nodes.iter().collect();
    restart_under_load(&admin_url, &restart, &nodes);
    // Both still serve a share, and the shares cover every shard.
    let shares: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.get("/readyz").json()["shards"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(shares.iter().all(|s| s != "none"), "{shares:?}");
}

/// Clients start orders on `servers` (spread over them) while the database server restarts;
/// afterwards every start acknowledged before, during or after is there, once, read through the
/// first server.
fn restart_under_load(admin_url: &str, restart: &str, servers: &[&Server]) {
    // Four clients start orders until told to stop; each keeps what was acknowledged (201) and
    // counts what was refused (a 503 while the database is away, or no answer).
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let target = Server::client(&servers[client % servers.len()].base);
            let (stop, acknowledged, refused) =
                (stop.clone(), acknowledged.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let order = format!("SO-{client}-{n}");
                    match target.try_post("/api/v1/instances", &order_body(&order)) {
                        Some(answer) if answer.status == 201 => {
                            let id = answer.json()["id"].as_str().unwrap().to_string();
                            acknowledged.lock().unwrap().push((id, order));
                        }
                        Some(answer) => refused
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", answer.status, answer.body)),
                        None => refused.lock().unwrap().push("no answer".into()),
                    }
                }
            })
        })
        .collect();
    let count = || acknowledged.lock().unwrap().len();
    let wait_for_more = |than: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while count() < than + 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "no progress: {} acknowledged, refused: {:?}",
                count(),
                refused.lock().unwrap().last()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for_more(0);
    let before = count();
    let started_at = || psql_value(admin_url, "SELECT pg_postmaster_start_time()");
    let first_start = started_at();
    let restarted = Command::new("sh")
        .args(["-c", restart])
        .output()
        .expect("the restart command runs");
    assert!(
        restarted.status.success(),
        "{restart}: {}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_ne!(started_at(), first_start, "the database server restarted");
    // The nodes reconnect on their own and take starts again.
    let after_restart = count();
    wait_for_more(after_restart);
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    for server in servers {
        server.wait_for("/readyz 200", Duration::from_secs(30), |s| {
            s.get("/readyz").status == 200
        });
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > before, "{before} before the restart");
    let reader = servers[0];
    let mut ids = std::collections::HashSet::new();
    for (id, order) in &acknowledged {
        assert!(ids.insert(id.clone()), "{id} acknowledged twice");
        let read = reader.get(&format!("/api/v1/instances/{id}"));
        assert_eq!(
            read.status, 200,
            "{id} ({order}) was acknowledged: {}",
            read.body
        );
        let view = read.json();
        assert_eq!(view["variables"]["order_id"], order.as_str(), "{view}");
        assert_eq!(view["status"], "waiting", "{view}");
        let history = reader
            .get(&format!("/api/v1/instances/{id}/history"))
            .json();
        let started = history
            .as_array()
            .expect("the history is an array of records")
            .iter()
            .filter(|e| e["entry"]["event"]["type"] == "instance_started")
            .count();
        assert_eq!(started, 1, "{id}: {history}");
    }
    eprintln!(
        "{} starts acknowledged on {} node(s) ({before} before the restart), {} refused while it ran",
        acknowledged.len(),
        servers.len(),
        refused.lock().unwrap().len()
    );
}

/// start → work (a service task, completed at once by `--complete-jobs`) → approve (a user
/// task) → the message `paid` keyed by the instance's `tag` → a one-second timer, which tells
/// `ops` when it fired → end.
const CLUSTER_FLOW: &str = "process: flow
nodes:
  s: { start: ~, next: work }
  work: { service: work, next: approve }
  approve: { user: ~, next: paid }
  paid: { catch: { message: { name: paid, correlation_key: tag } }, next: pause }
  pause:
    catch: { timer: { duration: PT1S } }
    next: e
    rules:
      - { on: leave, script: 'notify(\"ops\", \"timer fired\");' }
  e: { end: ~ }
";

/// The instances named by `ops`'s notifications after `after` on `node`, and the last number.
fn ops_notifications(node: &Server, after: u64) -> (Vec<String>, u64) {
    let page = node
        .get(&format!(
            "/api/v1/notifications?receiver=ops&after={after}&limit=1000"
        ))
        .json();
    let items = page["items"].as_array().cloned().unwrap_or_default();
    let last = items
        .iter()
        .filter_map(|n| n["seq"].as_u64())
        .max()
        .unwrap_or(after);
    let instances = items
        .iter()
        .map(|n| n["instance"].as_str().unwrap_or_default().to_string())
        .collect();
    (instances, last)
}

/// Starts node `name` of the cluster on `url` in the project `dir`.
fn cluster_node(
    dir: &std::path::Path,
    workflows: &std::path::Path,
    url: &str,
    name: &str,
) -> Server {
    Server::start(
        &dir.join(format!("data-{name}")),
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--complete-jobs",
            "--store",
            url,
            "--cluster",
            "--node-id",
            name,
        ],
    )
}

/// Calls `attempt` until it succeeds (a shard between owners answers 503 for a few seconds),
/// for at most a minute.
fn persist(what: &str, mut attempt: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !attempt() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: no success in a minute"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The shards a node serves, as `/readyz` reports them.
fn shards_of(server: &Server) -> String {
    server.get("/readyz").json()["shards"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A fresh database `database` and a project with the workflow `file`, whose nodes hold their
/// shards on short leases (3 s, so that a stopped node's shards move within seconds); `None`
/// without a server.
fn cluster_project(
    database: &str,
    file: (&str, &str),
) -> Option<(tempfile::TempDir, std::path::PathBuf, String)> {
    let admin_url = server_url()?;
    let url = fresh_database(&admin_url, database);
    let (dir, workflows, _rules, _data) = project(&[file]);
    std::fs::write(
        dir.path().join("flowbot.toml"),
        "[store]\ncluster_lease_ms = 3000\n",
    )
    .unwrap();
    Some((dir, workflows, url))
}

#[test]
fn three_nodes_share_the_work_and_finish_what_a_killed_one_left_exactly_once() {
    let _server = exclusive();
    let Some((dir, workflows, url)) =
        cluster_project("flowbot_e2e_cluster", ("flow.yaml", CLUSTER_FLOW))
    else {
        return;
    };
    let names = ["n-a", "n-b", "n-c"];
    let mut nodes: Vec<Option<Server>> = names
        .iter()
        .map(|name| Some(cluster_node(dir.path(), &workflows, &url, name)))
        .collect();
    // Every node gets a share within a few rounds.
    for node in nodes.iter().flatten() {
        node.wait_for("a share of the shards", Duration::from_secs(30), |s| {
            s.get("/readyz").status == 200
        });
    }
    let bases: Vec<String> = nodes.iter().flatten().map(|n| n.base.clone()).collect();
    eprintln!(
        "shards: {}",
        nodes
            .iter()
            .flatten()
            .map(shards_of)
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // Starts on all three; node b is killed with SIGKILL in the middle of them.
    let acknowledged = Arc::new(Mutex::new(Vec::<(usize, String)>::new()));
    let clients: Vec<_> = bases
        .iter()
        .enumerate()
        .map(|(node, base)| {
            let (client, acknowledged) = (Server::client(base), acknowledged.clone());
            std::thread::spawn(move || {
                for n in 0..40 {
                    let body =
                        json!({"process": "flow", "variables": {"tag": format!("{node}-{n}")}});
                    match client.try_post("/api/v1/instances", &body) {
                        Some(answer) if answer.status == 201 => {
                            let id = answer.json()["id"].as_str().unwrap().to_string();
                            acknowledged.lock().unwrap().push((node, id));
                        }
                        // Node b is gone: what it did not acknowledge does not count.
                        _ => {}
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    while acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| *n == 1)
        .count()
        < 15
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A client of b's notification feed has read this far when b dies.
    let (read_on_b, last_read) = ops_notifications(nodes[1].as_ref().unwrap(), 0);
    nodes[1].take().unwrap().kill();
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let on_b = acknowledged.iter().filter(|(n, _)| *n == 1).count();
    assert!(on_b >= 15, "{on_b} acknowledged by b");

    // Then every task is completed and every message sent, spread over a and c, while b's shards
    // are still between owners (503: asked again) and after a or c took them over.
    let survivors = [nodes[0].as_ref().unwrap(), nodes[2].as_ref().unwrap()];
    for (i, (_, id)) in acknowledged.iter().enumerate() {
        let node = survivors[i % 2];
        persist(&format!("approve {id}"), || {
            let view = node.get(&format!("/api/v1/instances/{id}")).json();
            let task = view["waiting_on"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|w| w["node"] == "approve")
                .and_then(|w| w["task"].as_str().map(str::to_string));
            let Some(task) = task else {
                // Approved by an earlier attempt whose answer was lost.
                return view["path"].as_array().is_some_and(|p| p.len() > 2);
            };
            node.post(&format!("/api/v1/tasks/{task}/complete"), &json!({}))
                .status
                == 200
        });
        let node = survivors[(i + 1) % 2];
        let tag = node.get(&format!("/api/v1/instances/{id}")).json()["variables"]["tag"].clone();
        persist(&format!("message for {id}"), || {
            let sent = node.post(
                "/api/v1/messages",
                &json!({"name": "paid", "correlation_key": tag}),
            );
            let outcome = sent.json()["outcome"].clone();
            assert_ne!(
                outcome, "buffered",
                "{id} waits for the message: {}",
                sent.body
            );
            sent.status == 200
        });
    }

    // a and c take b's shards once its leases run out and finish its instances.
    let a = nodes[0].as_ref().unwrap();
    for (node, id) in &acknowledged {
        a.wait_for(
            &format!("{id} (started on node {node}) completed"),
            Duration::from_secs(60),
            |s| s.get(&format!("/api/v1/instances/{id}")).json()["status"] == "completed",
        );
    }
    // b comes back and gets a share again.
    nodes[1] = Some(cluster_node(dir.path(), &workflows, &url, "n-b"));
    nodes[1]
        .as_ref()
        .unwrap()
        .wait_for("a share again", Duration::from_secs(30), |s| {
            s.get("/readyz").status == 200
        });
    eprintln!(
        "after the restart: {}",
        nodes
            .iter()
            .flatten()
            .map(shards_of)
            .collect::<Vec<_>>()
            .join(" | ")
    );

    // Each instance ran once: one start, one job completion, one timer, one end; and the feed
    // client resuming on a after what it read on b gets every instance's notification once.
    let a = nodes[0].as_ref().unwrap();
    let (rest, _) = ops_notifications(a, last_read);
    let mut notified: Vec<String> = read_on_b.into_iter().chain(rest).collect();
    notified.sort();
    let mut expected: Vec<String> = acknowledged.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(
        notified, expected,
        "one notification per instance, none lost or repeated"
    );
    let mut ids = std::collections::HashSet::new();
    for (_, id) in &acknowledged {
        assert!(ids.insert(id.clone()), "{id} acknowledged twice");
        let view = a.get(&format!("/api/v1/instances/{id}")).json();
        assert_eq!(
            view["path"],
            json!(["s", "work", "approve", "paid", "pause", "e"]),
            "{view}"
        );
        let history = a.get(&format!("/api/v1/instances/{id}/history")).json();
        let records = history.as_array().expect("an array of records");
        let count = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
            records.iter().filter(|r| wanted(&r["entry"])).count()
        };
        assert_eq!(
            count(&|e| e["event"]["type"] == "instance_started"),
            1,
            "{id}: {history}"
        );
        assert_eq!(count(&|e| e["kind"] == "timer_fired"), 1, "{id}: {history}");
        let job = |e: &serde_json::Value| {
            e["event"]["type"] == "wait_completed" && e["event"]["node"] == "work"
        };
        assert_eq!(count(&job), 1, "{id}: {history}");
        let approved = |e: &serde_json::Value| {
            e["event"]["type"] == "wait_completed" && e["event"]["node"] == "approve"
        };
        assert_eq!(count(&approved), 1, "{id}: {history}");
        assert_eq!(
            count(&|e| e["kind"] == "message_correlated"),
            1,
            "{id}: {history}"
        );
        assert_eq!(
            count(&|e| e["event"]["type"] == "instance_completed"),
            1,
            "{id}: {history}"
        );
    }
    eprintln!(
        "{} instances acknowledged ({on_b} by the killed node), each finished once",
        acknowledged.len()
    );
    for node in nodes.into_iter().flatten() {
        assert_eq!(node.terminate(), Some(0));
    }
}

/// start → approve (a user task) → waits for the message `paid` keyed by the order → end.
const APPROVE_THEN_PAID: &str = "process: ask
nodes:
  s: { start: ~, next: approve }
  approve: { user: ~, next: paid }
  paid: { catch: { message: { name: paid, correlation_key: order } }, next: e }
  e: { end: ~ }
";

#[test]
fn any_node_of_a_cluster_takes_requests_about_any_instance() {
    let _server = exclusive();
    let Some((dir, workflows, url)) = cluster_project(
        "flowbot_e2e_cluster_requests",
        ("ask.yaml", APPROVE_THEN_PAID),
    ) else {
        return;
    };
    let a = cluster_node(dir.path(), &workflows, &url, "n-a");
    a.wait_for("its shards", Duration::from_secs(30), |s| {
        s.get("/readyz").status == 200
    });
    let b = cluster_node(dir.path(), &workflows, &url, "n-b");
    b.wait_for("a share of the shards", Duration::from_secs(30), |s| {
        s.get("/readyz").status == 200
    });
    let started: Vec<String> = (0..6)
        .map(|n| {
            let body = json!({"process": "ask", "variables": {"order": format!("SO-{n}")}});
            let answer = a.post("/api/v1/instances", &body);
            assert_eq!(answer.status, 201, "{}", answer.body);
            answer.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    for (n, id) in started.iter().enumerate() {
        // b reads a's instance from the database, and forwards the completion of its task to a.
        let view = b.get(&format!("/api/v1/instances/{id}")).json();
        let task = view["waiting_on"][0]["task"].as_str().unwrap().to_string();
        let done = b.post(&format!("/api/v1/tasks/{task}/complete"), &json!({}));
        assert_eq!(done.status, 200, "{id}: {}", done.body);
        let again = b.post(&format!("/api/v1/tasks/{task}/complete"), &json!({}));
        // Forwarded again, and refused there as on a single node: the task is no longer open.
        assert_eq!(again.status, 404, "completed twice: {}", again.body);
        // b finds a's instance waiting for the message and leaves it in the inbox for a.
        let message = json!({"name": "paid", "correlation_key": format!("SO-{n}")});
        let sent = b.post("/api/v1/messages", &message);
        assert_eq!(sent.status, 200, "{}", sent.body);
        assert_eq!(sent.json()["outcome"], "queued", "{}", sent.body);
    }
    for id in &started {
        b.wait_for(&format!("{id} completed"), Duration::from_secs(30), |s| {
            s.get(&format!("/api/v1/instances/{id}")).json()["status"] == "completed"
        });
    }
    assert_eq!(b.terminate(), Some(0));
    assert_eq!(a.terminate(), Some(0));
}

/// start → end, telling `ops` as it leaves the start.
const NOTIFYING_FLOW: &str = "process: note
nodes:
  s:
    start: ~
    next: e
    rules:
      - { on: leave, script: 'notify(\"ops\", \"started\");' }
  e: { end: ~ }
";

/// Whether `server` serves shard 0, whose owner coordinates the cluster (it delivers the
/// webhooks).
fn coordinates(server: &Server) -> bool {
    let shards = shards_of(server);
    shards == "0" || shards.starts_with("0-") || shards.starts_with("0,")
}

/// The numbers of `ops`'s notifications from `from` on, as `node` reads the log.
fn ops_numbers(node: &Server, from: u64) -> Vec<u64> {
    let page = node
        .get(&format!(
            "/api/v1/notifications?receiver=ops&after={}&limit=1000",
            from - 1
        ))
        .json();
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["seq"].as_u64())
        .collect()
}

#[test]
fn webhooks_go_on_from_the_stored_cursor_when_the_coordinator_is_killed() {
    let _server = exclusive();
    let Some((dir, workflows, url)) =
        cluster_project("flowbot_e2e_webhooks", ("note.yaml", NOTIFYING_FLOW))
    else {
        return;
    };
    let (hook, received) = webhooks::receiver(0);
    let config = dir.path().join("flowbot.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[webhooks]]\nname = \"ops\"\nurl = \"{hook}\"\nreceiver = \"ops\"\nmax_backoff_ms = 200\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut nodes: Vec<Option<Server>> = ["w-a", "w-b"]
        .iter()
        .map(|name| Some(cluster_node(dir.path(), &workflows, &url, name)))
        .collect();
    for node in nodes.iter().flatten() {
        node.wait_for("a share of the shards", Duration::from_secs(30), |s| {
            s.get("/readyz").status == 200
        });
    }
    let start = |node: &Server| {
        let answer = node.post("/api/v1/instances", &json!({"process": "note"}));
        assert_eq!(answer.status, 201, "{}", answer.body);
    };
    // A webhook seen for the first time starts at the log's end: deliveries count from the first
    // entry it sent.
    persist("a first delivery", || {
        start(nodes[0].as_ref().unwrap());
        std::thread::sleep(Duration::from_millis(200));
        !received.lock().unwrap().is_empty()
    });
    let from = received.lock().unwrap()[0].seq;
    let delivered_from = |node: &Server| {
        let log = ops_numbers(node, from);
        let deliveries = received.lock().unwrap().clone();
        webhooks::first_receipts(&deliveries, "ops") == log
    };

    // Starts on both nodes; every entry arrives once the coordinator has sent it.
    for _ in 0..10 {
        for node in nodes.iter().flatten() {
            start(node);
        }
    }
    let coordinator = nodes
        .iter()
        .position(|n| n.as_ref().is_some_and(coordinates))
        .expect("one node serves shard 0");
    let survivor = 1 - coordinator;
    nodes[survivor].as_ref().unwrap().wait_for(
        "every entry at the webhook",
        Duration::from_secs(60),
        |s| delivered_from(s),
    );

    // The coordinator starts more and is killed at once, some of its entries not sent yet; the
    // other node takes shard 0 once its lease ran out and goes on from the stored cursor.
    for _ in 0..10 {
        start(nodes[coordinator].as_ref().unwrap());
    }
    nodes[coordinator].take().unwrap().kill();
    let before_kill = received.lock().unwrap().len();
    let last_before_kill = received
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .max()
        .unwrap();
    let survivor = nodes[survivor].as_ref().unwrap();
    for _ in 0..10 {
        start(survivor);
    }
    survivor.wait_for("the duty of shard 0", Duration::from_secs(60), coordinates);
    survivor.wait_for(
        "every entry at the webhook after the kill",
        Duration::from_secs(60),
        |s| delivered_from(s),
    );
    let deliveries = received.lock().unwrap().clone();
    let sent_again = deliveries[before_kill..]
        .iter()
        .filter(|d| d.seq <= last_before_kill)
        .count();
    assert!(
        sent_again < before_kill,
        "the new coordinator sent everything again ({sent_again} of {before_kill}) instead of \
         going on from the stored cursor"
    );
    eprintln!(
        "{} entries delivered, {} of them after the kill, {sent_again} sent again",
        ops_numbers(survivor, from).len(),
        deliveries.len() - before_kill
    );
    assert_eq!(
        nodes.into_iter().flatten().next().unwrap().terminate(),
        Some(0)
    );
}
