//! `workflows/order_email.yaml` with the real model (`$FLOWBOT_MODEL`, the default model the CI
//! script fetches), configured by the repository's `flowbot.toml`: the `extract` step runs the
//! default model with the shipped adapter (`models/order-extract/adapter.gguf`), and an empty
//! `FLOWBOT_EXTRACT_ADAPTER` runs it without.

use flowbot_e2e::{flowbot_bin, real_model, repo_root};
use serde_json::{json, Value};
use std::process::Command;

/// Runs the order e-mail workflow on `email` in the repository root (with `extract_adapter` set
/// to `adapter` when given) and returns the finished instance's variables and the model that
/// answered its `extract` step, as the run's history records it.
fn extract(email: &str, adapter: Option<&str>) -> (Value, String) {
    let mut command = Command::new(flowbot_bin());
    command
        .current_dir(repo_root())
        .env_remove("FLOWBOT_EXTRACT_ADAPTER")
        .args(["run", "workflows/order_email.yaml", "--json", "--model"])
        .arg(real_model())
        .arg("--vars")
        .arg(json!({ "email_text": email }).to_string());
    if let Some(adapter) = adapter {
        command.env("FLOWBOT_EXTRACT_ADAPTER", adapter);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let model = report["history"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["entry"]["kind"] == "llm_called" && r["entry"]["node"] == "extract")
        .and_then(|r| r["entry"]["model_id"].as_str())
        .unwrap_or_else(|| panic!("no extract call in {report}"))
        .to_string();
    (report["variables"].clone(), model)
}

#[test]
fn the_extract_step_runs_the_default_model_with_the_shipped_adapter() {
    let folder = repo_root().join("examples/order_emails_holdout");
    let read = |name: &str| std::fs::read_to_string(folder.join(name)).unwrap();
    // A mixed-language e-mail that names a contact person beside the company: the adapter reads
    // the company, the base model takes the person's name.
    let email = read("mx05.txt");
    let expected: Value = serde_json::from_str(&read("mx05.expected.json")).unwrap();

    let (variables, model) = extract(&email, None);
    assert!(model.ends_with("+adapter"), "the extract step ran {model}");
    for field in ["order_id", "customer", "total", "currency"] {
        assert_eq!(variables[field], expected[field], "{field} in {variables}");
    }

    let (_, model) = extract(&email, Some(""));
    assert!(
        !model.contains("adapter"),
        "without the adapter it ran {model}"
    );
    assert_eq!(
        real_model().file_stem().and_then(|s| s.to_str()),
        Some(model.as_str()),
        "the default model alone"
    );
}
