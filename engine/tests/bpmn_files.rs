//! Data-driven tests of the BPMN front end over `tests/data/bpmn/` and the shipped order process.
//!
//! Each `valid/*.bpmn` must parse without errors and each `invalid/*.bpmn` with at least one;
//! every file's diagnostics must equal its `.expected` file (one diagnostic per line). Run with
//! `UPDATE_EXPECT=1` to rewrite the `.expected` files after a deliberate change, then review the
//! diff.

use flowbot_engine::bpmn::{parse_bpmn, parse_bpmn_file};
use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::model::{DecisionResultMapping, NodeKind, TaskKind};
use std::fs;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bpmn")
}

fn bpmn_files(folder: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir().join(folder))
        .expect("data folder exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bpmn"))
        .collect();
    files.sort();
    files
}

/// Parses every file of `folder` and compares its diagnostics with the recorded ones; returns the
/// mismatches.
fn check_folder(folder: &str, expect_errors: bool) -> Vec<String> {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let files = bpmn_files(folder);
    assert!(!files.is_empty(), "no files in {folder}");
    for file in files {
        let text = fs::read(&file).expect("readable file");
        // Diagnostics name the file relative to the data folder, so the output is stable.
        let label = Path::new(folder).join(file.file_name().expect("file name"));
        let (definitions, diagnostics) = parse_bpmn(&label, &text);
        let actual: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        if has_errors(&diagnostics) != expect_errors {
            failures.push(format!(
                "{}: expected errors: {expect_errors}, got:\n{actual}",
                label.display()
            ));
        }
        if !expect_errors && definitions.is_none() {
            failures.push(format!("{}: no definitions", label.display()));
        }
        let expected_path = file.with_extension("expected");
        if update {
            fs::write(&expected_path, &actual).expect("writable expectation");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "{}: diagnostics differ\n--- expected ({})\n{expected}--- actual\n{actual}",
                label.display(),
                expected_path.display()
            ));
        }
    }
    failures
}

#[test]
fn valid_files_parse_without_errors_and_with_the_recorded_warnings() {
    let failures = check_folder("valid", false);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_files_give_the_recorded_diagnostics() {
    let failures = check_folder("invalid", true);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn order_process_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/order_processing.bpmn")
}

#[test]
fn shipped_order_process_parses_with_the_expected_nodes() {
    let (definitions, diagnostics) = parse_bpmn_file(&order_process_path());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let definitions = definitions.expect("definitions");
    assert_eq!(definitions.processes.len(), 1);
    let process = &definitions.processes[0];
    assert_eq!(process.id, "order_processing");
    assert_eq!(process.name.as_deref(), Some("Sales order processing"));
    assert!(process.executable);
    let ids: Vec<&str> = process.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "order_received",
            "order_from_email",
            "import_order",
            "confirm_order",
            "review_policy",
            "amount_check",
            "review_order",
            "review_merge",
            "invoice_and_notify",
            "send_invoice",
            "notify_customer",
            "invoice_and_notify_done",
            "warehouse_inbound",
            "mark_awaiting_shipment",
            "ship_order",
            "mark_shipped",
            "accounting_period",
            "freight_settlement",
            "order_done",
        ]
    );
    let node = |id: &str| process.nodes.iter().find(|n| n.id == id).expect("node");
    let handler = |id: &str| match &node(id).kind {
        NodeKind::Task(activity) => match &activity.body {
            TaskKind::Service { handler } => handler.clone(),
            other => panic!("{id} is {other:?}"),
        },
        other => panic!("{id} is {other:?}"),
    };
    assert_eq!(handler("import_order").as_deref(), Some("import_order"));
    assert_eq!(
        handler("accounting_period").as_deref(),
        Some("book_accounting_period")
    );
    assert_eq!(
        handler("freight_settlement").as_deref(),
        Some("settle_freight")
    );
    assert_eq!(
        node("amount_check").default_flow.as_deref(),
        Some("to_merge")
    );
    let to_review = process
        .flows
        .iter()
        .find(|f| f.id == "to_review")
        .expect("to_review flow");
    assert_eq!(
        (to_review.source.as_str(), to_review.target.as_str()),
        ("amount_check", "review_order")
    );
    assert_eq!(
        to_review.condition.as_ref().map(|c| c.source.as_str()),
        Some("needs_review")
    );
    match &node("review_policy").kind {
        NodeKind::Task(activity) => match &activity.body {
            TaskKind::BusinessRule {
                script: None,
                decision: Some(call),
            } => {
                assert_eq!(call.decision, "order_review");
                assert_eq!(call.result_variable.as_deref(), Some("needs_review"));
                assert_eq!(call.mapping, DecisionResultMapping::SingleEntry);
            }
            other => panic!("review_policy is {other:?}"),
        },
        other => panic!("review_policy is {other:?}"),
    }
    match &node("confirm_order").kind {
        NodeKind::Task(activity) => match &activity.body {
            TaskKind::Script {
                script: Some(script),
            } => {
                assert!(script.source.starts_with("let status = \"confirmed\";"));
                assert!(script.source.contains("let language = "));
                assert_eq!(script.language.as_deref(), Some("rhai"));
            }
            other => panic!("confirm_order is {other:?}"),
        },
        other => panic!("confirm_order is {other:?}"),
    }
    assert!(matches!(node("ship_order").kind, NodeKind::Task(ref a) if a.body == TaskKind::User));
    assert_eq!(
        node("review_order").name.as_deref(),
        Some("Review large order")
    );
}
