//! One process, one input, one behaviour: `flowbot run` prints the same report in memory and on
//! a sled store (`--store`), for every shipped workflow. Only what differs by nature is left out
//! of the comparison: the instance id, times, and the duration of model calls.

use flowbot_e2e::{flowbot_with_limit, repo_root};
use serde_json::{json, Value};
use std::time::Duration;

/// The variables each shipped workflow starts with.
fn variables(file: &str) -> Value {
    let order = json!({"order_id": "SO-1001", "customer": "ACME Ltd", "amount": 1234.5,
                       "currency": "CNY", "paid": false,
                       "shipment": {"carrier": "DHL", "weight_kg": 12.5}});
    match file {
        "order_confirmation.yaml" | "order_confirmation.bpmn" => {
            let mut vars = order;
            vars["language"] = json!("en");
            vars
        }
        "order_email.yaml" => json!({"email_text":
            "Hello, please book order PO-77 for Alpine Tools GmbH, total EUR 1,250.00. Thanks, Eva"}),
        _ => order,
    }
}

/// The report without what differs between two runs by nature.
fn comparable(mut report: Value) -> Value {
    let object = report.as_object_mut().expect("one JSON object");
    for key in ["id", "started", "ended"] {
        assert!(object.contains_key(key), "the report has `{key}`");
        object.remove(key);
    }
    for wait in object["waiting_on"].as_array_mut().into_iter().flatten() {
        let wait = wait.as_object_mut().unwrap();
        wait.remove("since");
        wait.remove("due");
        if let Some(task) = wait.get_mut("task").filter(|t| !t.is_null()) {
            // `instance:activation`: the activation part is the same.
            let activation = task
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .to_string();
            *task = json!(activation);
        }
    }
    for record in object["history"].as_array_mut().into_iter().flatten() {
        let record = record.as_object_mut().unwrap();
        record.remove("at_ms");
        record["entry"]
            .as_object_mut()
            .unwrap()
            .remove("elapsed_ms");
    }
    report
}

#[test]
fn run_prints_the_same_report_in_memory_and_on_a_store_for_every_shipped_workflow() {
    let workflows = repo_root().join("workflows");
    let mut files: Vec<String> = std::fs::read_dir(&workflows)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".bpmn"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let path = workflows.join(file);
        let vars = variables(file).to_string();
        let store = tempfile::tempdir().unwrap();
        let run = |extra: &[&str]| {
            let mut args = vec![
                "run",
                path.to_str().unwrap(),
                "--auto-complete",
                "--json",
                "--vars",
                &vars,
            ];
            args.extend_from_slice(extra);
            flowbot_with_limit(&args, Duration::from_secs(300))
        };
        let in_memory = run(&[]);
        let on_store = run(&["--store", store.path().to_str().unwrap()]);
        assert_eq!(
            in_memory.code, on_store.code,
            "{file}: exit codes differ\n{}\n{}",
            in_memory.stderr, on_store.stderr
        );
        if in_memory.code != Some(0) {
            assert_eq!(in_memory.stderr, on_store.stderr, "{file}");
            assert!(!in_memory.stderr.is_empty(), "{file}: a failure says why");
            continue;
        }
        let (memory, store) = (in_memory.json(), on_store.json());
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&memory), keys(&store), "{file}");
        assert_eq!(comparable(memory), comparable(store), "{file}");
    }
}
