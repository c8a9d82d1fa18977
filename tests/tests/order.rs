//! The shipped sales-order process: the YAML and the BPMN file run to the same path, with the
//! review decided by the decision table `workflows/order_review.dmn`.

use flowbot_e2e::flowbot;

const SMALL_ORDER: &[&str] = &[
    "order_received",
    "import_order",
    "confirm_order",
    "review_policy",
    "amount_check",
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
];

/// Runs the order process with its rules, the clerks played by `--auto-complete` (the shipping
/// clerk fills in the shipment, which rule 6 needs for the freight charge).
fn run(file: &str, vars: &str) -> serde_json::Value {
    let out = flowbot(&[
        "run",
        file,
        "--vars",
        vars,
        "--auto-complete",
        "--task-output",
        r#"ship_order={"shipment": {"carrier": "DHL", "weight_kg": 12.5}}"#,
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{file}: {}", out.stderr);
    out.json()
}

fn path(report: &serde_json::Value) -> Vec<String> {
    report["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn yaml_and_bpmn_order_processes_run_to_the_same_path() {
    let vars = r#"{"order_id": "SO-1", "customer": "ACME", "amount": 500, "currency": "EUR", "paid": false}"#;
    let mut large = SMALL_ORDER.to_vec();
    large.insert(5, "review_order");
    for file in [
        "workflows/order_processing.yaml",
        "workflows/order_processing.bpmn",
    ] {
        let small = run(file, vars);
        assert_eq!(small["status"], "completed", "{file}");
        assert_eq!(path(&small), SMALL_ORDER, "{file}");
        assert_eq!(small["variables"]["status"], "shipped", "{file}");
        assert_eq!(small["variables"]["needs_review"], false, "{file}");
        // The process's own rules ran (rules/ beside the workflows folder): rule 6, DHL,
        // 4.90 + 13 kg x 1.10.
        assert_eq!(small["variables"]["freight_charge"], "19.20", "{file}");
        let big = run(file, &vars.replace("500", "20000"));
        assert_eq!(path(&big), large, "{file}");
        assert_eq!(big["variables"]["needs_review"], true, "{file}");
        // A gold customer's order of the same amount needs no review (the table's first rules).
        let gold = run(
            file,
            &vars.replace("500", r#"20000, "customer_tier": "gold""#),
        );
        assert_eq!(path(&gold), SMALL_ORDER, "{file}");
    }
}

#[test]
fn shipped_workflows_check_clean() {
    let out = flowbot(&["check", "workflows"]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(": error: "), "{}", out.stdout);
}

#[test]
fn order_process_waits_for_its_first_job_without_auto_complete() {
    let out = flowbot(&[
        "run",
        "workflows/order_processing.bpmn",
        "--vars",
        r#"{"amount": 500}"#,
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "waiting");
    assert_eq!(report["waiting_on"][0]["node"], "import_order");
    assert_eq!(report["waiting_on"][0]["kind"], "job");
    assert_eq!(report["waiting_on"][0]["handler"], "import_order");
}

#[test]
fn the_review_table_decides_from_the_command_line() {
    let decide = |vars: &str| {
        let out = flowbot(&[
            "decide",
            "workflows/order_review.dmn",
            "--vars",
            vars,
            "--json",
        ]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.json()
    };
    let gold = decide(r#"{"customer_tier": "gold", "amount": 60000}"#);
    assert_eq!(gold["decision"], "order_review");
    assert_eq!(gold["result"], true);
    assert_eq!(gold["matched"][0]["rule_id"], "gold_large");
    let plain = decide(r#"{"amount": 500}"#);
    assert_eq!(plain["result"], false);
    assert_eq!(plain["matched"][0]["rule_id"], "any_other");
    let out = flowbot(&[
        "decide",
        "workflows/order_review.dmn",
        "--vars",
        r#"{"customer_tier": "bronze", "amount": 5}"#,
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("workflows/order_review.dmn:")
            && out
                .stderr
                .contains("is \"bronze\", which its input values do not allow"),
        "{}",
        out.stderr
    );
}
