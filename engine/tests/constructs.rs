//! The BPMN constructs beyond tasks, gateways and subprocesses, each written twice — in YAML and
//! in BPMN (`tests/data/constructs/NAME.yaml` and `NAME.bpmn`, the same ids) — and run through
//! the same scenario: both files must take the expected path and end with the same variables.

use flowbot_engine::bpmn::parse_bpmn_file;
use flowbot_engine::executor::{Instance, InstanceStatus, NoHooks, WaitKind};
use flowbot_engine::graph::{compile, CompiledProcess};
use flowbot_engine::model::Definitions;
use flowbot_engine::script::ScriptRuntime;
use flowbot_engine::yaml::parse_yaml_bytes;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/constructs")
        .join(name)
}

fn definitions(file: &str) -> Definitions {
    let path = data(file);
    let (defs, diagnostics) = if file.ends_with(".bpmn") {
        parse_bpmn_file(&path)
    } else {
        parse_yaml_bytes(&path, &std::fs::read(&path).expect("readable"))
    };
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{file}: {errors:#?}");
    defs.expect("definitions")
}

fn compiled(file: &str) -> CompiledProcess {
    let (process, diagnostics) = compile(
        &definitions(file),
        None,
        &Arc::new(ScriptRuntime::default()),
    );
    let problems: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error() || d.message.starts_with("not supported"))
        .map(|d| d.to_string())
        .collect();
    assert!(problems.is_empty(), "{file}: {problems:#?}");
    process.expect("compiles")
}

fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// One instance driven step by step, as a runtime would.
struct Run {
    process: CompiledProcess,
    instance: Instance,
    file: String,
}

impl Run {
    fn start(file: &str, variables: Value) -> Run {
        let process = compiled(file);
        let (instance, _) =
            Instance::start(&process, "i-1", object(variables), &NoHooks).expect("starts");
        Run {
            process,
            instance,
            file: file.to_string(),
        }
    }

    /// The activation of the open wait at `node`.
    fn wait_at(&self, node: &str) -> u64 {
        self.instance
            .waits()
            .iter()
            .find(|w| w.node == node)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no wait at `{node}`; waiting: {:?}; incidents: {:?}",
                    self.file,
                    self.instance
                        .waits()
                        .iter()
                        .map(|w| &w.node)
                        .collect::<Vec<_>>(),
                    self.instance.incidents()
                )
            })
            .activation
    }

    fn complete(&mut self, node: &str, outputs: Value) -> &mut Self {
        let activation = self.wait_at(node);
        self.instance
            .complete(&self.process, activation, object(outputs), &NoHooks)
            .unwrap_or_else(|e| panic!("{}: completing {node}: {e}", self.file));
        self
    }

    /// Delivers the message `name` to the wait that expects it.
    fn message(&mut self, name: &str) -> &mut Self {
        let wait = self
            .instance
            .waits()
            .iter()
            .find(|w| matches!(&w.kind, WaitKind::Message { name: Some(n), .. } if n == name))
            .unwrap_or_else(|| panic!("{}: nobody waits for message {name}", self.file))
            .node
            .clone();
        self.complete(&wait, json!({}))
    }

    fn signal(&mut self, name: &str) -> &mut Self {
        let wait = self
            .instance
            .waits()
            .iter()
            .find(|w| matches!(&w.kind, WaitKind::Signal { name: Some(n) } if n == name))
            .unwrap_or_else(|| panic!("{}: nobody waits for signal {name}", self.file))
            .node
            .clone();
        self.complete(&wait, json!({}))
    }

    fn throw_error(&mut self, node: &str, code: &str) -> &mut Self {
        let activation = self.wait_at(node);
        self.instance
            .throw_error(&self.process, activation, Some(code), &NoHooks)
            .unwrap_or_else(|e| panic!("{}: error at {node}: {e}", self.file));
        self
    }

    fn tick(&mut self, node: &str) -> &mut Self {
        let activation = self.wait_at(node);
        self.instance
            .tick_boundary(&self.process, activation, &NoHooks)
            .unwrap_or_else(|e| panic!("{}: ticking {node}: {e}", self.file));
        self
    }

    fn set(&mut self, variables: Value) -> &mut Self {
        self.instance
            .update_variables(&self.process, object(variables), &NoHooks)
            .unwrap_or_else(|e| panic!("{}: setting variables: {e}", self.file));
        self
    }

    fn path(&self) -> Vec<&str> {
        self.instance.path().iter().map(String::as_str).collect()
    }

    fn assert_path(&self, expected: &[&str]) -> &Self {
        assert_eq!(
            self.path(),
            expected,
            "{}: incidents {:?}",
            self.file,
            self.instance.incidents()
        );
        self
    }

    fn assert_status(&self, status: InstanceStatus) -> &Self {
        assert_eq!(
            self.instance.status(),
            status,
            "{}: incidents {:?}",
            self.file,
            self.instance.incidents()
        );
        self
    }

    fn assert_waiting_at(&self, nodes: &[&str]) -> &Self {
        let mut waiting: Vec<&str> = self
            .instance
            .waits()
            .iter()
            .map(|w| w.node.as_str())
            .collect();
        waiting.sort();
        let mut expected = nodes.to_vec();
        expected.sort();
        assert_eq!(waiting, expected, "{}", self.file);
        self
    }

    fn variable(&self, name: &str) -> Value {
        self.instance
            .variables()
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Runs `scenario` on the YAML and the BPMN file of construct `name`.
fn both(name: &str, scenario: impl Fn(&str)) {
    for extension in ["yaml", "bpmn"] {
        scenario(&format!("{name}.{extension}"));
    }
}

#[test]
fn event_subprocesses_start_on_their_events_interrupting_or_not() {
    both("event_subprocess", |file| {
        let mut run = Run::start(file, json!({"cancelled": false, "reminded": false}));
        run.assert_path(&["start"]).assert_waiting_at(&[
            "work",
            "cancel_requested",
            "remind_start",
        ]);
        // The non-interrupting timer cycle starts the reminder beside the work at every tick
        // (its last occurrence completes the timer).
        run.tick("remind_start");
        run.assert_path(&["start", "remind_start", "remind", "remind_end", "reminder"])
            .assert_waiting_at(&["work", "cancel_requested", "remind_start"])
            .assert_status(InstanceStatus::Waiting);
        run.complete("remind_start", json!({}));
        run.assert_waiting_at(&["work", "cancel_requested"]);
        assert_eq!(run.path().iter().filter(|n| **n == "reminder").count(), 2);
        // The interrupting message ends the work and the process with it.
        run.message("cancel");
        run.assert_path(&[
            "start",
            "remind_start",
            "remind",
            "remind_end",
            "reminder",
            "remind_start",
            "remind",
            "remind_end",
            "reminder",
            "cancel_requested",
            "undo",
            "cancel_end",
            "cancel_handler",
        ])
        .assert_status(InstanceStatus::Completed)
        .assert_waiting_at(&[]);
        assert_eq!(run.variable("cancelled"), json!(true));
        assert_eq!(run.variable("reminded"), json!(true));

        // Without events the process ends normally and disarms its event subprocesses.
        let mut run = Run::start(file, json!({"cancelled": false, "reminded": false}));
        run.complete("work", json!({}));
        run.assert_path(&["start", "work", "done"])
            .assert_status(InstanceStatus::Completed)
            .assert_waiting_at(&[]);
    });
}

#[test]
fn error_and_escalation_event_subprocesses_catch_what_the_scope_throws() {
    both("error_event_subprocess", |file| {
        let mut run = Run::start(file, json!({"notified": false, "informed": false}));
        run.assert_path(&[
            "start",
            "raise_late",
            "escalated",
            "inform",
            "informed",
            "on_escalation",
        ])
        .assert_waiting_at(&["charge"]);
        run.throw_error("charge", "card_declined");
        run.assert_path(&[
            "start",
            "raise_late",
            "escalated",
            "inform",
            "informed",
            "on_escalation",
            "declined",
            "notify",
            "failed",
            "on_failure",
        ])
        .assert_status(InstanceStatus::Completed);
        assert_eq!(run.variable("notified"), json!(true));
        assert_eq!(run.variable("informed"), json!(true));
    });
}

#[test]
fn conditional_events_fire_when_their_condition_becomes_true_and_links_jump() {
    both("conditional_and_link", |file| {
        let mut run = Run::start(
            file,
            json!({"stock": 0, "priority": "normal", "audited": false, "expedited": false}),
        );
        run.assert_path(&["start", "fork"]).assert_waiting_at(&[
            "wait_for_stock",
            "review",
            "urgent",
            "large",
        ]);
        run.set(json!({"stock": 5}));
        run.assert_path(&[
            "start",
            "fork",
            "wait_for_stock",
            "to_packing",
            "packing",
            "pack",
            "packed",
        ])
        .assert_waiting_at(&["review", "urgent", "large"]);
        run.set(json!({"priority": "urgent"}));
        run.assert_path(&[
            "start",
            "fork",
            "wait_for_stock",
            "to_packing",
            "packing",
            "pack",
            "packed",
            "urgent",
            "expedite",
            "expedited",
        ])
        .assert_status(InstanceStatus::Completed);
        assert_eq!(run.variable("audited"), json!(false));
        assert_eq!(run.variable("expedited"), json!(true));

        // A condition that already holds fires at once (in the order the events were armed:
        // the event subprocess with the process); the non-interrupting conditional event
        // subprocess runs once, and not again while its condition stays true.
        let mut run = Run::start(
            file,
            json!({"stock": 150, "priority": "normal", "audited": false, "expedited": false}),
        );
        run.assert_path(&[
            "start",
            "fork",
            "large",
            "audit_task",
            "audit_end",
            "audit",
            "wait_for_stock",
            "to_packing",
            "packing",
            "pack",
            "packed",
        ])
        .assert_waiting_at(&["review", "urgent", "large"]);
        run.set(json!({"stock": 200}));
        assert_eq!(run.path().iter().filter(|n| **n == "audit").count(), 1);
        run.complete("review", json!({}));
        run.assert_status(InstanceStatus::Completed);
    });
}

#[test]
fn standard_loops_repeat_while_their_condition_holds_and_complex_gateways_fire_early() {
    both("loops_and_complex", |file| {
        let mut run = Run::start(
            file,
            json!({"tries": 0, "approved": false, "chosen": false}),
        );
        run.assert_path(&["start", "attempt", "attempt", "attempt"])
            .assert_waiting_at(&["review"]);
        assert_eq!(run.variable("tries"), json!(3));
        run.complete("review", json!({"approved": false}));
        run.assert_waiting_at(&["review"]);
        run.complete("review", json!({"approved": true}));
        run.assert_waiting_at(&["quote_a", "quote_b", "quote_c"]);
        run.complete("quote_b", json!({}));
        run.assert_status(InstanceStatus::Waiting);
        run.assert_waiting_at(&["quote_a", "quote_c"]);
        // The second quote fires the complex gateway; the third is absorbed by it.
        run.complete("quote_a", json!({}));
        assert_eq!(run.variable("chosen"), json!(true));
        run.assert_waiting_at(&["quote_c"])
            .assert_status(InstanceStatus::Waiting);
        run.complete("quote_c", json!({}));
        run.assert_path(&[
            "start",
            "attempt",
            "attempt",
            "attempt",
            "review",
            "review",
            "ask",
            "quote_b",
            "quote_a",
            "two_quotes",
            "choose",
            "done",
            "quote_c",
        ])
        .assert_status(InstanceStatus::Completed);

        // Tested before the first run, a loop whose condition is false does not run at all.
        let run = Run::start(file, json!({"tries": 5, "approved": true, "chosen": false}));
        run.assert_path(&["start", "attempt", "ask"]);
        assert_eq!(run.variable("tries"), json!(6));
    });
}

#[test]
fn multiple_events_take_the_first_trigger_and_parallel_ones_wait_for_all() {
    both("multiple_events", |file| {
        let mut run = Run::start(file, json!({}));
        run.assert_path(&["start"])
            .assert_waiting_at(&["wait_any", "wait_any"]);
        run.signal("cancel_all");
        run.assert_path(&["start", "wait_any"])
            .assert_waiting_at(&["wait_all", "wait_all"]);
        run.message("goods_received");
        run.assert_waiting_at(&["wait_all"]);
        run.signal("invoice_ready");
        run.assert_path(&["start", "wait_any", "wait_all"])
            .assert_waiting_at(&["approve", "chase", "chase"]);
        run.complete("approve", json!({}));
        run.assert_path(&[
            "start", "wait_any", "wait_all", "approve", "announce", "done",
        ])
        .assert_status(InstanceStatus::Completed);

        // Either trigger of the multiple boundary event interrupts the task.
        let mut run = Run::start(file, json!({}));
        run.message("payment")
            .message("goods_received")
            .signal("invoice_ready");
        run.signal("hurry");
        run.assert_path(&["start", "wait_any", "wait_all", "chase", "chased"])
            .assert_status(InstanceStatus::Completed);
    });
}

#[test]
fn compensation_undoes_completed_work_in_reverse_and_cancel_ends_a_transaction() {
    both("compensation", |file| {
        let start = |paid: bool, customer_ok: bool| {
            Run::start(
                file,
                json!({"booked": 0, "mails": 0, "undone": [], "paid": paid, "customer_ok": customer_ok}),
            )
        };
        // A failed payment cancels the transaction: hotel, then flight, are undone.
        let run = start(false, true);
        run.assert_path(&[
            "start",
            "trip_start",
            "book_flight",
            "book_hotel",
            "pay",
            "payment_failed",
            "cancel_hotel",
            "cancel_flight",
            "trip_cancelled",
            "cancelled",
        ])
        .assert_status(InstanceStatus::Completed);
        assert_eq!(run.variable("undone"), json!(["hotel", "flight"]));

        // A paid trip completes; a later compensation throw undoes what completed in the
        // process scope, the transaction's bookings included, the latest first.
        let run = start(true, false);
        run.assert_path(&[
            "start",
            "trip_start",
            "book_flight",
            "book_hotel",
            "pay",
            "trip_booked",
            "book_trip",
            "send_confirmation",
            "customer_check",
            "send_correction",
            "cancel_hotel",
            "cancel_flight",
            "undo_everything",
            "undone_end",
        ])
        .assert_status(InstanceStatus::Completed);
        assert_eq!(run.variable("undone"), json!(["mail", "hotel", "flight"]));

        let run = start(true, true);
        assert_eq!(run.variable("undone"), json!([]));
        run.assert_status(InstanceStatus::Completed);
    });
}

/// The errors `flowbot check` reports for constructs used the wrong way.
fn check_errors(yaml: &str) -> Vec<String> {
    let (defs, mut diagnostics) = flowbot_engine::yaml::parse_yaml(Path::new("misuse.yaml"), yaml);
    if let Some(defs) = defs {
        diagnostics.extend(compile(&defs, None, &Arc::new(ScriptRuntime::default())).1);
    }
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

#[test]
fn misused_constructs_are_errors_with_positions() {
    let cases = [
        (
            "process: p
nodes:
  s: { start: ~, next: work }
  work: { script: \"let x = 1;\", next: e }
  undo: { boundary: { attached_to: work, compensation: true }, next: handler }
  handler: { script: \"let y = 1;\", next: e }
  e: { end: ~ }
",
            "misuse.yaml:6:3: error: compensation handler `handler` has outgoing flows: it runs alone and returns to the compensation that started it [handler]",
        ),
        (
            "process: p
nodes:
  s: { start: ~, next: e }
  e: { end: { cancel: true } }
",
            "misuse.yaml:4:3: error: cancel end event `e` is not inside a transaction [e]",
        ),
        (
            "process: p
nodes:
  s: { start: ~, next: jump }
  jump: { throw: { link: nowhere } }
",
            "misuse.yaml:4:3: error: link throw event `jump` goes to link `nowhere`, which no link catch event of its scope catches [jump]",
        ),
        (
            "process: p
nodes:
  s: { start: ~, next: again }
  again: { script: \"let x = 1;\", loop: true, next: e }
  e: { end: ~ }
",
            "misuse.yaml:4:3: error: the standard loop of `again` has neither a condition nor a maximum: it would never end [again]",
        ),
        (
            "process: p
nodes:
  s: { start: ~, next: e }
  e: { end: ~ }
  esp:
    subprocess:
      event: true
      nodes:
        es: { start: ~, next: ee }
        ee: { end: ~ }
",
            "misuse.yaml:5:3: error: the start event of event subprocess `esp` needs a trigger (message, timer, signal, condition, error or escalation) [esp]",
        ),
        (
            "process: p
nodes:
  s: { start: ~, next: work }
  work: { user: ~, next: e }
  c: { boundary: { attached_to: work, cancel: true }, next: e }
  e: { end: ~ }
",
            "misuse.yaml:5:3: error: cancel boundary event `c` is attached to `work`, which is not a transaction [c]",
        ),
    ];
    for (yaml, expected) in cases {
        let errors = check_errors(yaml);
        assert!(
            errors.iter().any(|e| e == expected),
            "expected {expected}\ngot {errors:#?}"
        );
    }
}

#[test]
fn input_and_output_mappings_give_activities_local_variables() {
    both("io_mapping", |file| {
        let mut run = Run::start(file, json!({"order": {"weight_kg": 12, "country": "DE"}}));
        run.assert_waiting_at(&["quote"]);
        let wait_scope = run.instance.waits()[0].scope;
        let local = run
            .instance
            .scopes()
            .iter()
            .find(|s| s.id == wait_scope)
            .expect("the task's scope");
        assert_eq!(local.variables.get("weight"), Some(&json!(12)));
        assert_eq!(local.variables.get("destination"), Some(&json!("DE")));
        run.complete("quote", json!({"price": 100, "carrier": "DHL"}));
        run.assert_path(&["start", "quote", "label", "done"])
            .assert_status(InstanceStatus::Completed);
        let variables = run.instance.variables();
        let mut names: Vec<&String> = variables.keys().collect();
        names.sort();
        assert_eq!(names, ["freight", "order", "text"], "{file}");
        assert_eq!(run.variable("freight"), json!(110));
        assert_eq!(run.variable("text"), json!("label 12"));
    });
}

#[test]
fn spiff_pre_and_post_scripts_run_around_their_task() {
    let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:manualTask id="m">
      <bpmn:extensionElements>
        <spiffworkflow:preScript>let doubled = amount * 2;</spiffworkflow:preScript>
        <spiffworkflow:postScript>total = doubled + extra;</spiffworkflow:postScript>
      </bpmn:extensionElements>
    </bpmn:manualTask>
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="m" />
    <bpmn:sequenceFlow id="f2" sourceRef="m" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;
    let (defs, diagnostics) =
        flowbot_engine::bpmn::parse_bpmn(Path::new("spiff.bpmn"), text.as_bytes());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (process, diagnostics) = compile(
        &defs.expect("parses"),
        None,
        &Arc::new(ScriptRuntime::default()),
    );
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    let process = process.expect("compiles");
    let (mut instance, _) = Instance::start(
        &process,
        "i",
        object(json!({"amount": 4, "total": 0})),
        &NoHooks,
    )
    .expect("starts");
    let wait = instance.waits()[0].activation;
    instance
        .complete(&process, wait, object(json!({"extra": 1})), &NoHooks)
        .expect("completes");
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert_eq!(instance.variables().get("total"), Some(&json!(9)));
    assert_eq!(instance.variables().get("doubled"), Some(&json!(8)));
}

#[test]
fn a_failing_input_mapping_is_an_incident_at_its_position() {
    let text = r#"process: broken_mapping
nodes:
  start: { start: ~, next: quote }
  quote:
    service: shipping_quote
    inputs:
      weight: order.weight_kg * 2
    next: done
  done: { end: ~ }
"#;
    let (defs, diagnostics) = parse_yaml_bytes(Path::new("broken.yaml"), text.as_bytes());
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    let (process, diagnostics) = compile(
        &defs.expect("parses"),
        None,
        &Arc::new(ScriptRuntime::default()),
    );
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    let process = process.expect("compiles");
    // `order` is missing: the mapping fails when the task starts.
    let (instance, _) = Instance::start(&process, "i", Map::new(), &NoHooks).expect("starts");
    assert_eq!(instance.status(), InstanceStatus::Failed);
    let incident = &instance.incidents()[0];
    assert_eq!(incident.node, "quote");
    assert!(incident.message.contains("input mapping"), "{incident:?}");
    assert!(incident.at.starts_with("broken.yaml:7:"), "{incident:?}");
}

#[test]
fn camunda_in_and_out_map_the_variables_of_a_call_activity() {
    let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:process id="p" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:callActivity id="c" calledElement="other" camunda:calledElementBinding="version" camunda:calledElementVersion="2">
      <bpmn:extensionElements>
        <camunda:in variables="all" />
        <camunda:in source="amount" target="total" />
        <camunda:in sourceExpression="${amount * 2}" target="double" />
        <camunda:out source="result" target="answer" />
      </bpmn:extensionElements>
    </bpmn:callActivity>
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="c" />
    <bpmn:sequenceFlow id="f2" sourceRef="c" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;
    let (defs, diagnostics) =
        flowbot_engine::bpmn::parse_bpmn(Path::new("call.bpmn"), text.as_bytes());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (process, diagnostics) = compile(
        &defs.expect("parses"),
        None,
        &Arc::new(ScriptRuntime::default()),
    );
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    let process = process.expect("compiles");
    let (mut instance, _) =
        Instance::start(&process, "i", object(json!({"amount": 4})), &NoHooks).expect("starts");
    let wait = instance.waits()[0].clone();
    let WaitKind::Call {
        process: called,
        binding,
        variables,
    } = &wait.kind
    else {
        panic!("a call wait: {wait:?}");
    };
    assert_eq!(called, "other");
    assert_eq!(*binding, flowbot_engine::model::CallBinding::Version(2));
    assert_eq!(variables.get("total"), Some(&json!(4)));
    assert_eq!(variables.get("double"), Some(&json!(8)));
    instance
        .complete(
            &process,
            wait.activation,
            object(json!({"result": 42, "noise": 1})),
            &NoHooks,
        )
        .expect("completes");
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert_eq!(instance.variables().get("answer"), Some(&json!(42)));
    assert!(!instance.variables().contains_key("noise"));
}
