//! `flowbot serve --store postgres://...` end to end, on the server named by
//! `FLOWBOT_TEST_POSTGRES_URL` (`scripts/postgres-test-cluster.sh start`; skipped with a notice
//! without it, a failure under CI): orders started and read back, `/readyz` false while the
//! database refuses connections and true again after, a second node on the same database refused
//! naming the first, and `flowbot db migrate`.

use flowbot_e2e::serve::{project, Server};
use flowbot_e2e::{flowbot, repo_root};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const DATABASE: &str = "flowbot_e2e_serve";

/// The server's URL, or `None` (with a notice) when none is set outside CI.
fn server_url() -> Option<String> {
    match std::env::var("FLOWBOT_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("FLOWBOT_TEST_POSTGRES_URL is not set: CI must run the PostgreSQL tests")
        }
        _ => {
            eprintln!("skipped: FLOWBOT_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// Runs SQL through `psql` on the server's maintenance database.
fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("psql runs (it comes with the postgresql package)");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_order(server: &Server, order: &str) -> String {
    let answer = server.post(
        "/api/v1/instances",
        &json!({"process": "order_processing",
                "variables": {"order_id": order, "customer": "ann", "amount": 20000}}),
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json()["id"].as_str().unwrap().to_string()
}

#[test]
fn serve_on_postgres_starts_orders_reports_readiness_and_refuses_a_second_node() {
    let Some(admin_url) = server_url() else {
        return;
    };
    psql(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
    );
    psql(&admin_url, &format!("CREATE DATABASE {DATABASE}"));
    let url = format!("{}/{DATABASE}", admin_url.rsplit_once('/').unwrap().0);
    let workflows =
        std::fs::read_to_string(repo_root().join("workflows/order_processing.yaml")).unwrap();
    let review = std::fs::read_to_string(repo_root().join("workflows/order_review.dmn")).unwrap();
    let (_dir, workflows_dir, rules, data) = project(&[
        ("order_processing.yaml", &workflows),
        ("order_review.dmn", &review),
    ]);
    let (w, r) = (workflows_dir.to_str().unwrap(), rules.to_str().unwrap());
    let common = [
        "--workflows",
        w,
        "--rules",
        r,
        "--complete-jobs",
        "--store",
        &url,
    ];
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

    assert_eq!(server.terminate(), Some(0));
    let migrate = flowbot(&["db", "migrate", "--store", &url]);
    assert!(migrate.stdout.contains("up to date"), "{migrate:?}");
}
