//! Free-text orders through `flowbot serve`: `POST /api/v1/intake/text` starts the shipped
//! `order_email` process on a tiny random-weight model; an e-mail without an order number opens
//! the review task with the fields pre-filled; an implausible total sends the review back; the
//! completed review continues the order in `order_processing` and is recorded as a correction,
//! which `flowbot corrections export` reads back.

use flowbot_e2e::serve::{project, Server};
use flowbot_e2e::{flowbot, repo_root};
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn shipped(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("workflows").join(name)).unwrap()
}

/// The shipped process with a one-line system prompt: the tiny model's context (512 positions)
/// does not hold the worked examples.
fn with_short_system_prompt(process: &str) -> String {
    let start = process.find("      system: |-\n").expect("a system prompt");
    let end = process.find("      prompt: ").expect("a prompt");
    format!(
        "{}      system: Extract the sales order from the e-mail as JSON.\n{}",
        &process[..start],
        &process[end..]
    )
}

/// The open tasks of `instance`.
fn tasks_of(server: &Server, instance: &str) -> Vec<Value> {
    server
        .get(&format!("/api/v1/tasks?instance={instance}"))
        .json()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_free_text_order_without_an_order_number_is_reviewed_then_continues_and_is_recorded() {
    let (dir, workflows, rules, data) = project(&[
        (
            "order_email.yaml",
            &with_short_system_prompt(&shipped("order_email.yaml")),
        ),
        ("order_processing.yaml", &shipped("order_processing.yaml")),
        ("order_review.dmn", &shipped("order_review.dmn")),
    ]);
    let model = dir.path().join("tiny.gguf");
    write_tiny_llama(&model, 5).unwrap();
    let server = Server::start(
        &data,
        &[
            "--workflows",
            workflows.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--store",
            "memory",
            "--complete-jobs",
            "--model",
            model.to_str().unwrap(),
        ],
    );

    // Bad requests start nothing.
    for (body, field) in [
        (json!({"text": "  "}), "text"),
        (json!({"text": "x".repeat(16 * 1024 + 1)}), "text"),
        (json!({"text": "order", "extra": 1}), "extra"),
        (json!({"business_key": "k"}), "text"),
    ] {
        let answer = server.post("/api/v1/intake/text", &body);
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.json()["field"], field, "{}", answer.body);
    }
    assert_eq!(
        server.get("/api/v1/instances").json()["items"],
        json!([]),
        "a refused request started an instance"
    );

    // No digit anywhere: whatever the model copies, no order number can be read.
    let email = "Hello, ACME Trading Ltd would like the usual paper again, same as last time. Best regards, Ann";
    let read = server.post(
        "/api/v1/intake/text",
        &json!({"text": email, "business_key": "mail-1"}),
    );
    assert_eq!(read.status, 201, "{}", read.body);
    let read = read.json();
    let instance = read["instance"]["id"].as_str().unwrap().to_string();
    assert_eq!(read["instance"]["process"], "order_email");
    assert_eq!(read["instance"]["status"], "waiting", "{read}");
    let task = &read["review_task"];
    assert_eq!(task["node"], "review_extraction", "{read}");
    // The form lists the extracted fields, pre-filled with what the instance holds.
    let form = task["form"].as_object().unwrap();
    let fields: Vec<&str> = form.keys().map(String::as_str).collect();
    assert_eq!(fields, ["order_id", "customer", "total", "currency"]);
    let variables = &read["instance"]["variables"];
    for (field, value) in form {
        assert_eq!(value, &variables[field].clone(), "{field} pre-filled");
        assert_eq!(value, &read["order"][field], "{field} in the order read");
    }
    match variables.get("llm_error") {
        // The output broke off: the review opened through the error boundary.
        Some(error) => assert_eq!(error["node"], "extract", "{read}"),
        // The model answered (every field is required): the rule found no order number.
        None => {
            assert!(form.values().all(|v| !v.is_null()), "{read}");
            assert!(
                read["review_reasons"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("no order number")),
                "{read}"
            );
        }
    }
    assert_eq!(tasks_of(&server, &instance).len(), 1);

    // An implausible total goes back to review, with the reason.
    let task_id = task["id"].as_str().unwrap();
    let corrected = json!({"order_id": "SO-4242", "customer": "ACME Trading Ltd", "total": 0, "currency": "EUR"});
    let done = server.post(
        &format!("/api/v1/tasks/{task_id}/complete"),
        &json!({"variables": corrected}),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    server.wait_for("the review to reopen", WAIT, |s| {
        tasks_of(s, &instance).len() == 1
    });
    let again = tasks_of(&server, &instance).remove(0);
    assert_eq!(again["node"], "review_extraction");
    assert_eq!(again["form"]["total"], 0);
    assert_eq!(again["form"]["order_id"], "SO-4242");
    let view = server.get(&format!("/api/v1/instances/{instance}")).json();
    assert_eq!(
        view["variables"]["review_reasons"],
        json!(["implausible total 0"])
    );

    // A plausible one continues the order in order_processing, with the corrected fields.
    let done = server.post(
        &format!("/api/v1/tasks/{}/complete", again["id"].as_str().unwrap()),
        &json!({"variables": {"total": 1234.5}}),
    );
    assert_eq!(done.status, 200, "{}", done.body);
    server.wait_for("the order e-mail to complete", WAIT, |s| {
        s.get(&format!("/api/v1/instances/{instance}")).json()["status"] == "completed"
    });
    let mut orders = Value::Null;
    server.wait_for("the order to continue in order_processing", WAIT, |s| {
        orders = s.get("/api/v1/instances?process=order_processing").json()["items"].clone();
        orders.as_array().is_some_and(|items| !items.is_empty())
    });
    let order = &orders[0];
    assert_eq!(order["variables"]["order_id"], "SO-4242");
    assert_eq!(order["variables"]["customer"], "ACME Trading Ltd");
    assert_eq!(order["variables"]["amount"], 1234.5);
    assert_eq!(order["variables"]["currency"], "EUR");
    assert_eq!(order["path"][0], "order_from_email", "{order}");

    // Both reviews were recorded, with the e-mail, the model's output and the corrections.
    let export = flowbot(&["corrections", "export", "--data", data.to_str().unwrap()]);
    assert_eq!(export.code, Some(0), "{}", export.stderr);
    let lines: Vec<Value> = export
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", export.stdout);
    for line in &lines {
        assert_eq!(line["instance"], instance.as_str());
        assert_eq!(line["process"], "order_email");
        assert_eq!(line["task"], "review_extraction");
        assert_eq!(line["step"], "extract");
        assert!(line["input"].as_str().unwrap().contains(email), "{line}");
        assert!(!line["model_output"].is_null(), "{line}");
    }
    assert_eq!(lines[0]["corrected"], corrected);
    assert_eq!(
        lines[1]["corrected"],
        json!({"order_id": "SO-4242", "customer": "ACME Trading Ltd", "total": 1234.5, "currency": "EUR"})
    );
    assert!(lines[1]["changed"]
        .as_array()
        .unwrap()
        .contains(&json!("order_id")));

    // A missing corrections file is a clear error.
    let none = flowbot(&[
        "corrections",
        "export",
        "--file",
        dir.path().join("none.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(none.code, Some(1), "{}", none.stderr);
    assert!(none.stderr.contains("none.jsonl"), "{}", none.stderr);
}
