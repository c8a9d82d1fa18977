//! `flowbot check`, `run` and `graph` as a user sees them: output, exit codes, bad input.

use flowbot_e2e::{flowbot, repo_root};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("temp file written");
    path
}

fn bpmn(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
  <process id="p" isExecutable="true">
{body}
  </process>
</definitions>
"#
    )
}

const SCRIPTED: &str = r#"    <startEvent id="s"/>
    <sequenceFlow id="f1" sourceRef="s" targetRef="calc"/>
    <scriptTask id="calc" scriptFormat="rhai"><script>let total = amount * 2;</script></scriptTask>
    <sequenceFlow id="f2" sourceRef="calc" targetRef="ask"/>
    <userTask id="ask"/>
    <sequenceFlow id="f3" sourceRef="ask" targetRef="e"/>
    <endEvent id="e"/>"#;

fn path_of(report: &Value) -> Vec<&str> {
    report["path"]
        .as_array()
        .expect("path array")
        .iter()
        .map(|v| v.as_str().expect("ids"))
        .collect()
}

#[test]
fn run_json_reports_one_object_with_path_variables_and_waits() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.bpmn", &bpmn(SCRIPTED));
    let file = file.to_str().unwrap();

    let waiting = flowbot(&["run", file, "--vars", r#"{"amount": 21}"#, "--json"]);
    assert_eq!(waiting.code, Some(0), "{}", waiting.stderr);
    let report = waiting.json();
    assert_eq!(report["status"], "waiting");
    assert_eq!(path_of(&report), ["s", "calc"]);
    assert_eq!(report["variables"]["total"], 42);
    assert_eq!(report["waiting_on"][0]["node"], "ask");
    assert_eq!(report["waiting_on"][0]["kind"], "user");
    assert!(report["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(report["incidents"], Value::Array(Vec::new()));

    let done = flowbot(&[
        "run",
        file,
        "--vars",
        r#"{"amount": 1}"#,
        "--auto-complete",
        "--json",
    ]);
    assert_eq!(done.code, Some(0), "{}", done.stderr);
    let report = done.json();
    assert_eq!(report["status"], "completed");
    assert_eq!(path_of(&report), ["s", "calc", "ask", "e"]);
}

#[test]
fn failing_script_fails_the_run_with_an_incident_position() {
    let dir = tempfile::tempdir().unwrap();
    let body = SCRIPTED.replace("let total = amount * 2;", "let total = missing + 1;");
    let file = write(dir.path(), "p.bpmn", &bpmn(&body));
    let out = flowbot(&["run", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, Some(1));
    let report = out.json();
    assert_eq!(report["status"], "failed");
    let incident = &report["incidents"][0];
    assert_eq!(incident["node"], "calc");
    assert!(
        incident["message"].as_str().unwrap().contains("missing"),
        "{incident}"
    );
    // The script text starts on line 6, column 55 (after `<script>`); `missing` is its 13th
    // character.
    let at = incident["at"].as_str().unwrap();
    assert!(at.ends_with("p.bpmn:6:67"), "{at}");
}

#[test]
fn invalid_input_exits_1_with_diagnostics_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(
        dir.path(),
        "broken.bpmn",
        "<definitions><process id=\"p\"><startEvent id=\"s\">",
    );
    let out = flowbot(&["run", broken.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, Some(1));
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", out.stdout);
    assert!(out.stderr.contains("broken.bpmn:1:"), "{}", out.stderr);

    let good = write(dir.path(), "p.bpmn", &bpmn(SCRIPTED));
    let out = flowbot(&["run", good.to_str().unwrap(), "--vars", "[1, 2]"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("--vars must be a JSON object"),
        "{}",
        out.stderr
    );

    let out = flowbot(&["run", dir.path().join("absent.bpmn").to_str().unwrap()]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("cannot read the file"),
        "{}",
        out.stderr
    );
}

#[test]
fn foreign_scripts_and_unsupported_elements_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let python = SCRIPTED.replace("scriptFormat=\"rhai\"", "scriptFormat=\"python\"");
    let file = write(dir.path(), "py.bpmn", &bpmn(&python));
    let out = flowbot(&["run", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("error: not Rhai: python script in calc [calc]"),
        "{}",
        out.stderr
    );

    let unbound = r#"    <startEvent id="s"/>
    <sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
    <businessRuleTask id="g"/>
    <sequenceFlow id="f2" sourceRef="g" targetRef="e"/>
    <endEvent id="e"/>"#;
    let file = write(dir.path(), "unbound.bpmn", &bpmn(unbound));
    let out = flowbot(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains("not supported yet: businessRuleTask without a rule g at "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unbound.bpmn:6:5"), "{}", out.stderr);
    // `check` only warns about it.
    let out = flowbot(&["check", file.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("warning: not supported yet: businessRuleTask without a rule g [g]"),
        "{}",
        out.stdout
    );
}

#[test]
fn check_walks_folders_sorts_diagnostics_and_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.bpmn", &bpmn(SCRIPTED));
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    let bad = SCRIPTED.replace("targetRef=\"e\"", "targetRef=\"nowhere\"");
    write(&dir.path().join("nested"), "bad.bpmn", &bpmn(&bad));
    write(dir.path(), "notes.txt", "not a process");

    let out = flowbot(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.contains(": error: ") || l.contains(": warning: ")),
        "{lines:?}"
    );
    let key = |line: &&str| -> (String, u32, u32) {
        let mut parts = line.splitn(4, ':');
        let file = parts.next().unwrap_or_default().to_string();
        let number = |p: Option<&str>| p.and_then(|n| n.parse().ok()).unwrap_or(0);
        (file, number(parts.next()), number(parts.next()))
    };
    let mut sorted = lines.clone();
    sorted.sort_by_key(key);
    assert_eq!(
        lines, sorted,
        "diagnostics are sorted by file, line and column"
    );
    assert!(
        out.stdout
            .contains("bad.bpmn:9:5: error: sequence flow `f3` has unknown target `nowhere` [f3]"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("checked 2 file(s)"), "{}", out.stderr);

    let out = flowbot(&["check", dir.path().join("good.bpmn").to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.bpmn", &bpmn(SCRIPTED));
    let file = file.to_str().unwrap();
    let dot = flowbot(&["graph", file]);
    assert_eq!(dot.code, Some(0), "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph \"p\" {"), "{}", dot.stdout);
    assert!(
        dot.stdout.contains("\"calc\" -> \"ask\";"),
        "{}",
        dot.stdout
    );
    let mermaid = flowbot(&["graph", file, "--format", "mermaid"]);
    assert_eq!(mermaid.code, Some(0), "{}", mermaid.stderr);
    assert!(
        mermaid.stdout.starts_with("flowchart LR\n"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid.stdout.contains("calc --> ask"),
        "{}",
        mermaid.stdout
    );
    let wrong = flowbot(&["graph", file, "--format", "png"]);
    assert_eq!(wrong.code, Some(2), "clap rejects unknown formats");
}

#[test]
fn logs_never_reach_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let body = SCRIPTED.replace("let total = amount * 2;", "let total = missing + 1;");
    let file = write(dir.path(), "p.bpmn", &bpmn(&body));
    let out = flowbot(&["run", file.to_str().unwrap(), "--json"]);
    out.json();
    assert!(
        out.stderr.contains("incident"),
        "the incident is logged on stderr: {}",
        out.stderr
    );
    assert!(repo_root().join("Cargo.toml").is_file());
}

#[test]
fn schema_prints_the_yaml_json_schema() {
    let out = flowbot(&["schema"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let schema = out.json();
    assert!(
        schema.get("$schema").is_some() || schema.get("type").is_some(),
        "{schema}"
    );
}

#[test]
fn check_hands_rule_scripts_to_the_rules_checker() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.rhai", "let limit = 10;\nlimit > 5\n");
    write(dir.path(), "bad.rhai", "let x = ;\n");
    let out = flowbot(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stdout.contains("bad.rhai:1:9: error: "),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("good.rhai"), "{}", out.stdout);
    let shipped = flowbot(&["check", "rules", "workflows"]);
    assert_eq!(
        shipped.code,
        Some(0),
        "{}{}",
        shipped.stdout,
        shipped.stderr
    );
}

#[test]
fn run_with_rules_enforces_the_order_rules_and_prints_their_effects() {
    let root = repo_root();
    let workflow = root.join("workflows/order_processing.yaml");
    let rules = root.join("rules");
    let vars = r#"{"order_id": "SO-9", "customer": "ACME", "amount": 99.5, "currency": "EUR", "paid": false,
                   "shipment": {"carrier": "UPS", "weight_kg": 4}}"#;
    let out = flowbot(&[
        "run",
        workflow.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--vars",
        vars,
        "--auto-complete",
        "--json",
    ]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "completed", "{report}");
    // Rule 6, UPS: 5.50 + 4 kg x 0.95 = 9.30.
    assert_eq!(report["variables"]["freight_charge"], "9.30");
    let effects = report["effects"].as_array().expect("effects");
    let told_customer: Vec<&str> = effects
        .iter()
        .filter(|e| e["kind"] == "notify" && e["receiver"] == "ACME")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(told_customer[0], "Your order SO-9 is now confirmed.");
    assert!(
        told_customer[1].starts_with("Invoice INV-")
            && told_customer[1].ends_with("for order SO-9: 99.50 EUR.")
    );
    // Then the confirmation the language model wrote (the tiny test model's text), and the
    // status changes.
    assert!(!told_customer[2].is_empty());
    assert_eq!(
        told_customer[3..],
        [
            "Your order SO-9 is now awaiting shipment.",
            "Your order SO-9 is now shipped."
        ]
    );
    let events: Vec<&str> = effects
        .iter()
        .filter(|e| e["kind"] == "emit")
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["send_invoice", "freight_charge_updated"]);

    let without = flowbot(&[
        "run",
        workflow.to_str().unwrap(),
        "--vars",
        vars,
        "--auto-complete",
        "--json",
    ]);
    assert_eq!(
        without.json()["effects"],
        report["effects"],
        "without --rules the process's own rules still run (rules/ beside its folder)"
    );
}

#[test]
fn run_with_rules_on_the_durable_engine_prints_the_same_effects_and_records_them() {
    let root = repo_root();
    let workflow = root.join("workflows/order_processing.yaml");
    let rules = root.join("rules");
    let store = tempfile::tempdir().unwrap();
    let vars = r#"{"order_id": "SO-9", "customer": "ACME", "amount": 99.5, "currency": "EUR", "paid": false,
                   "shipment": {"carrier": "UPS", "weight_kg": 4}}"#;
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            workflow.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
            "--vars",
            vars,
        ];
        args.extend_from_slice(&["--auto-complete", "--json"]);
        args.extend_from_slice(extra);
        flowbot(&args)
    };
    let in_memory = run(&[]);
    let durable = run(&[
        "--store",
        store.path().to_str().unwrap(),
        "--clock",
        "virtual",
    ]);
    assert_eq!(
        durable.code,
        Some(0),
        "{}{}",
        durable.stdout,
        durable.stderr
    );
    let report = durable.json();
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["variables"]["freight_charge"], "9.30");
    assert_eq!(report["effects"], in_memory.json()["effects"]);
    let id = report["id"].as_str().unwrap();
    let history = flowbot(&[
        "history",
        id,
        "--json",
        "--store",
        store.path().to_str().unwrap(),
    ]);
    let recorded: Vec<Value> = history
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entry"]["kind"] == "rule_effect")
        .map(|r| r["entry"]["effect"].clone())
        .collect();
    assert_eq!(Value::Array(recorded), report["effects"]);
}

#[test]
fn import_starts_the_orders_in_the_order_of_rule_2() {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let order = |id: &str, created: &str, paid: &str| {
        format!(
            r#"{{"order_id": "{id}", "customer": "ACME", "amount": 10, "currency": "EUR", "paid": true,
                "shipment": {{"carrier": "UPS", "weight_kg": 1}}, "created_at": "{created}", "paid_at": "{paid}"}}"#
        )
    };
    let batch = format!(
        "[{}, {}]",
        order(
            "FIRST-CREATED",
            "2026-11-29T08:00:00Z",
            "2026-11-29T12:00:00Z"
        ),
        order("FIRST-PAID", "2026-11-29T09:00:00Z", "2026-11-29T10:00:00Z")
    );
    let orders = write(dir.path(), "orders.json", &batch);
    let import = |sort_by: &str| {
        let out = flowbot(&[
            "import",
            orders.to_str().unwrap(),
            "--workflow",
            root.join("workflows/order_processing.yaml")
                .to_str()
                .unwrap(),
            "--rules",
            root.join("rules").to_str().unwrap(),
            "--sort-by",
            sort_by,
            "--auto-complete",
        ]);
        assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
        out.stdout
    };
    let created = import("created");
    let paid = import("paid");
    assert!(
        created.starts_with("\"FIRST-CREATED\" -> order_processing-"),
        "{created}"
    );
    assert!(
        paid.starts_with("\"FIRST-PAID\" -> order_processing-"),
        "{paid}"
    );
    assert!(
        paid.lines().all(|line| line.ends_with(": completed")),
        "{paid}"
    );
}

#[test]
fn run_refuses_a_rules_folder_with_a_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "broken.rhai", "let x = ;\n");
    let workflow = repo_root().join("workflows/order_processing.yaml");
    let out = flowbot(&[
        "run",
        workflow.to_str().unwrap(),
        "--rules",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("broken.rhai:1:9: error: rule `broken` does not compile"),
        "{}",
        out.stderr
    );
}

#[test]
fn check_reports_missing_and_broken_rules_attached_in_a_workflow() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    write(&dir.path().join("rules"), "present.rhai", "true\n");
    let workflow = write(
        &dir.path().join("workflows"),
        "w.yaml",
        "process: p\nnodes:\n  s: { start: ~, next: t }\n  t:\n    user: ~\n    rules:\n      - { on: guard_complete, file: present.rhai }\n      - { on: leave, file: absent.rhai }\n      - { on: enter, script: 'let x = ;' }\n    next: e\n  e: { end: ~ }\n",
    );
    let out = flowbot(&["check", workflow.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].contains("w.yaml:8:7: error: rule file `absent.rhai` is not in the rules folder"),
        "{}",
        out.stdout
    );
    assert!(lines[1].ends_with("w.yaml:9:7: error: inline rule does not compile (1:9 inside the rule): Unexpected ';' [t]"), "{}", out.stdout);
}

#[test]
fn task_output_fills_in_what_a_clerk_enters_and_the_order_rules_use_it() {
    let vars = r#"{"order_id": "SO-1001", "customer": "ACME Ltd", "amount": 1234.5, "currency": "CNY", "paid": false}"#;
    let base = [
        "run",
        "workflows/order_processing.yaml",
        "--rules",
        "rules",
        "--auto-complete",
        "--json",
        "--vars",
        vars,
    ];

    // Without shipment information the freight rule (rule 6) cannot price the shipment.
    let without = flowbot(&base);
    assert_eq!(without.code, Some(1), "{}", without.stderr);
    let report = without.json();
    assert_eq!(report["status"], "failed");
    assert_eq!(report["incidents"][0]["node"], "ship_order");

    let shipment = r#"ship_order={"shipment": {"carrier": "DHL", "weight_kg": 12.5}}"#;
    let with = flowbot(&[&base[..], &["--task-output", shipment]].concat());
    assert_eq!(with.code, Some(0), "{}", with.stderr);
    let report = with.json();
    assert_eq!(report["status"], "completed");
    assert_eq!(report["variables"]["shipment"]["carrier"], "DHL");
    assert!(
        report["variables"]["freight_charge"].is_string(),
        "{report}"
    );

    let bad = flowbot(&[&base[..], &["--task-output", "ship_order"]].concat());
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("expected NODE=JSON"), "{}", bad.stderr);
}

/// A decision table with two outputs and a catch-all rule, as SpiffWorkflow's modeler draws it.
const SPIFF_DECISION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="drd" name="DRD" namespace="http://camunda.org/schema/1.0/dmn">
  <decision id="answers" name="Answers">
    <decisionTable id="table" hitPolicy="FIRST">
      <input id="in" label="question"><inputExpression id="ie" typeRef="string"><text>question</text></inputExpression></input>
      <output id="o1" label="Answer" name="answer" typeRef="string" />
      <output id="o2" label="Sure" name="sure" typeRef="boolean" />
      <rule id="r1"><inputEntry id="e1"><text>"X"</text></inputEntry><outputEntry id="a1"><text>"Y"</text></outputEntry><outputEntry id="b1"><text>true</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="e2"><text>-</text></inputEntry><outputEntry id="a2"><text>"unknown"</text></outputEntry><outputEntry id="b2"><text>false</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"#;

/// A SpiffWorkflow business-rule task that calls the decision `answers`.
const SPIFF_PROCESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="rules" />
    <bpmn:businessRuleTask id="rules">
      <bpmn:extensionElements><spiffworkflow:calledDecisionId>answers</spiffworkflow:calledDecisionId></bpmn:extensionElements>
    </bpmn:businessRuleTask>
    <bpmn:sequenceFlow id="f2" sourceRef="rules" targetRef="e" />
    <bpmn:endEvent id="e" />
  </bpmn:process>
</bpmn:definitions>
"#;

#[test]
fn a_spiff_business_rule_task_merges_the_decision_outputs_into_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "spiff.bpmn", SPIFF_PROCESS);
    write(dir.path(), "answers.dmn", SPIFF_DECISION);
    for (question, answer, sure) in [("X", "Y", true), ("Q", "unknown", false)] {
        let vars = format!(r#"{{"question": "{question}"}}"#);
        let out = flowbot(&["run", file.to_str().unwrap(), "--vars", &vars, "--json"]);
        out.assert_success();
        let report = out.json();
        assert_eq!(path_of(&report), ["s", "rules", "e"]);
        assert_eq!(report["variables"]["answer"], answer, "{report}");
        assert_eq!(report["variables"]["sure"], sure, "{report}");
        assert!(report["variables"].get("answers").is_none(), "{report}");
    }
}

#[test]
fn run_deploys_the_decisions_named_with_decisions_and_refuses_broken_ones() {
    // SpiffWorkflow's layout: the decision in a `dmn/` folder below the process.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "spiff.bpmn", SPIFF_PROCESS);
    std::fs::create_dir(dir.path().join("dmn")).unwrap();
    write(&dir.path().join("dmn"), "answers.dmn", SPIFF_DECISION);
    let file = file.to_str().unwrap();
    let vars = r#"{"question": "X"}"#;

    let out = flowbot(&["run", file, "--vars", vars, "--json"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("no decision `answers` is deployed"),
        "{}",
        out.stderr
    );

    let folder = dir.path().join("dmn");
    let out = flowbot(&[
        "run",
        file,
        "--vars",
        vars,
        "--json",
        "--decisions",
        folder.to_str().unwrap(),
    ]);
    out.assert_success();
    assert_eq!(out.json()["variables"]["answer"], "Y");

    // A named decision that does not check is reported with its position, and nothing runs.
    let broken = SPIFF_DECISION.replace(r#"hitPolicy="FIRST""#, "");
    let broken = write(&folder, "answers.dmn", &broken);
    let out = flowbot(&[
        "run",
        file,
        "--vars",
        vars,
        "--decisions",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("answers.dmn:")
            && out.stderr.contains("hit policy UNIQUE forbids")
            && out
                .stderr
                .contains("a decision file given with --decisions does not check"),
        "{}",
        out.stderr
    );
    let out = flowbot(&["run", file, "--decisions", "missing.dmn"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("missing.dmn:1:1: error: cannot read the file"),
        "{}",
        out.stderr
    );
}
