//! Every attachment point through the executor, with [`RuleHooks`].

use super::*;
use crate::executor::{ExecError, Instance, InstanceStatus};
use crate::graph::{compile, CompiledProcess};
use crate::model::*;
use crate::testkit::*;
use serde_json::{json, Map, Value};

fn rule(point: AttachPoint, source: &str) -> RuleAttachment {
    RuleAttachment {
        point,
        rule: RuleSource::Inline(source.into()),
        span: Span::new(1, 1),
    }
}

fn message_catch(name: &str) -> NodeKind {
    NodeKind::IntermediateCatchEvent {
        trigger: EventTrigger::Message(MessageRef {
            name: Some(name.into()),
            correlation_key: None,
        }),
    }
}

/// `start → work (user) → set (script) → wait (message) → end`, with `node_rules` on nodes and
/// `process_rules` on the process.
fn process(
    rules: &RuleEngine,
    node_rules: &[(&str, RuleAttachment)],
    process_rules: Vec<RuleAttachment>,
) -> CompiledProcess {
    let mut defs = Scope::default()
        .node("start", start())
        .node("work", user())
        .node("set", script("let status = \"set\";"))
        .node("wait", message_catch("paid"))
        .node("end", end())
        .chain(&["start", "work", "set", "wait", "end"])
        .definitions();
    for (node, attachment) in node_rules {
        let found = defs.processes[0]
            .nodes
            .iter_mut()
            .find(|n| n.id == *node)
            .unwrap();
        found.rules.push(attachment.clone());
    }
    defs.processes[0].rules = process_rules;
    let (compiled, diagnostics) = compile(&defs, None, &rules.script_runtime());
    compiled.unwrap_or_else(|| panic!("{diagnostics:?}"))
}

fn rules() -> (tempfile::TempDir, RuleEngine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = RuleEngine::load(dir.path(), &RulesConfig::default()).unwrap();
    (dir, engine)
}

fn emitted(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Emit { event, payload, .. } => format!("{event}:{payload}"),
            Effect::Notify {
                receiver, message, ..
            } => format!("notify {receiver}:{message}"),
        })
        .collect()
}

fn start_instance(process: &CompiledProcess, hooks: &RuleHooks) -> Instance {
    Instance::start(process, "i", Map::new(), hooks).unwrap().0
}

fn complete(
    instance: &mut Instance,
    process: &CompiledProcess,
    node: &str,
    outputs: Value,
    hooks: &RuleHooks,
) -> Result<(), ExecError> {
    let activation = instance
        .waits()
        .iter()
        .find(|w| w.node == node)
        .unwrap()
        .activation;
    instance
        .complete(
            process,
            activation,
            outputs.as_object().cloned().unwrap(),
            hooks,
        )
        .map(|_| ())
}

#[test]
fn on_start_on_the_start_event_sets_defaults() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[(
            "start",
            rule(
                AttachPoint::OnStart,
                r#"set("priority", "normal"); emit("started")"#,
            ),
        )],
        vec![],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let instance = start_instance(&p, &hooks);
    assert_eq!(instance.variables()["priority"], json!("normal"));
    assert_eq!(emitted(&hooks.take_effects()), ["started:null"]);
}

#[test]
fn on_enter_and_on_leave_run_for_their_node_and_process_rules_for_every_node() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[
            (
                "work",
                rule(AttachPoint::OnEnter, r#"emit("enter " + event.node)"#),
            ),
            (
                "work",
                rule(AttachPoint::OnLeave, r#"emit("leave " + event.node)"#),
            ),
        ],
        vec![rule(AttachPoint::OnEnter, r#"emit("any " + event.node)"#)],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    assert_eq!(
        emitted(&hooks.take_effects()),
        ["any start:null", "enter work:null", "any work:null"]
    );
    complete(&mut instance, &p, "work", json!({}), &hooks).unwrap();
    assert_eq!(
        emitted(&hooks.take_effects()),
        ["leave work:null", "any set:null", "any wait:null"]
    );
}

#[test]
fn guard_complete_refuses_and_nothing_changes() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[(
            "work",
            rule(
                AttachPoint::GuardComplete,
                r#"if event.output.ok != true { reject("not ok") }"#,
            ),
        )],
        vec![],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    let before = instance.clone();
    let err = complete(&mut instance, &p, "work", json!({"ok": false}), &hooks).unwrap_err();
    assert_eq!(
        err,
        ExecError::Rejected {
            node: "work".into(),
            reason: "rule `inline@1:1` rejected the action: not ok".into()
        }
    );
    assert_eq!(instance, before);
    complete(&mut instance, &p, "work", json!({"ok": true}), &hooks).unwrap();
    assert_eq!(instance.waits()[0].node, "wait");
}

#[test]
fn guard_message_checks_the_payload() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[(
            "wait",
            rule(
                AttachPoint::GuardMessage,
                r#"event.message == "paid" && event.payload.amount > 0"#,
            ),
        )],
        vec![],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    complete(&mut instance, &p, "work", json!({}), &hooks).unwrap();
    let err = complete(&mut instance, &p, "wait", json!({"amount": 0}), &hooks).unwrap_err();
    assert!(
        matches!(&err, ExecError::Rejected { node, .. } if node == "wait"),
        "{err}"
    );
    complete(&mut instance, &p, "wait", json!({"amount": 10}), &hooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Completed);
}

#[test]
fn guard_variable_refuses_a_completion_that_would_change_the_field() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[],
        vec![rule(
            AttachPoint::GuardVariable("limit".into()),
            r#"if event.value > 100 { reject(`limit ${event.value} too high`) }"#,
        )],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    let err = complete(&mut instance, &p, "work", json!({"limit": 500}), &hooks).unwrap_err();
    assert!(err.to_string().contains("limit 500 too high"), "{err}");
    complete(&mut instance, &p, "work", json!({"limit": 50}), &hooks).unwrap();
    assert_eq!(instance.variables()["limit"], json!(50));
}

#[test]
fn guard_variable_inside_a_script_is_an_incident() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[],
        vec![rule(
            AttachPoint::GuardVariable("status".into()),
            r#"reject("status is read-only")"#,
        )],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    complete(&mut instance, &p, "work", json!({}), &hooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert!(
        instance.incidents()[0]
            .message
            .contains("status is read-only"),
        "{:?}",
        instance.incidents()
    );
}

#[test]
fn on_variable_change_sees_previous_and_new_value_and_skips_unchanged_values() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[],
        vec![rule(
            AttachPoint::OnVariableChange("status".into()),
            r#"emit("status", #{ from: event.previous, to: event.value })"#,
        )],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    complete(
        &mut instance,
        &p,
        "work",
        json!({"status": "working"}),
        &hooks,
    )
    .unwrap();
    assert_eq!(
        emitted(&hooks.take_effects()),
        [
            r#"status:{"from":null,"to":"working"}"#,
            r#"status:{"from":"working","to":"set"}"#
        ]
    );
    let mut again = start_instance(&p, &hooks);
    complete(&mut again, &p, "work", json!({"status": "set"}), &hooks).unwrap();
    assert_eq!(
        emitted(&hooks.take_effects()),
        [r#"status:{"from":null,"to":"set"}"#],
        "the script's unchanged value is not a change"
    );
}

#[test]
fn on_status_change_runs_when_the_driver_reports_it() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[],
        vec![rule(
            AttachPoint::OnStatusChange,
            r#"emit("instance " + event.value)"#,
        )],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let updates = hooks
        .status_changed(
            &p,
            &Map::new(),
            InstanceStatus::Waiting,
            InstanceStatus::Completed,
        )
        .unwrap();
    assert!(updates.is_empty());
    assert_eq!(emitted(&hooks.take_effects()), ["instance completed:null"]);
}

#[test]
fn a_failing_policy_becomes_an_incident_naming_the_rule() {
    let (_dir, rules) = rules();
    let p = process(
        &rules,
        &[(
            "work",
            rule(AttachPoint::OnLeave, "let x = 1;\nx.no_such_method()"),
        )],
        vec![],
    );
    let hooks = RuleHooks::new(rules.snapshot());
    let mut instance = start_instance(&p, &hooks);
    complete(&mut instance, &p, "work", json!({}), &hooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Failed);
    let incident = &instance.incidents()[0];
    assert!(
        incident
            .message
            .starts_with("<inline>:2:3: error: rule `inline@1:1` failed"),
        "{incident:?}"
    );
}

#[test]
fn shared_hooks_keep_one_snapshot_per_step_and_hand_out_its_effects() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leave.rhai"), r#"emit("v1")"#).unwrap();
    let engine =
        std::sync::Arc::new(RuleEngine::load(dir.path(), &RulesConfig::default()).unwrap());
    let leave = RuleAttachment {
        point: AttachPoint::OnLeave,
        rule: RuleSource::File("leave.rhai".into()),
        span: Span::new(1, 1),
    };
    let p = process(&engine, &[("work", leave.clone()), ("set", leave)], vec![]);
    let shared = SharedRuleHooks::new(engine.clone());

    let (mut a, _) = Instance::start(&p, "a", Map::new(), &shared).unwrap();
    let (mut b, _) = Instance::start(&p, "b", Map::new(), &shared).unwrap();
    assert!(shared.finish_step("a").is_empty() && shared.finish_step("b").is_empty());

    // Step of `a` opens on the old rules; the reload lands in the middle of it.
    let work = a.waits()[0].activation;
    let work_node = p.node(p.node_index("work").unwrap());
    let ctx = crate::executor::HookContext {
        process: &p,
        instance_id: "a",
        node: Some(work_node),
        activation: Some(work),
        variables: a.variables(),
    };
    crate::executor::ExecutionHooks::on_enter(&shared, &ctx).unwrap();
    std::fs::write(dir.path().join("leave.rhai"), r#"emit("v2")"#).unwrap();
    engine.reload().unwrap();
    a.complete(&p, work, Map::new(), &shared).unwrap();
    assert_eq!(
        emitted(&shared.finish_step("a")),
        ["v1:null", "v1:null"],
        "one step, one rule set"
    );

    let work = b.waits()[0].activation;
    b.complete(&p, work, Map::new(), &shared).unwrap();
    let written = shared.finish_step("b");
    assert_eq!(emitted(&written), ["v2:null", "v2:null"]);
    assert!(
        shared.finish_step("b").is_empty(),
        "the step's effects were handed out once"
    );
}
