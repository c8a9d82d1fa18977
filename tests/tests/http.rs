//! `flowbot serve` end to end: the binary started as a real process on a free loopback port,
//! driven over HTTP and the WebSocket feed: every REST and admin route with each error class,
//! hot reload through the admin API and the folder watcher, and a `kill -9` under load followed by
//! a restart on the same data.

use flowbot_e2e::repo_root;
use flowbot_e2e::serve::{project, Answer, Server};
use flowbot_e2e::webhooks;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PROBLEM: &str = "application/problem+json";
const WAIT: Duration = Duration::from_secs(20);

fn order_processing() -> String {
    std::fs::read_to_string(repo_root().join("workflows/order_processing.yaml")).unwrap()
}

/// The decision table the order process's review step evaluates.
fn order_review() -> String {
    std::fs::read_to_string(repo_root().join("workflows/order_review.dmn")).unwrap()
}

/// A problem answer with `status`, naming `field` when given.
fn assert_problem(answer: &Answer, status: u16, field: Option<&str>) -> Value {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.content_type, PROBLEM, "{}", answer.body);
    let problem = answer.json();
    assert_eq!(problem["status"], status);
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    if let Some(field) = field {
        assert_eq!(problem["field"], field, "{problem}");
    }
    problem
}

fn instance_count(server: &Server) -> usize {
    server.get("/api/v1/instances?limit=1000").json()["items"]
        .as_array()
        .unwrap()
        .len()
}

/// A review process: a user task, then a script that records which version ran.
fn review(stage: &str) -> String {
    format!(
        "process: review\nname: Review\nnodes:\n  begin: {{ start: ~, next: check }}\n  check: {{ name: Check, user: ~, next: mark }}\n  mark: {{ script: 'let stage = \"{stage}\";', next: finish }}\n  finish: {{ end: ~ }}\n"
    )
}

#[test]
fn rest_and_admin_routes_answer_and_refuse_bad_input_without_changing_state() {
    let (_dir, workflows, rules, data) = project(&[
        ("order_processing.yaml", &order_processing()),
        ("order_review.dmn", &order_review()),
    ]);
    let (w, r) = (workflows.to_str().unwrap(), rules.to_str().unwrap());
    let server = Server::start(
        &data,
        &["--workflows", w, "--rules", r, "--store", "memory"],
    );

    // Service routes.
    assert_eq!(server.get("/healthz").json()["status"], "ok");
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(
        ready.json()["model"],
        "loaded",
        "the order process has an llm step"
    );
    let doc = server.get("/openapi.json").json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/instances",
        "/admin/v1/deployments",
        "/ws/notifications",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }

    // Definitions.
    let definitions = server.get("/api/v1/definitions").json();
    assert_eq!(definitions[0]["id"], "order_processing");
    assert_eq!(definitions[0]["versions"][0]["version"], 1);
    let definition = server.get("/api/v1/definitions/order_processing").json();
    assert!(definition["nodes"].as_array().unwrap().len() > 10);
    let mermaid = server.get("/api/v1/definitions/order_processing?format=mermaid");
    assert!(mermaid.body.contains("review_order"), "{}", mermaid.body);
    let svg = server.get("/api/v1/definitions/order_processing/graph.svg");
    assert_eq!(svg.content_type, "image/svg+xml");
    assert!(svg.body.contains("<svg") && svg.body.contains("data-node=\"review_order\""));
    assert_problem(&server.get("/api/v1/definitions/nothing"), 404, None);
    assert_problem(
        &server.get("/api/v1/definitions/order_processing?version=x"),
        400,
        Some("version"),
    );
    assert_problem(
        &server.get("/api/v1/definitions/order_processing?format=png"),
        400,
        Some("format"),
    );

    // Bad starts change nothing.
    let bad = [
        (json!({"variables": {}}).to_string(), 400, Some("process")),
        (
            json!({"process": "order_processing", "variables": "x"}).to_string(),
            400,
            Some("variables"),
        ),
        (
            json!({"process": "order_processing", "extra": 1}).to_string(),
            400,
            Some("extra"),
        ),
        ("{\"process\": ".to_string(), 400, None),
        (json!({"process": "nothing"}).to_string(), 404, None),
        (
            json!({"process": "order_processing", "variables": {"x": "y".repeat(3 << 20)}})
                .to_string(),
            413,
            None,
        ),
    ];
    for (body, status, field) in bad {
        let answer = server.call("POST", "/api/v1/instances", Some(body), None);
        assert_problem(&answer, status, field);
    }
    assert_eq!(instance_count(&server), 0, "a refused start stores nothing");

    // Start: without a handler for `import_order`, the job raises an incident.
    let order = json!({"process": "order_processing", "business_key": "SO-1",
        "variables": {"order_id": "SO-1", "customer": "ann", "amount": 20000}});
    let started = server.post("/api/v1/instances", &order);
    assert_eq!(started.status, 201, "{}", started.body);
    let view = started.json();
    let id = view["id"].as_str().unwrap().to_string();
    for field in [
        "status",
        "path",
        "variables",
        "waiting_on",
        "incidents",
        "version",
    ] {
        assert!(view.get(field).is_some(), "{field} in {view}");
    }
    server.wait_for("the incident", WAIT, |s| {
        s.get("/api/v1/incidents").json().as_array().unwrap().len() == 1
    });
    let incident = server.get("/api/v1/incidents").json()[0].clone();
    assert_eq!(incident["instance"], id.as_str());
    let incident_id = incident["id"].as_str().unwrap().to_string();
    let retried = server.post(
        &format!("/api/v1/incidents/{incident_id}/retry"),
        &json!({}),
    );
    assert_eq!(retried.status, 200, "{}", retried.body);
    server.wait_for("the incident raised again", WAIT, |s| {
        s.get("/api/v1/incidents").json().as_array().unwrap().len() == 1
    });
    let incident_id = server.get("/api/v1/incidents").json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_problem(
        &server.post("/api/v1/incidents/nope:1/retry", &json!({})),
        404,
        None,
    );
    let resolved = server.post(
        &format!("/api/v1/incidents/{incident_id}/resolve"),
        &json!({"variables": {"imported": true}}),
    );
    assert_eq!(resolved.status, 200, "{}", resolved.body);

    // The order waits for review (amount over 10,000).
    server.wait_for("the review task", WAIT, |s| {
        s.get(&format!("/api/v1/tasks?instance={id}"))
            .json()
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    let task = server
        .get(&format!("/api/v1/tasks?instance={id}&node=review_order"))
        .json()[0]
        .clone();
    assert_eq!(task["node"], "review_order");
    let task_id = task["id"].as_str().unwrap();
    // Rule 1 refuses shipment information before the order awaits shipment: 409, nothing moves.
    let refused = server.post(
        &format!("/api/v1/tasks/{task_id}/complete"),
        &json!({"variables": {"shipment_no": "SH-1"}}),
    );
    let problem = assert_problem(&refused, 409, None);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("awaiting shipment"),
        "{problem}"
    );
    let after = server.get(&format!("/api/v1/instances/{id}")).json();
    assert!(after["variables"].get("shipment_no").is_none());
    assert_eq!(
        server
            .get(&format!("/api/v1/tasks?instance={id}"))
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_problem(
        &server.post("/api/v1/tasks/nope:3/complete", &json!({})),
        404,
        None,
    );
    assert_problem(
        &server.post(
            &format!("/api/v1/tasks/{task_id}/complete"),
            &json!({"variables": []}),
        ),
        400,
        Some("variables"),
    );
    let completed = server.post(&format!("/api/v1/tasks/{task_id}/complete"), &json!({}));
    assert_eq!(completed.status, 200, "{}", completed.body);

    // Listing, paging, history.
    let second = server.post(
        "/api/v1/instances",
        &json!({"process": "order_processing",
        "variables": {"order_id": "SO-2", "customer": "bob", "amount": 5}}),
    );
    assert_eq!(second.status, 201);
    let page = server.get("/api/v1/instances?limit=1").json();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let next = server
        .get(&format!("/api/v1/instances?limit=1&cursor={cursor}"))
        .json();
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    let by_key = server.get("/api/v1/instances?business_key=SO-1").json();
    assert_eq!(by_key["items"].as_array().unwrap().len(), 1);
    assert_problem(
        &server.get("/api/v1/instances?status=sleeping"),
        400,
        Some("status"),
    );
    assert_problem(&server.get("/api/v1/instances?limit=0"), 400, Some("limit"));
    assert_problem(
        &server.get("/api/v1/instances?colour=red"),
        400,
        Some("colour"),
    );
    let history = server
        .get(&format!("/api/v1/instances/{id}/history"))
        .json();
    assert!(history.as_array().unwrap().len() > 3);
    assert_problem(&server.get("/api/v1/instances/nope"), 404, None);
    assert_problem(&server.get("/api/v1/instances/nope/history"), 404, None);

    // Cancel, twice.
    let cancelled = server.post(&format!("/api/v1/instances/{id}/cancel"), &json!({}));
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.json()["status"], "terminated");
    assert_problem(
        &server.post(&format!("/api/v1/instances/{id}/cancel"), &json!({})),
        409,
        None,
    );

    // Messages and signals.
    let message = server.post(
        "/api/v1/messages",
        &json!({"name": "payment", "correlation_key": "SO-9"}),
    );
    assert_eq!(message.status, 200, "{}", message.body);
    assert_problem(
        &server.post("/api/v1/messages", &json!({"name": ""})),
        400,
        Some("name"),
    );
    let signal = server.post("/api/v1/signals", &json!({"name": "closing"}));
    assert_eq!(signal.json()["reached"], 0);
    assert_problem(
        &server.post("/api/v1/signals", &json!({"nam": "x"})),
        400,
        Some("nam"),
    );

    // The notification log over REST and the WebSocket feed agree.
    let log = server
        .get("/api/v1/notifications?after=0&receiver=ann")
        .json();
    let items = log["items"].as_array().unwrap().clone();
    assert!(!items.is_empty(), "{log}");
    assert!(items.iter().all(|n| n["receiver"] == "ann"));
    let mut feed = server.feed("after=0&receiver=ann");
    let streamed = feed.take(items.len(), WAIT);
    assert_eq!(streamed, items);
    // Without `after`, the feed starts with what becomes durable from now on.
    let mut fresh = server.feed("receiver=bob");
    let third = server.post(
        "/api/v1/instances",
        &json!({"process": "order_processing",
            "variables": {"order_id": "SO-3", "customer": "bob", "amount": 5}}),
    );
    assert_eq!(third.status, 201);
    let third = third.json()["id"].as_str().unwrap().to_string();
    server.wait_for("the third order's incident", WAIT, |s| {
        s.get("/api/v1/incidents")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["instance"] == third.as_str())
    });
    let incidents = server.get("/api/v1/incidents").json();
    let incident = incidents
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == third.as_str())
        .unwrap();
    let resolved = server.post(
        &format!(
            "/api/v1/incidents/{}/resolve",
            incident["id"].as_str().unwrap()
        ),
        &json!({}),
    );
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    server.wait_for("bob notified", WAIT, |s| {
        s.get("/api/v1/notifications?receiver=bob").json()["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    });
    let bob_log = server.get("/api/v1/notifications?receiver=bob").json()["items"]
        .as_array()
        .unwrap()
        .clone();
    // Bob had no entries before the feed connected: it streams exactly his log.
    let live = fresh.take(bob_log.len(), WAIT);
    assert_eq!(live, bob_log);
    assert_problem(&server.get("/ws/notifications"), 400, None);
    assert_problem(
        &server.get("/api/v1/notifications?after=x"),
        400,
        Some("after"),
    );

    // Metrics.
    let metrics = server.get("/metrics").body;
    for line in [
        "flowbot_instances_started_total{process=\"order_processing\"} 3",
        "flowbot_http_requests_total{method=\"POST\",route=\"/api/v1/instances\",status=\"201\"} 3",
        "flowbot_turn_duration_seconds_bucket",
        "flowbot_open_incidents",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // The dashboard and its embedded assets.
    let page = server.get("/");
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (200, "text/html")
    );
    assert!(page.body.contains("/assets/dashboard.js") && page.body.contains("id=\"start-form\""));
    let script = server.get("/assets/dashboard.js");
    assert!(script.content_type == "text/javascript" && script.body.contains("/ws/notifications"));
    assert_eq!(server.get("/assets/dashboard.css").content_type, "text/css");

    // Unknown routes and methods.
    assert_problem(&server.get("/api/v1/nothing"), 404, None);
    assert_problem(
        &server.call("DELETE", "/api/v1/instances", None, None),
        405,
        None,
    );

    // Admin: token, deploy, idempotent redeploy, broken file, bad names, listing, reload.
    let deploy = json!({"file": "review.yaml", "content": review("v1")});
    assert_problem(
        &server.call(
            "POST",
            "/admin/v1/deployments",
            Some(deploy.to_string()),
            None,
        ),
        401,
        None,
    );
    assert_problem(
        &server.call(
            "POST",
            "/admin/v1/deployments",
            Some(deploy.to_string()),
            Some("wrong"),
        ),
        401,
        None,
    );
    assert!(
        !workflows.join("review.yaml").exists(),
        "a refused call writes nothing"
    );
    let created = server.admin("POST", "/admin/v1/deployments", Some(&deploy));
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["deployed"][0]["version"], 1);
    let again = server.admin("POST", "/admin/v1/deployments", Some(&deploy));
    assert_eq!(again.status, 200, "{}", again.body);
    let broken = json!({"file": "review.yaml", "content": "process: review\nnodes:\n  begin: { start: ~, next: nowhere }\n"});
    let problem = assert_problem(
        &server.admin("POST", "/admin/v1/deployments", Some(&broken)),
        422,
        None,
    );
    assert!(
        problem["diagnostics"][0]["at"]
            .as_str()
            .unwrap()
            .contains("review.yaml:"),
        "{problem}"
    );
    assert_eq!(
        std::fs::read_to_string(workflows.join("review.yaml")).unwrap(),
        review("v1")
    );
    for name in [
        "../escape.yaml",
        "/tmp/abs.yaml",
        "sub/dir.yaml",
        "odd name.yaml",
        "notes.txt",
    ] {
        let body = json!({"file": name, "content": review("v1")});
        assert_problem(
            &server.admin("POST", "/admin/v1/deployments", Some(&body)),
            400,
            None,
        );
    }
    // The same file as a multipart upload: unchanged content, 200.
    let boundary = "flowbot-boundary";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"review.yaml\"\r\nContent-Type: application/yaml\r\n\r\n{}\r\n--{boundary}--\r\n",
        review("v1")
    );
    let uploaded = ureq::post(&format!("{}/admin/v1/deployments", server.base))
        .set("Authorization", &format!("Bearer {}", server.admin_token()))
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send_string(&multipart)
        .expect("a multipart deployment");
    assert_eq!(uploaded.status(), 200);
    let deployments = server.admin("GET", "/admin/v1/deployments", None).json();
    assert_eq!(deployments.as_array().unwrap().len(), 2);
    let reload = server.admin("POST", "/admin/v1/reload", None);
    assert_eq!(reload.status, 200, "{}", reload.body);
    // The audit lines arrive on the server's log stream, read by a thread of the test.
    server.wait_for("the admin calls in the audit log", WAIT, |s| {
        let log = s.log();
        log.contains("admin call") && log.contains("refused") && log.contains("/admin/v1/reload")
    });

    // The token was generated once, readable by the owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("admin_token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second server on the same data folder is refused.
    let refused = Server::try_start(
        &data,
        &["--workflows", w, "--rules", r, "--store", "memory"],
    )
    .err()
    .expect("a second serve on the same data is refused");
    assert!(refused.contains("another flowbot serve"), "{refused}");
    // SIGTERM: a clean stop.
    assert_eq!(server.terminate(), Some(0));
}

#[test]
fn hot_reload_through_the_admin_api_and_the_folder_watcher() {
    let (_dir, workflows, rules, data) = project(&[("review.yaml", &review("v1"))]);
    let (w, r) = (workflows.to_str().unwrap(), rules.to_str().unwrap());
    let server = Server::start(
        &data,
        &[
            "--workflows",
            w,
            "--rules",
            r,
            "--store",
            "memory",
            "--log-format",
            "json",
        ],
    );
    let start = |s: &Server| {
        let answer = s.post("/api/v1/instances", &json!({"process": "review"}));
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()
    };
    let finish = |s: &Server, view: &Value| -> Value {
        let id = view["id"].as_str().unwrap();
        let task = s.get(&format!("/api/v1/tasks?instance={id}")).json()[0]["id"].clone();
        let done = s.post(
            &format!("/api/v1/tasks/{}/complete", task.as_str().unwrap()),
            &json!({}),
        );
        assert_eq!(done.status, 200, "{}", done.body);
        done.json()
    };
    let latest = |s: &Server| {
        s.get("/api/v1/definitions/review").json()["latest"]
            .as_u64()
            .unwrap()
    };

    let old = start(&server);
    assert_eq!(old["version"], 1);
    // Through the admin API.
    let v2 = json!({"file": "review.yaml", "content": review("v2")});
    let deployed = server.admin("POST", "/admin/v1/deployments", Some(&v2));
    assert_eq!(deployed.status, 201, "{}", deployed.body);
    let new = start(&server);
    assert_eq!(new["version"], 2);
    let old_done = finish(&server, &old);
    assert_eq!(
        (
            old_done["status"].clone(),
            old_done["variables"]["stage"].clone()
        ),
        (json!("completed"), json!("v1"))
    );
    let new_done = finish(&server, &new);
    assert_eq!(new_done["variables"]["stage"], "v2");
    let broken = json!({"file": "review.yaml", "content": "process: review\nnodes: [\n"});
    assert_eq!(
        server
            .admin("POST", "/admin/v1/deployments", Some(&broken))
            .status,
        422
    );
    assert_eq!(latest(&server), 2);

    // Through the folder watcher.
    let waiting_on_v2 = start(&server);
    std::fs::write(workflows.join("review.yaml"), review("v3")).unwrap();
    server.wait_for("version 3 from the watcher", WAIT, |s| latest(s) == 3);
    std::fs::write(
        workflows.join("review.yaml"),
        "process: review\nnodes:\n  begin: { start: ~, next: gone }\n",
    )
    .unwrap();
    server.wait_for("the broken file refused", WAIT, |s| {
        s.log().contains("reload refused")
    });
    assert_eq!(latest(&server), 3, "a broken file changes nothing");
    let on_v3 = start(&server);
    assert_eq!(on_v3["version"], 3);
    assert_eq!(finish(&server, &on_v3)["variables"]["stage"], "v3");
    assert_eq!(finish(&server, &waiting_on_v2)["variables"]["stage"], "v2");
    // --log-format json: one JSON object per log line after the start banner.
    let log = server.log();
    let json_lines = log.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines > 3, "{log}");
    assert!(log
        .lines()
        .filter(|l| l.starts_with('{'))
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_instance_and_no_notification() {
    let (_dir, workflows, rules, data) = project(&[
        ("order_processing.yaml", &order_processing()),
        ("order_review.dmn", &order_review()),
    ]);
    let (w, r) = (workflows.to_str().unwrap(), rules.to_str().unwrap());
    let args = ["--workflows", w, "--rules", r, "--complete-jobs"];
    let server = Server::start(&data, &args);
    let mut feed = server.feed("after=0");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (base, acknowledged, stop) = (server.base.clone(), acknowledged.clone(), stop.clone());
            std::thread::spawn(move || {
                let target = Server::client(&base);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let order = json!({"process": "order_processing", "variables": {
                        "order_id": format!("SO-{client}-{n}"), "customer": format!("c{client}"), "amount": 20000}});
                    match target.try_post("/api/v1/instances", &order) {
                        Some(answer) if answer.status == 201 => acknowledged
                            .lock()
                            .unwrap()
                            .push(answer.json()["id"].as_str().unwrap().to_string()),
                        Some(answer) => panic!("{}: {}", answer.status, answer.body),
                        None => return,
                    }
                }
            })
        })
        .collect();
    let before_kill = feed.read_for(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "only {} instances started",
        acknowledged.len()
    );

    let server = Server::start(&data, &args);
    for id in &acknowledged {
        let view = server.get(&format!("/api/v1/instances/{id}"));
        assert_eq!(view.status, 200, "{id} was acknowledged: {}", view.body);
    }
    // The recovered instances carry on, each to its review task; then the log is complete.
    server.wait_for("every stored order at its review", WAIT, |s| {
        let stored = s.get("/readyz").json()["instances"].as_u64().unwrap();
        let tasks = s.get("/api/v1/tasks").json().as_array().unwrap().len() as u64;
        stored >= acknowledged.len() as u64 && tasks == stored
    });

    // A client resuming after its last seq gets exactly what it missed.
    let resume_after = before_kill
        .last()
        .map(|n| n["seq"].as_u64().unwrap())
        .unwrap_or(0);
    let missed = server
        .get(&format!(
            "/api/v1/notifications?after={resume_after}&limit=1000"
        ))
        .json()["items"]
        .as_array()
        .unwrap()
        .len();
    let mut resumed = server.feed(&format!("after={resume_after}"));
    let mut after_restart = resumed.take(missed, WAIT);
    after_restart.extend(resumed.drain(Duration::from_millis(300)));
    let received: Vec<u64> = before_kill
        .iter()
        .chain(&after_restart)
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    let log: Vec<u64> = notification_log(&server)
        .iter()
        .map(|n| n["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        received.len(),
        received.iter().collect::<BTreeSet<_>>().len(),
        "no duplicates"
    );
    assert_eq!(received, log, "every durable entry, in order");
    assert!(
        log.len() >= acknowledged.len(),
        "each order notified its customer"
    );
}

/// Every entry of the notification log, in number order.
fn notification_log(server: &Server) -> Vec<Value> {
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page = server
            .get(&format!("/api/v1/notifications?after={after}&limit=1000"))
            .json();
        let items = page["items"].as_array().unwrap().clone();
        let Some(last) = items.last() else {
            return log;
        };
        after = last["seq"].as_u64().unwrap();
        log.extend(items);
    }
}

#[test]
fn webhooks_get_every_entry_in_order_through_failures_restarts_and_a_kill() {
    let (dir, workflows, rules, data) = project(&[
        ("order_processing.yaml", &order_processing()),
        ("order_review.dmn", &order_review()),
    ]);
    let (url, received) = webhooks::receiver(3);
    let config = dir.path().join("webhooks.toml");
    std::fs::write(
        &config,
        format!(
            "[[webhooks]]\nname = \"all\"\nurl = \"{url}\"\nmax_backoff_ms = 200\n\n\
             [[webhooks]]\nname = \"acme\"\nurl = \"{url}\"\nreceiver = \"ACME\"\nmax_backoff_ms = 200\n"
        ),
    )
    .unwrap();
    let (w, r, c) = (
        workflows.to_str().unwrap(),
        rules.to_str().unwrap(),
        config.to_str().unwrap(),
    );
    let args = [
        "--workflows",
        w,
        "--rules",
        r,
        "--complete-jobs",
        "--config",
        c,
    ];
    let start_orders = |server: &Server, first: usize| {
        for n in first..first + 4 {
            let customer = if n % 2 == 0 { "ACME" } else { "Globex" };
            let order = json!({"process": "order_processing", "variables": {
                "order_id": format!("SO-{n}"), "customer": customer, "amount": 20000}});
            assert_eq!(server.post("/api/v1/instances", &order).status, 201);
        }
    };
    let delivered_everything = |server: &Server| {
        let log = notification_log(server);
        let deliveries = received.lock().unwrap().clone();
        let all: Vec<u64> = log.iter().map(|n| n["seq"].as_u64().unwrap()).collect();
        let acme: Vec<u64> = log
            .iter()
            .filter(|n| n["receiver"] == "ACME")
            .map(|n| n["seq"].as_u64().unwrap())
            .collect();
        !acme.is_empty()
            && webhooks::first_receipts(&deliveries, "all") == all
            && webhooks::first_receipts(&deliveries, "acme") == acme
    };

    let server = Server::start(&data, &args);
    start_orders(&server, 0);
    server.wait_for("every entry at both webhooks", WAIT, |s| {
        delivered_everything(s)
    });
    let log = notification_log(&server);
    // The bodies are the log's entries; the three refused posts were tried again.
    for delivery in received.lock().unwrap().iter() {
        let entry = log
            .iter()
            .find(|n| n["seq"].as_u64() == Some(delivery.seq))
            .unwrap();
        assert_eq!(&delivery.body, entry, "{delivery:?}");
    }
    let metrics = server.get("/metrics").body;
    let failed: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("flowbot_webhook_deliveries_total{") && l.contains("outcome=\"failed\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(failed, 3.0, "{metrics}");
    assert_eq!(server.terminate(), Some(0));
    let before_restart = received.lock().unwrap().len();

    // After a clean restart each webhook carries on after its stored cursor: the new entries
    // arrive, the old ones are not sent again.
    let server = Server::start(&data, &args);
    start_orders(&server, 4);
    server.wait_for("the new entries at both webhooks", WAIT, |s| {
        delivered_everything(s)
    });
    let deliveries = received.lock().unwrap().clone();
    let last_before = deliveries[..before_restart]
        .iter()
        .map(|d| d.seq)
        .max()
        .unwrap();
    assert!(
        deliveries[before_restart..]
            .iter()
            .all(|d| d.seq > last_before),
        "entries sent again after a clean restart: {:?}",
        &deliveries[before_restart..]
    );

    // Killed right after its answers: what the webhooks had not been sent yet arrives after the
    // restart (some entries may come twice: at least once, never a gap).
    start_orders(&server, 8);
    server.kill();
    let server = Server::start(&data, &args);
    server.wait_for("every entry after a kill -9", WAIT, |s| {
        delivered_everything(s)
    });
}

#[test]
fn a_bad_webhook_in_the_config_stops_serve_with_its_name() {
    let (dir, workflows, rules, data) = project(&[]);
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[webhooks]]\nname = \"erp\"\nurl = \"ftp://erp.example/hooks\"\n",
    )
    .unwrap();
    let log = Server::try_start(
        &data,
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .err()
    .expect("serve refuses the config");
    assert!(
        log.contains("webhook `erp`") && log.contains("http://"),
        "{log}"
    );
}
