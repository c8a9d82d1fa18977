//! `flowbot model info|generate --model DIR` and `flowbot run --model DIR` on a tiny random-weight
//! llama written by the test as a Hugging Face model directory (config.json, model.safetensors,
//! tokenizer.json); and the LLM calls of `run` in its `history`, in memory and on the durable engine.

use flowbot_e2e::{flowbot, Output};
use flowbot_model_runtime::tiny_model::write_tiny_model_dir;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn tiny_dir(tmp: &Path) -> PathBuf {
    let dir = tmp.join("tiny-llama");
    write_tiny_model_dir(&dir, 5).unwrap();
    dir
}

#[test]
fn model_generate_runs_a_directory_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_dir(tmp.path());
    let dir = dir.to_str().unwrap();
    let args = [
        "model",
        "generate",
        "--model",
        dir,
        "--prompt",
        "Confirm order SO-1001",
        "--max-tokens",
        "12",
        "--verbose",
    ];
    let first = flowbot(&args);
    first.assert_success();
    let second = flowbot(&args);
    second.assert_success();
    assert_eq!(
        first.stdout, second.stdout,
        "greedy generation repeats itself"
    );
    assert!(
        first.stderr.contains("model tiny-llama loaded"),
        "{}",
        first.stderr
    );

    let schema = tmp.path().join("schema.json");
    let schema_json = json!({"type": "object", "properties": {"order_id": {"type": "string"}, "quantity": {"type": "integer"}}, "required": ["order_id", "quantity"]});
    std::fs::write(&schema, schema_json.to_string()).unwrap();
    let extracted = flowbot(&[
        "model",
        "generate",
        "--model",
        dir,
        "--prompt",
        "SO-7, 3 units",
        "--json-schema",
        schema.to_str().unwrap(),
        "--max-tokens",
        "60",
    ]);
    extracted.assert_success();
    let value: Value = serde_json::from_str(extracted.stdout.trim()).unwrap();
    assert!(
        value["order_id"].is_string() && value["quantity"].is_i64(),
        "{value}"
    );
}

#[test]
fn model_info_describes_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_dir(tmp.path());
    let info = flowbot(&["model", "info", "--model", dir.to_str().unwrap(), "--json"]);
    info.assert_success();
    let info = info.json();
    assert_eq!(info["architecture"], "LlamaForCausalLM");
    assert_eq!(info["path"], json!(dir));
    assert_eq!(info["context_length"], 512);
    assert_eq!(info["dtypes"], json!({"F32": 20}));
    assert_eq!(
        info["parameters"], 92_224,
        "284 x 64 embedding, 2 blocks of 36,992, 64 norm"
    );
    assert_eq!(info["tokenizer"]["eos_token"], "<|im_end|>");
    let text = flowbot(&["model", "info", "--model", dir.to_str().unwrap()]);
    text.assert_success();
    assert!(
        text.stdout.contains("architecture:   LlamaForCausalLM"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("parameters:"), "{}", text.stdout);
}

#[test]
fn an_incomplete_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_dir(tmp.path());
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let out = flowbot(&[
        "model",
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "hi",
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("no tokenizer.json"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

fn order() -> String {
    json!({"order_id": "SO-1001", "customer": "ACME Ltd", "amount": 1234.5, "currency": "EUR", "language": "en"})
        .to_string()
}

/// `flowbot run` of the order-confirmation workflow with `vars` on the model `dir`, plus `extra`.
fn run_confirmation(dir: &str, vars: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "run",
        "workflows/order_confirmation.yaml",
        "--vars",
        vars,
        "--model",
        dir,
    ];
    args.extend_from_slice(extra);
    flowbot(&args)
}

/// The LLM call records of a `run --json` report's `history`.
fn llm_records(report: &Value) -> Vec<Value> {
    report["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {report}"))
        .clone()
}

#[test]
fn the_in_memory_run_records_each_llm_call_in_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_dir(tmp.path());
    let dir = dir.to_str().unwrap();
    let info = flowbot(&["model", "info", "--model", dir, "--json"]).json();
    let vars = order();
    let run = run_confirmation(dir, &vars, &["--json"]);
    run.assert_success();
    let report = run.json();
    assert_eq!(report["status"], "completed", "{report}");
    let records = llm_records(&report);
    assert_eq!(records.len(), 1, "{report}");
    let record = &records[0];
    assert!(
        record["at_ms"].as_u64().unwrap() > 1_700_000_000_000,
        "{record}"
    );
    let call = &record["entry"];
    assert_eq!(call["kind"], "llm_called");
    assert_eq!(call["node"], "write_confirmation_en");
    assert_eq!(call["attempt"], 1);
    assert!(call["activation"].is_u64(), "{call}");
    assert!(
        call["prompt"].as_str().unwrap().contains("SO-1001"),
        "{call}"
    );
    assert_eq!(
        call["output"]["value"],
        report["variables"]["confirmation_message"]
    );
    assert_eq!(call["model_id"], "tiny-llama");
    assert_eq!(call["model_sha256"], info["sha256"]);
    assert!(call["prompt_tokens"].as_u64().unwrap() > 20, "{call}");
    assert!(
        call["completion_tokens"].is_u64() && call["elapsed_ms"].is_u64(),
        "{call}"
    );

    let human = run_confirmation(dir, &vars, &[]);
    human.assert_success();
    assert!(
        human.stdout.contains("llm write_confirmation_en: "),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("model tiny-llama"),
        "{}",
        human.stdout
    );

    // The durable engine reports the same record, and keeps it in its store.
    let store = tmp.path().join("store");
    let durable = run_confirmation(dir, &vars, &["--json", "--store", store.to_str().unwrap()]);
    durable.assert_success();
    let durable = durable.json();
    let durable_records = llm_records(&durable);
    assert_eq!(durable_records.len(), 1, "{durable}");
    let durable_call = &durable_records[0]["entry"];
    for field in [
        "kind",
        "node",
        "attempt",
        "prompt",
        "output",
        "model_id",
        "model_sha256",
        "prompt_tokens",
        "completion_tokens",
    ] {
        assert_eq!(durable_call[field], call[field], "{field}");
    }
    let stored = flowbot(&[
        "history",
        durable["id"].as_str().unwrap(),
        "--json",
        "--store",
        store.to_str().unwrap(),
    ]);
    stored.assert_success();
    let stored = stored.json();
    assert!(
        stored
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == &durable_records[0]),
        "{stored}"
    );
}
