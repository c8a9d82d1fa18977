//! The order robot end to end, through HTTP only: `flowbot serve` started as a real process on
//! the repository's configuration (its `[[routes]]`, rule 2's sort rule) with a manual clock; the
//! example ERP exports uploaded to `POST /api/v1/intake`; every order driven with the seed routes
//! (`/import`, `/updateStatus`, `/sendShipmentInfo`, `/settlePayment`) and the task API; the
//! clock moved past the end of the day; then final states, the notifications per receiver read
//! from the WebSocket feed, invoices, freight charges and settlements checked.
//!
//! The `llm` step runs on the suite's tiny random-weight model (its text is noise, but it is
//! the process's step that writes it).

use flowbot_e2e::repo_root;
use flowbot_e2e::serve::{project, Answer, Server};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

/// A multipart body of the example exports and their mapping.
fn exports_multipart(boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for name in ["order_system.csv", "sales.csv", "finance.json"] {
        let bytes = std::fs::read(repo_root().join("examples/data").join(name)).unwrap();
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"mapping\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(read("examples/data/mapping.toml").as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

fn post_json(server: &Server, path: &str, body: &Value) -> Answer {
    server.post(path, body)
}

fn waits_at(server: &Server, instance: &str) -> Vec<String> {
    server.get(&format!("/api/v1/instances/{instance}")).json()["waiting_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["node"].as_str().unwrap().to_string())
        .collect()
}

/// The clerk completes the review tasks of `group`, then waits until each awaits shipment.
fn review(server: &Server, group: &[&(String, String)]) {
    for (_, instance) in group {
        let task = server
            .get(&format!(
                "/api/v1/tasks?instance={instance}&node=review_order"
            ))
            .json()[0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let done = server.post(
            &format!("/api/v1/tasks/{task}/complete"),
            &json!({"variables": {"approved": true}}),
        );
        assert_eq!(done.status, 200, "{}", done.body);
    }
    let ids: Vec<(String, String)> = group.iter().map(|&pair| pair.clone()).collect();
    await_shipment(server, &ids);
}

/// Waits until every order of `ids` awaits shipment (panics with one that does not).
fn await_shipment(server: &Server, ids: &[(String, String)]) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let behind: Vec<Value> = ids
            .iter()
            .filter(|(_, instance)| waits_at(server, instance) != ["ship_order"])
            .map(|(_, instance)| server.get(&format!("/api/v1/instances/{instance}")).json())
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} orders do not await shipment, e.g. {}",
            behind.len(),
            behind[0]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_day_of_orders_runs_through_the_order_robot_over_http() {
    let started_at = std::time::Instant::now();
    let (dir, workflows, _rules, data) = project(&[
        (
            "order_processing.yaml",
            &read("workflows/order_processing.yaml"),
        ),
        ("order_review.dmn", &read("workflows/order_review.dmn")),
        (
            "daily_settlement.yaml",
            &read("workflows/daily_settlement.yaml"),
        ),
    ]);
    // The repository's configuration, with time moved by hand.
    std::fs::write(
        dir.path().join("flowbot.toml"),
        format!("clock = \"manual\"\n{}", read("flowbot.toml")),
    )
    .unwrap();
    let server = Server::start(
        &data,
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--store",
            "memory",
            "--complete-jobs",
        ],
    );
    let token = server.admin_token();

    // Intake of the three exports: bad rows reported with file and row; one order per aligned
    // record started.
    let boundary = "flowbot-e2e-boundary";
    let response = ureq::post(&format!("{}/api/v1/intake", server.base))
        .timeout(Duration::from_secs(300))
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send_bytes(&exports_multipart(boundary))
        .unwrap_or_else(|e| panic!("intake: {e}"));
    let intake: Value = serde_json::from_str(&response.into_string().unwrap()).unwrap();
    let expected: Value =
        serde_json::from_str(&read("examples/data/expected/intake.json")).unwrap();
    let bad_rows = intake["report"]["bad_rows"].as_array().unwrap();
    assert_eq!(
        bad_rows.len(),
        expected["bad_rows"].as_array().unwrap().len(),
        "{bad_rows:?}"
    );
    assert!(bad_rows
        .iter()
        .all(|row| row["file"].as_str().is_some_and(|f| !f.is_empty())
            && row["row"].as_u64().is_some_and(|r| r > 0)
            && row["reason"].as_str().is_some_and(|r| !r.is_empty())));
    let started = intake["started"].as_array().unwrap();
    let orders = expected["orders"].as_array().unwrap();
    assert_eq!(started.len(), orders.len());
    // Rule 2: started in the order of creation time (instance numbers count up in it).
    let created: BTreeMap<&str, &str> = orders
        .iter()
        .map(|o| {
            (
                o["order_id"].as_str().unwrap(),
                o["created_at"].as_str().unwrap_or("~"),
            )
        })
        .collect();
    let times: Vec<&str> = started
        .iter()
        .map(|s| created[s["order_id"].as_str().unwrap()])
        .collect();
    let mut sorted_times = times.clone();
    sorted_times.sort();
    assert_eq!(times, sorted_times, "rule 2: by creation time");

    // Uploads that cannot be taken start nothing.
    for (query, body) in [
        ("file=..%2Fx.csv", "order_id\nA\n"),
        ("", "order_id\nA\n"),
        ("file=x.csv&sort=shipped", "order_id\nA\n"),
        ("file=x.csv", "\u{0}\u{1}"),
    ] {
        let refused = ureq::post(&format!("{}/api/v1/intake?{query}", server.base))
            .set("Content-Type", "text/csv")
            .send_string(body);
        match refused {
            Err(ureq::Error::Status(400, _)) => {}
            other => panic!("{query}: {other:?}"),
        }
    }
    assert_eq!(
        server.get("/api/v1/instances?limit=1000").json()["items"]
            .as_array()
            .unwrap()
            .len(),
        started.len()
    );

    // One more order through the seed route: the answer carries the model's confirmation, in
    // Chinese for a Chinese customer name.
    let imported = post_json(
        &server,
        "/import",
        &json!({"orderId": "WEB-1", "customerName": "张伟", "totalAmount": 88}),
    );
    assert_eq!(imported.status, 200, "{}", imported.body);
    let imported = imported.json();
    assert!(
        imported["result"].as_str().is_some_and(|t| !t.is_empty()),
        "{imported}"
    );
    assert_eq!(imported["language"], "zh");
    assert_eq!(imported["order_id"], "WEB-1");

    // Unknown orders: 404; shipment information before the order awaits shipment: 409 with
    // rule 1's message.
    let unknown = post_json(
        &server,
        "/sendShipmentInfo/NOPE-1",
        &json!({"info": "DHL 2 kg"}),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let mut ids: Vec<(String, String)> = started
        .iter()
        .map(|s| {
            (
                s["order_id"].as_str().unwrap().to_string(),
                s["instance"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ids.push((
        "WEB-1".into(),
        imported["instance"].as_str().unwrap().into(),
    ));
    let reviewed: Vec<&(String, String)> = ids
        .iter()
        .filter(|(_, instance)| waits_at(&server, instance) == ["review_order"])
        .collect();
    assert!(!reviewed.is_empty(), "large orders wait for review");
    let (order, _) = reviewed[0];
    let early = post_json(
        &server,
        &format!("/sendShipmentInfo/{order}"),
        &json!({"info": "DHL, 3 kg"}),
    );
    assert_eq!(early.status, 409, "{}", early.body);
    assert!(
        early.json()["detail"].as_str().unwrap().contains(
            "shipment information can only be filled in while the order is awaiting shipment"
        ),
        "{}",
        early.body
    );

    // The clerk reviews the large orders, eight at a time (each then has its confirmation
    // written before it awaits shipment).
    for group in reviewed.chunks(8) {
        review(&server, group);
    }
    await_shipment(&server, &ids);

    // Payments for every second order, a status from another system for one, shipment for
    // two orders out of three; the rest stays open into the night.
    let mut paid = BTreeSet::new();
    let mut shipped = BTreeSet::new();
    for (index, (order, _)) in ids.iter().enumerate() {
        if index % 2 == 0 {
            let answer = post_json(&server, &format!("/settlePayment/{order}"), &json!({}));
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert_eq!(answer.json()["paid"], true);
            paid.insert(order.clone());
        }
        if index % 3 != 0 {
            let answer = post_json(
                &server,
                &format!("/sendShipmentInfo/{order}"),
                &json!({"info": format!("DHL, {} kg", index % 7 + 1)}),
            );
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(
                answer.json()["freight_charge"].as_str().is_some(),
                "{}",
                answer.body
            );
            shipped.insert(order.clone());
        }
    }
    let (first, _) = &ids[0];
    let status = post_json(
        &server,
        &format!("/updateStatus/on_hold/{first}"),
        &json!({}),
    );
    assert_eq!(status.status, 200, "{}", status.body);
    assert_eq!(status.json()["status"], "on_hold");

    // The end of the day: the settlement timer fires and settles the open, unpaid orders.
    let clock = server.admin("GET", "/admin/v1/clock", None).json();
    assert_eq!(clock["kind"], "manual");
    let moved = server.call(
        "POST",
        "/admin/v1/clock",
        Some(json!({"advance": "24h"}).to_string()),
        Some(&token),
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    // Paid: by the route, or already in the exports (a payment time).
    let paid_in_exports: BTreeSet<&str> = orders
        .iter()
        .filter(|o| o["paid"] == true)
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    let open_unpaid: BTreeSet<String> = ids
        .iter()
        .map(|(order, _)| order.clone())
        .filter(|order| {
            !shipped.contains(order)
                && !paid.contains(order)
                && !paid_in_exports.contains(order.as_str())
        })
        .collect();
    assert!(!open_unpaid.is_empty());
    let mut feed = server.feed("after=0");
    let mut entries = Vec::new();
    let settled = |entries: &[Value]| {
        entries
            .iter()
            .filter(|e| e["receiver"] == "settle_order")
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while settled(&entries) < open_unpaid.len() && std::time::Instant::now() < deadline {
        entries.extend(feed.read_for(Duration::from_millis(500)));
    }
    entries.extend(feed.drain(Duration::from_millis(500)));

    // The day was closed at 23:59 in the business time zone (Asia/Shanghai, UTC+8).
    let days = server
        .get("/api/v1/instances?process=daily_settlement")
        .json();
    let day = &days["items"].as_array().unwrap()[0];
    let history = server
        .get(&format!(
            "/api/v1/instances/{}/history",
            day["id"].as_str().unwrap()
        ))
        .json();
    let due_ms = history
        .as_array()
        .unwrap()
        .iter()
        .find_map(|record| record["entry"]["due_ms"].as_u64())
        .unwrap_or_else(|| panic!("no timer start in {history}"));
    assert_eq!(due_ms % 86_400_000, (15 * 60 + 59) * 60_000, "{history}");

    // Final states.
    for (order, instance) in &ids {
        let view = server.get(&format!("/api/v1/instances/{instance}")).json();
        if shipped.contains(order) {
            assert_eq!(view["status"], "completed", "{view}");
            assert!(view["variables"]["freight_charge"].as_str().is_some());
        } else {
            assert_eq!(waits_at(&server, instance), ["ship_order"], "{view}");
        }
        assert!(view["variables"]["invoice_number"].as_str().is_some());
    }

    // What each receiver was told, from the feed.
    let of = |receiver: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["receiver"] == receiver)
            .collect()
    };
    let settled_orders: BTreeSet<String> = of("settle_order")
        .iter()
        .map(|e| e["content"]["order_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        settled_orders, open_unpaid,
        "rule 7: the open, unpaid orders"
    );
    assert_eq!(
        of("send_invoice").len(),
        ids.len(),
        "rule 5: one invoice per order"
    );
    assert_eq!(of("freight_charge_updated").len(), shipped.len(), "rule 6");
    let warehouse = of("warehouse");
    assert_eq!(
        warehouse.len(),
        shipped.len(),
        "rule 4: the warehouse hears each shipment"
    );
    assert!(warehouse.iter().all(|e| e["content"]
        .as_str()
        .unwrap()
        .starts_with("Shipment information of order ")));
    let finance = of("finance");
    let count = |prefix: &str| {
        finance
            .iter()
            .filter(|e| e["content"].as_str().unwrap().starts_with(prefix))
            .count()
    };
    assert_eq!(count("Invoice "), ids.len());
    assert_eq!(count("Freight charge of order "), shipped.len());
    assert_eq!(count("Order "), open_unpaid.len());
    // Customers: each order's confirmation and its status changes (rule 3).
    let told_customers: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["kind"] == "notify"
                && !matches!(e["receiver"].as_str(), Some("warehouse" | "finance"))
        })
        .collect();
    for (order, _) in &ids {
        assert!(
            told_customers.iter().any(|e| e["content"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Your order {order} is now confirmed."))),
            "{order} confirmed to its customer"
        );
    }
    assert!(told_customers
        .iter()
        .any(|e| e["content"] == format!("Your order {first} is now on hold.")));
    assert!(
        entries
            .iter()
            .filter(|e| e["kind"] == "notify")
            .all(|e| !e["content"].as_str().unwrap().contains("#{")),
        "no Rhai map syntax in what people read"
    );
    eprintln!(
        "{} orders, {} feed entries, {:.1} s",
        ids.len(),
        entries.len(),
        started_at.elapsed().as_secs_f64()
    );
}

#[test]
fn a_route_naming_a_node_the_process_lacks_stops_the_start_with_the_entry() {
    let (dir, workflows, _rules, data) = project(&[
        (
            "order_processing.yaml",
            &read("workflows/order_processing.yaml"),
        ),
        ("order_review.dmn", &read("workflows/order_review.dmn")),
    ]);
    std::fs::write(
        dir.path().join("flowbot.toml"),
        "[[routes]]\nroute = \"POST /ship/{order_id}\"\naction = \"complete\"\nprocess = \"order_processing\"\nbusiness_key = \"order_id\"\nnode = \"ship\"\n",
    )
    .unwrap();
    let log = Server::try_start(
        &data,
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--store",
            "memory",
        ],
    )
    .err()
    .expect("the server refuses to start");
    assert!(
        log.contains("routes[0] (POST /ship/{order_id}): node: process `order_processing` has no node `ship`"),
        "{log}"
    );
}
