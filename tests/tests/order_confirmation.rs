//! `workflows/order_confirmation.yaml` with the real model: the confirmation message is written
//! by the local model (found through $FLOWBOT_MODEL, which the CI script sets after fetching it).

use flowbot_e2e::{flowbot_bin, real_model as model, repo_root};
use serde_json::{json, Value};
use std::process::{Command, Output};

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
}

fn order(language: &str) -> String {
    json!({"order_id": "SO-1001", "customer": "ACME Ltd", "amount": 1234.5, "currency": "EUR", "language": language})
        .to_string()
}

#[test]
fn the_confirmation_is_written_by_the_model_and_recorded_in_the_history() {
    let model = model();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = Command::new(flowbot_bin())
        .current_dir(repo_root())
        .args([
            "run",
            "workflows/order_confirmation.yaml",
            "--json",
            "--vars",
            &order("en"),
            "--model",
        ])
        .arg(&model)
        .arg("--store")
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    assert_eq!(report["status"], "completed", "{report}");
    let message = report["variables"]["confirmation_message"]
        .as_str()
        .expect("a confirmation message");
    assert!(!message.trim().is_empty());
    let id = report["id"].as_str().unwrap();

    let history = Command::new(flowbot_bin())
        .args(["history", id, "--json", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );
    let records = json_of(&history);
    let calls: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entry"]["kind"] == "llm_called")
        .collect();
    assert_eq!(calls.len(), 1, "{records}");
    let call = &calls[0]["entry"];
    assert_eq!(call["node"], "write_confirmation_en");
    assert!(
        call["prompt"].as_str().unwrap().contains("SO-1001"),
        "{call}"
    );
    assert_eq!(call["output"]["value"], json!(message));
    assert!(!call["model_id"].as_str().unwrap().is_empty());
    assert!(call["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn the_chinese_branch_runs_in_the_in_memory_runner_from_yaml_and_bpmn() {
    let model = model();
    for file in [
        "workflows/order_confirmation.yaml",
        "workflows/order_confirmation.bpmn",
    ] {
        let out = Command::new(flowbot_bin())
            .current_dir(repo_root())
            .args(["run", file, "--json", "--vars", &order("zh"), "--model"])
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = json_of(&out);
        assert_eq!(report["status"], "completed", "{file}: {report}");
        assert_eq!(
            report["path"],
            json!([
                "order_confirmed",
                "pick_language",
                "write_confirmation_zh",
                "confirmation_ready"
            ]),
            "{file}"
        );
        assert!(
            !report["variables"]["confirmation_message"]
                .as_str()
                .unwrap()
                .trim()
                .is_empty(),
            "{file}"
        );
        assert_eq!(
            report["history"][0]["entry"]["node"], "write_confirmation_zh",
            "{file}"
        );
        assert!(
            report["history"][0]["entry"]["prompt"]
                .as_str()
                .unwrap()
                .contains("SO-1001"),
            "{file}"
        );
    }
}
