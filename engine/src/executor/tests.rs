use super::*;
use crate::graph::{compile, CompiledProcess};
use crate::script::ScriptRuntime;
use crate::testkit::*;
use serde_json::json;
use std::sync::Arc;

fn compiled(scope: Scope) -> CompiledProcess {
    let (process, diagnostics) = compile(
        &scope.definitions(),
        None,
        &Arc::new(ScriptRuntime::default()),
    );
    process.unwrap_or_else(|| panic!("does not compile: {diagnostics:#?}"))
}

fn vars(value: serde_json::Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

/// Starts and completes every wait, oldest first, until nothing waits.
fn run_all(process: &CompiledProcess, variables: Value) -> Instance {
    let (mut instance, _) =
        Instance::start(process, "i1", vars(variables), &NoHooks).expect("starts");
    while let Some(wait) = instance.waits().first().cloned() {
        instance
            .complete(process, wait.activation, Map::new(), &NoHooks)
            .expect("completes");
    }
    instance
}

fn path(instance: &Instance) -> Vec<&str> {
    instance.path().iter().map(String::as_str).collect()
}

#[test]
fn sequence_with_script_sets_variables() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("t", task())
            .node("sc", script("let status = \"confirmed\"; amount += 1;"))
            .node("e", end())
            .chain(&["s", "t", "sc", "e"]),
    );
    let instance = run_all(&p, json!({"amount": 1}));
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert_eq!(path(&instance), ["s", "t", "sc", "e"]);
    assert_eq!(
        Value::Object(instance.variables().clone()),
        json!({"amount": 2, "status": "confirmed"})
    );
}

fn exclusive(amount: i64) -> Instance {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node_with_default("g", xor(), "g_low")
            .node("high", task())
            .node("low", task())
            .node("m", xor())
            .node("e", end())
            .flow("s", "g")
            .cond("g", "high", "amount > 100")
            .flow("g", "low")
            .chain(&["high", "m"])
            .chain(&["low", "m", "e"]),
    );
    run_all(&p, json!({ "amount": amount }))
}

#[test]
fn exclusive_gateway_takes_matching_flow_or_default() {
    assert_eq!(path(&exclusive(500)), ["s", "g", "high", "m", "e"]);
    assert_eq!(path(&exclusive(5)), ["s", "g", "low", "m", "e"]);
}

#[test]
fn exclusive_gateway_with_no_match_raises_incident_with_position() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("g", xor())
            .node("a", task())
            .node("b", task())
            .node("e", end())
            .flow("s", "g")
            .cond("g", "a", "x == 1")
            .cond("g", "b", "x == 2")
            .chain(&["a", "e"])
            .flow("b", "e"),
    );
    let (instance, step) = Instance::start(&p, "i1", vars(json!({"x": 3})), &NoHooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert!(step.ended);
    let incident = &instance.incidents()[0];
    assert_eq!(incident.node, "g");
    assert!(
        incident.message.contains("no outgoing flow"),
        "{}",
        incident.message
    );
    assert_eq!(incident.at, "test.bpmn:2:3");
}

#[test]
fn failing_condition_reports_position_inside_file() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node_with_default("g", xor(), "g_b")
            .node("a", task())
            .node("b", task())
            .flow("s", "g")
            .cond("g", "a", "missing_var > 1")
            .flow("g", "b"),
    );
    let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    let incident = &instance.incidents()[0];
    assert!(
        incident.message.contains("condition of flow g_a"),
        "{}",
        incident.message
    );
    // The condition text starts at 6:13; the unknown variable is its first token.
    assert_eq!(incident.at, "test.bpmn:6:13");
}

#[test]
fn failing_script_and_sandbox_limits_become_incidents() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("sc", script("total = 1; total = total + missing"))
            .node("e", end())
            .chain(&["s", "sc", "e"]),
    );
    let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert_eq!(
        instance.incidents()[0].message,
        "script failed in `sc`: Variable not found: missing (neither an instance variable nor assigned before this point)"
    );
    for source in ["let x = 1; x.no_such_method()", "loop { }"] {
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("sc", script(source))
                .node("e", end())
                .chain(&["s", "sc", "e"]),
        );
        let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(instance.status(), InstanceStatus::Failed, "{source}");
        assert_eq!(instance.incidents()[0].node, "sc");
        assert!(
            instance.incidents()[0].at.starts_with("test.bpmn:50:"),
            "{:?}",
            instance.incidents()
        );
        assert_eq!(path(&instance), ["s"]);
    }
}

#[test]
fn parallel_fork_and_join_in_document_order() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", and())
            .node("a", user())
            .node("b", task())
            .node("j", and())
            .node("e", end())
            .chain(&["s", "f", "a", "j", "e"])
            .chain(&["f", "b", "j"]),
    );
    let (mut instance, step) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Waiting);
    assert_eq!(step.new_waits.len(), 1);
    assert_eq!(instance.joins().len(), 1, "b waits in the join");
    let wait = instance.waits()[0].clone();
    assert_eq!(wait.idempotency_key, format!("i1/a/{}", wait.activation));
    let step = instance
        .complete(
            &p,
            wait.activation,
            vars(json!({"approved": true})),
            &NoHooks,
        )
        .unwrap();
    assert!(step.ended);
    assert_eq!(path(&instance), ["s", "f", "b", "a", "j", "e"]);
    assert_eq!(instance.variables()["approved"], json!(true));
    assert_eq!(instance.activations()["j"], 1);
}

#[test]
fn nested_parallel_fork_join() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f1", and())
            .node("f2", and())
            .node("a", task())
            .node("b", task())
            .node("j2", and())
            .node("c", task())
            .node("j1", and())
            .node("e", end())
            .chain(&["s", "f1", "f2", "a", "j2", "j1", "e"])
            .chain(&["f2", "b", "j2"])
            .chain(&["f1", "c", "j1"]),
    );
    let instance = run_all(&p, json!({}));
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert_eq!(
        path(&instance),
        ["s", "f1", "f2", "c", "a", "b", "j2", "j1", "e"]
    );
}

fn inclusive(x: i64) -> Instance {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node_with_default("f", or(), "f_c")
            .node("a", user())
            .node("b", task())
            .node("c", task())
            .node("j", or())
            .node("e", end())
            .flow("s", "f")
            .cond("f", "a", "x > 0")
            .cond("f", "b", "x > 10")
            .flow("f", "c")
            .chain(&["a", "j"])
            .chain(&["b", "j"])
            .chain(&["c", "j", "e"]),
    );
    run_all(&p, json!({ "x": x }))
}

#[test]
fn inclusive_join_waits_only_for_tokens_that_can_arrive() {
    assert_eq!(path(&inclusive(5)), ["s", "f", "a", "j", "e"], "one branch");
    assert_eq!(
        path(&inclusive(50)),
        ["s", "f", "b", "a", "j", "e"],
        "two branches, one waiting on a user"
    );
    assert_eq!(path(&inclusive(-1)), ["s", "f", "c", "j", "e"], "default");
    assert_eq!(inclusive(50).activations()["j"], 1, "the join fires once");
}

#[test]
fn inclusive_join_after_partial_parallel_fork_with_exclusive_dead_branch() {
    // f forks a and b; b goes through an exclusive gateway that may bypass the join.
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", and())
            .node("a", user())
            .node_with_default("x", xor(), "x_out")
            .node("b", task())
            .node("j", or())
            .node("out", end())
            .node("e", end())
            .chain(&["s", "f", "a", "j", "e"])
            .flow("f", "x")
            .cond("x", "b", "proceed")
            .flow("x", "out")
            .chain(&["b", "j"]),
    );
    let with = run_all(&p, json!({"proceed": true}));
    assert_eq!(path(&with), ["s", "f", "x", "b", "a", "j", "e"]);
    let without = run_all(&p, json!({"proceed": false}));
    assert_eq!(path(&without), ["s", "f", "x", "out", "a", "j", "e"]);
    assert_eq!(without.status(), InstanceStatus::Completed);
}

#[test]
fn subprocess_has_own_scope_and_completes_after_inner_nodes() {
    let inner = Scope::at_line(20)
        .node("is", start())
        .node("iu", user())
        .node("isc", script("let local = 1; total += 10;"))
        .node("ie", end())
        .chain(&["is", "iu", "isc", "ie"]);
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("sub", inner.subprocess())
            .node("e", end())
            .chain(&["s", "sub", "e"]),
    );
    let (mut instance, _) = Instance::start(&p, "i1", vars(json!({"total": 1})), &NoHooks).unwrap();
    assert_eq!(instance.scopes().len(), 2);
    let wait = instance.waits()[0].clone();
    assert_eq!(wait.scope, 1);
    instance
        .complete(
            &p,
            wait.activation,
            vars(json!({"note": "inner"})),
            &NoHooks,
        )
        .unwrap();
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert_eq!(path(&instance), ["s", "is", "iu", "isc", "ie", "sub", "e"]);
    // `total` existed outside and was updated there; `local` and `note` stayed inside.
    assert_eq!(
        Value::Object(instance.variables().clone()),
        json!({"total": 11})
    );
    assert_eq!(instance.scopes().len(), 1);
}

#[test]
fn terminate_end_event_ends_all_tokens() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", and())
            .node("a", user())
            .node("t", terminate())
            .node("e", end())
            .chain(&["s", "f", "a", "e"])
            .chain(&["f", "t"]),
    );
    let (instance, step) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Completed);
    assert!(instance.waits().is_empty());
    assert!(step.ended);
    assert_eq!(path(&instance), ["s", "f", "t"]);
}

#[test]
fn terminate_inside_subprocess_ends_only_the_subprocess() {
    let inner = Scope::at_line(20)
        .node("is", start())
        .node("if", and())
        .node("iu", user())
        .node("it", terminate())
        .node("ie", end())
        .chain(&["is", "if", "iu", "ie"])
        .chain(&["if", "it"]);
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("sub", inner.subprocess())
            .node("e", end())
            .chain(&["s", "sub", "e"]),
    );
    let instance = run_all(&p, json!({}));
    assert_eq!(path(&instance), ["s", "is", "if", "it", "sub", "e"]);
    assert_eq!(instance.status(), InstanceStatus::Completed);
}

#[test]
fn loops_repeat_activities_and_endless_loops_become_incidents() {
    let looped = compiled(
        Scope::default()
            .node("s", start())
            .node("m", xor())
            .node("inc", script("n += 1;"))
            .node_with_default("g", xor(), "g_e")
            .node("e", end())
            .chain(&["s", "m", "inc", "g"])
            .cond("g", "m", "n < 3")
            .flow("g", "e"),
    );
    let instance = run_all(&looped, json!({"n": 0}));
    assert_eq!(
        path(&instance),
        ["s", "m", "inc", "g", "m", "inc", "g", "m", "inc", "g", "e"]
    );
    let instance = run_all(&looped, json!({"n": -1_000_000}));
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert!(instance.incidents()[0]
        .message
        .contains("loops without end"));
}

#[test]
fn execution_is_deterministic_and_survives_serialization() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", and())
            .node("a", user())
            .node("b", service("send"))
            .node("c", user())
            .node("j", and())
            .node("e", end())
            .chain(&["s", "f", "a", "j", "e"])
            .chain(&["f", "b", "j"])
            .chain(&["f", "c", "j"]),
    );
    let first = run_all(&p, json!({}));
    let second = run_all(&p, json!({}));
    assert_eq!(first, second);
    let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert!(
        matches!(instance.waits()[1].kind, WaitKind::Job { handler: Some(ref h) } if h == "send")
    );
    let text = serde_json::to_string(&instance).unwrap();
    let mut restored: Instance = serde_json::from_str(&text).unwrap();
    assert_eq!(restored, instance);
    for wait in restored.waits().to_vec() {
        restored
            .complete(&p, wait.activation, Map::new(), &NoHooks)
            .unwrap();
    }
    assert_eq!(restored, first);
}

#[test]
fn failed_job_raises_incident_and_refuses_further_moves() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("j", service("h"))
            .node("e", end())
            .chain(&["s", "j", "e"]),
    );
    let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    let activation = instance.waits()[0].activation;
    assert_eq!(
        instance.complete(&p, 999, Map::new(), &NoHooks),
        Err(ExecError::UnknownActivation(999))
    );
    let step = instance
        .fail_job(&p, activation, "timeout", &NoHooks)
        .unwrap();
    assert!(step.ended);
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert!(instance.incidents()[0].message.contains("timeout"));
    assert!(matches!(
        instance.complete(&p, activation, Map::new(), &NoHooks),
        Err(ExecError::NotActive("failed"))
    ));
}

struct Guarded;

impl ExecutionHooks for Guarded {
    fn on_enter(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        let mut updates = Map::new();
        if ctx.node.is_some_and(|n| n.id == "t") {
            updates.insert("entered_t".into(), json!(true));
        }
        Ok(updates)
    }

    fn guard_complete(
        &self,
        ctx: &HookContext<'_>,
        _wait: &Wait,
        outputs: &Map<String, Value>,
    ) -> Result<(), String> {
        match outputs.get("ok") {
            Some(Value::Bool(true)) => Ok(()),
            _ => Err(format!(
                "{} needs ok=true",
                ctx.node.map(|n| n.id.as_str()).unwrap_or("?")
            )),
        }
    }

    fn on_leave(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        if ctx.node.is_some_and(|n| n.id == "bad") {
            return Err("policy says no".into());
        }
        Ok(Map::new())
    }
}

#[test]
fn hooks_can_refuse_completion_add_variables_and_raise_incidents() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("t", task())
            .node("u", user())
            .node("bad", task())
            .node("e", end())
            .chain(&["s", "t", "u", "bad", "e"]),
    );
    let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &Guarded).unwrap();
    assert_eq!(instance.variables()["entered_t"], json!(true));
    let before = instance.clone();
    let activation = instance.waits()[0].activation;
    let refused = instance.complete(&p, activation, Map::new(), &Guarded);
    assert_eq!(
        refused,
        Err(ExecError::Rejected {
            node: "u".into(),
            reason: "u needs ok=true".into()
        })
    );
    assert_eq!(instance, before, "a refused completion changes nothing");
    instance
        .complete(&p, activation, vars(json!({"ok": true})), &Guarded)
        .unwrap();
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert_eq!(instance.incidents()[0].node, "bad");
    assert_eq!(instance.incidents()[0].message, "policy says no");
}

#[test]
fn unsupported_elements_are_refused_up_front() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("g", {
                let mut sub = Scope::at_line(20)
                    .node("is", start())
                    .node("ie", end())
                    .chain(&["is", "ie"])
                    .subprocess();
                if let crate::model::NodeKind::SubProcess(activity) = &mut sub {
                    activity.multi_instance = Some(crate::model::MultiInstance {
                        sequential: false,
                        collection: None,
                        element_variable: None,
                        cardinality: Some(crate::model::Expr {
                            language: None,
                            source: "2".into(),
                            span: crate::model::Span::new(2, 9),
                        }),
                        completion_condition: None,
                        output_collection: None,
                        output_element: None,
                    });
                }
                sub
            })
            .node("e", end())
            .chain(&["s", "g", "e"]),
    );
    let err = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not supported yet: multi-instance subProcess g at test.bpmn:2:3"
    );
}

#[test]
fn stuck_parallel_join_is_an_incident() {
    // An exclusive gateway feeds a parallel join: only one token can ever arrive.
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node_with_default("x", xor(), "x_b")
            .node("a", task())
            .node("b", task())
            .node("j", and())
            .node("e", end())
            .flow("s", "x")
            .cond("x", "a", "false")
            .flow("x", "b")
            .chain(&["a", "j"])
            .chain(&["b", "j", "e"]),
    );
    let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert_eq!(instance.status(), InstanceStatus::Failed);
    assert_eq!(instance.incidents()[0].node, "j");
}

#[test]
fn batch_completion_completes_every_wait_before_tokens_move() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", and())
            .node("a", user())
            .node("b", user())
            .node("j", and())
            .node("e", end())
            .chain(&["s", "f", "a", "j", "e"])
            .chain(&["f", "b", "j"]),
    );
    let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    let batch: Vec<(u64, Map<String, Value>)> = instance
        .waits()
        .iter()
        .map(|w| (w.activation, Map::new()))
        .collect();
    let step = instance.complete_all(&p, batch.clone(), &NoHooks).unwrap();
    assert!(step.ended);
    assert_eq!(path(&instance), ["s", "f", "a", "b", "j", "e"]);
    // One guard refusal refuses the whole batch.
    let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &Guarded).unwrap();
    let before = instance.clone();
    assert!(matches!(
        instance.complete_all(&p, batch, &Guarded),
        Err(ExecError::Rejected { .. })
    ));
    assert_eq!(instance, before);
}

mod events {
    use super::*;
    use crate::model::{
        EventTrigger, Expr, GatewayKind, MessageRef, NodeKind, Span, Timer, TimerKind,
    };

    fn timer() -> EventTrigger {
        EventTrigger::Timer(Timer {
            kind: TimerKind::Duration,
            expression: Expr {
                language: None,
                source: "PT1H".into(),
                span: Span::new(1, 1),
            },
            time_zone: None,
        })
    }

    fn message(name: &str) -> EventTrigger {
        EventTrigger::Message(MessageRef {
            name: Some(name.into()),
            correlation_key: None,
        })
    }

    fn error(code: Option<&str>) -> EventTrigger {
        EventTrigger::Error {
            code: code.map(str::to_string),
        }
    }

    fn boundary(on: &str, trigger: EventTrigger, interrupting: bool) -> NodeKind {
        NodeKind::BoundaryEvent {
            attached_to: on.into(),
            trigger,
            interrupting,
        }
    }

    fn catch(trigger: EventTrigger) -> NodeKind {
        NodeKind::IntermediateCatchEvent { trigger }
    }

    fn wait_at<'i>(instance: &'i Instance, node: &str) -> &'i Wait {
        instance
            .waits()
            .iter()
            .find(|w| w.node == node)
            .unwrap_or_else(|| panic!("no wait at {node}: {:?}", instance.waits()))
    }

    fn task_with_timer(interrupting: bool) -> CompiledProcess {
        compiled(
            Scope::default()
                .node("s", start())
                .node("u", user())
                .node("b", boundary("u", timer(), interrupting))
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "u", "e1"])
                .chain(&["b", "e2"]),
        )
    }

    #[test]
    fn interrupting_timer_boundary_cancels_its_task() {
        let p = task_with_timer(true);
        let (mut instance, step) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(step.new_waits.len(), 2);
        let task = wait_at(&instance, "u").activation;
        let timer = wait_at(&instance, "b").clone();
        assert_eq!(timer.attached_to, Some(task));
        assert!(matches!(timer.kind, WaitKind::Timer { .. }));
        let step = instance
            .complete(&p, timer.activation, Map::new(), &NoHooks)
            .unwrap();
        assert!(step.events.contains(&Event::WaitCancelled {
            node: "u".into(),
            activation: task
        }));
        assert_eq!(instance.status(), InstanceStatus::Completed);
        assert_eq!(path(&instance), ["s", "b", "e2"]);
    }

    #[test]
    fn completing_the_task_disarms_its_boundary_events() {
        let p = task_with_timer(true);
        let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        let (task, timer) = (
            wait_at(&instance, "u").activation,
            wait_at(&instance, "b").activation,
        );
        let step = instance.complete(&p, task, Map::new(), &NoHooks).unwrap();
        assert!(step.events.contains(&Event::WaitCancelled {
            node: "b".into(),
            activation: timer
        }));
        assert_eq!(path(&instance), ["s", "u", "e1"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }

    #[test]
    fn non_interrupting_boundary_leaves_its_task_waiting() {
        let p = task_with_timer(false);
        let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        let (task, timer) = (
            wait_at(&instance, "u").activation,
            wait_at(&instance, "b").activation,
        );
        instance.complete(&p, timer, Map::new(), &NoHooks).unwrap();
        assert_eq!(instance.status(), InstanceStatus::Waiting);
        assert_eq!(path(&instance), ["s", "b", "e2"]);
        instance.complete(&p, task, Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&instance), ["s", "b", "e2", "u", "e1"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }

    #[test]
    fn message_boundary_on_a_subprocess_interrupts_its_scope() {
        let inner = Scope::at_line(20)
            .node("is", start())
            .node("iu", user())
            .node("ie", end())
            .chain(&["is", "iu", "ie"]);
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("sub", inner.subprocess())
                .node("cancel", boundary("sub", message("cancel"), true))
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "sub", "e1"])
                .chain(&["cancel", "e2"]),
        );
        let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(instance.scopes().len(), 2);
        let cancel = wait_at(&instance, "cancel").clone();
        assert!(matches!(&cancel.kind, WaitKind::Message { name: Some(n), .. } if n == "cancel"));
        instance
            .complete(&p, cancel.activation, Map::new(), &NoHooks)
            .unwrap();
        assert_eq!(instance.scopes().len(), 1);
        assert!(instance.waits().is_empty());
        assert_eq!(path(&instance), ["s", "is", "cancel", "e2"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }

    #[test]
    fn error_end_event_is_caught_by_the_subprocess_boundary() {
        let inner = Scope::at_line(20)
            .node("is", start())
            .node(
                "ie",
                NodeKind::EndEvent {
                    result: Some(error(Some("E1"))),
                },
            )
            .chain(&["is", "ie"]);
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("sub", inner.subprocess())
                .node("other", boundary("sub", error(Some("E2")), true))
                .node("caught", boundary("sub", error(Some("E1")), true))
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "sub", "e1"])
                .chain(&["caught", "e2"])
                .flow("other", "e2"),
        );
        let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&instance), ["s", "is", "ie", "caught", "e2"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }

    #[test]
    fn job_errors_take_the_error_boundary_or_raise_an_incident() {
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("j", service("charge"))
                .node("declined", boundary("j", error(None), true))
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "j", "e1"])
                .chain(&["declined", "e2"]),
        );
        let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        let job = wait_at(&instance, "j").activation;
        instance
            .throw_error(&p, job, Some("CARD_DECLINED"), &NoHooks)
            .unwrap();
        assert_eq!(path(&instance), ["s", "declined", "e2"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);

        let bare = compiled(
            Scope::default()
                .node("s", start())
                .node("j", service("h"))
                .node("e", end())
                .chain(&["s", "j", "e"]),
        );
        let (mut instance, _) = Instance::start(&bare, "i1", Map::new(), &NoHooks).unwrap();
        let job = wait_at(&instance, "j").activation;
        instance
            .throw_error(&bare, job, Some("X"), &NoHooks)
            .unwrap();
        assert_eq!(instance.status(), InstanceStatus::Failed);
        assert_eq!(
            instance.incidents()[0].message,
            "error `X` thrown by `j` was not caught"
        );
    }

    #[test]
    fn event_based_gateway_takes_the_first_event_and_cancels_the_others() {
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("g", NodeKind::Gateway(GatewayKind::EventBased))
                .node("paid", catch(message("payment")))
                .node("late", catch(timer()))
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "g", "paid", "e1"])
                .chain(&["g", "late", "e2"]),
        );
        let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        let (paid, late) = (
            wait_at(&instance, "paid").clone(),
            wait_at(&instance, "late").clone(),
        );
        assert!(paid.race.is_some() && paid.race == late.race);
        // Both fire in one batch: the first one wins, the second was cancelled.
        let step = instance
            .complete_all(
                &p,
                vec![(late.activation, Map::new()), (paid.activation, Map::new())],
                &NoHooks,
            )
            .unwrap();
        assert!(step.events.contains(&Event::WaitCancelled {
            node: "paid".into(),
            activation: paid.activation
        }));
        assert_eq!(path(&instance), ["s", "g", "late", "e2"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }
}

#[test]
fn running_subprocess_holds_back_an_outer_inclusive_join() {
    // f forks into a subprocess (with a user task) and a plain task; the inclusive join must wait
    // for the subprocess, whose inner token can still reach it.
    let inner = Scope::at_line(20)
        .node("is", start())
        .node("iu", user())
        .node("ie", end())
        .chain(&["is", "iu", "ie"]);
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("f", or())
            .node("sub", inner.subprocess())
            .node("t", task())
            .node("j", or())
            .node("e", end())
            .flow("s", "f")
            .cond("f", "sub", "true")
            .cond("f", "t", "true")
            .chain(&["sub", "j", "e"])
            .chain(&["t", "j"]),
    );
    let (mut instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    assert_eq!(instance.joins().len(), 1, "t's token waits in the join");
    assert_eq!(path(&instance), ["s", "f", "t", "is"]);
    let wait = instance.waits()[0].activation;
    instance.complete(&p, wait, Map::new(), &NoHooks).unwrap();
    assert_eq!(
        path(&instance),
        ["s", "f", "t", "is", "iu", "ie", "sub", "j", "e"]
    );
    assert_eq!(instance.activations()["j"], 1);
}

#[test]
fn inclusive_fork_and_join_inside_a_subprocess() {
    let inner = Scope::at_line(20)
        .node("is", start())
        .node("f", or())
        .node("a", task())
        .node("b", user())
        .node("j", or())
        .node("ie", end())
        .flow("is", "f")
        .cond("f", "a", "x > 0")
        .cond("f", "b", "x > 5")
        .chain(&["a", "j", "ie"])
        .chain(&["b", "j"]);
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("sub", inner.subprocess())
            .node("e", end())
            .chain(&["s", "sub", "e"]),
    );
    assert_eq!(
        path(&run_all(&p, json!({"x": 1}))),
        ["s", "is", "f", "a", "j", "ie", "sub", "e"]
    );
    assert_eq!(
        path(&run_all(&p, json!({"x": 9}))),
        ["s", "is", "f", "a", "b", "j", "ie", "sub", "e"]
    );
}

#[test]
fn damaged_checkpoints_are_refused_not_panicked_on() {
    let p = compiled(
        Scope::default()
            .node("s", start())
            .node("u", user())
            .node("e", end())
            .chain(&["s", "u", "e"]),
    );
    let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
    let mut text = serde_json::to_value(&instance).unwrap();
    text["scopes"] = json!([]);
    let mut damaged: Instance = serde_json::from_value(text).unwrap();
    assert!(damaged.variables().is_empty());
    assert!(matches!(
        damaged.complete(&p, 2, Map::new(), &NoHooks),
        Err(ExecError::Inconsistent(_))
    ));

    let mut text = serde_json::to_value(&instance).unwrap();
    text["waits"][0]["node"] = json!("gone");
    let mut renamed: Instance = serde_json::from_value(text).unwrap();
    let activation = renamed.waits()[0].activation;
    assert_eq!(
        renamed.complete(&p, activation, Map::new(), &NoHooks),
        Err(ExecError::UnknownActivation(activation))
    );
}

mod multi_instance {
    use super::*;
    use crate::model::{Activity, Expr, MultiInstance, NodeKind, Span, TaskKind};

    fn multi(
        body: TaskKind,
        sequential: bool,
        collection: Option<&str>,
        cardinality: Option<&str>,
    ) -> NodeKind {
        let expr = |source: &str| Expr {
            language: None,
            source: source.into(),
            span: Span::new(70, 1),
        };
        let mut activity = Activity::new(body);
        activity.multi_instance = Some(MultiInstance {
            sequential,
            collection: collection.map(expr),
            element_variable: Some("line".into()),
            cardinality: cardinality.map(expr),
            completion_condition: None,
            output_collection: Some("results".into()),
            output_element: Some("result".into()),
        });
        NodeKind::Task(activity)
    }

    fn process(kind: NodeKind) -> CompiledProcess {
        compiled(
            Scope::default()
                .node("s", start())
                .node("m", kind)
                .node("e", end())
                .chain(&["s", "m", "e"]),
        )
    }

    #[test]
    fn script_runs_once_per_item_in_its_own_scope_and_collects_outputs() {
        let body = TaskKind::Script {
            script: Some(crate::model::Script {
                language: None,
                source: "let result = line * 10; total += line;".into(),
                span: Span::new(60, 1),
            }),
        };
        let p = process(multi(body, false, Some("lines"), None));
        let instance = run_all(&p, json!({"lines": [1, 2, 3], "total": 0}));
        assert_eq!(instance.status(), InstanceStatus::Completed);
        assert_eq!(path(&instance), ["s", "m", "m", "m", "e"]);
        assert_eq!(
            Value::Object(instance.variables().clone()),
            json!({"lines": [1, 2, 3], "total": 6, "results": [10, 20, 30]})
        );
        assert_eq!(instance.scopes().len(), 1);
    }

    #[test]
    fn parallel_user_tasks_wait_together_and_sequential_ones_one_by_one() {
        let parallel = process(multi(TaskKind::User, false, None, Some("3")));
        let (mut instance, step) = Instance::start(&parallel, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(step.new_waits.len(), 3);
        let last = instance.waits()[2].activation;
        instance
            .complete(&parallel, last, vars(json!({"result": "c"})), &NoHooks)
            .unwrap();
        assert_eq!(instance.multi_instances()[0].completed, 1);
        let rest: Vec<(u64, Map<String, Value>)> = instance
            .waits()
            .iter()
            .map(|w| (w.activation, Map::new()))
            .collect();
        instance.complete_all(&parallel, rest, &NoHooks).unwrap();
        assert_eq!(instance.status(), InstanceStatus::Completed);
        assert_eq!(instance.variables()["results"], json!([null, null, "c"]));

        let sequential = process(multi(TaskKind::User, true, Some("[\"a\", \"b\"]"), None));
        let (mut instance, step) =
            Instance::start(&sequential, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(step.new_waits.len(), 1);
        let first = instance.waits()[0].clone();
        let step = instance
            .complete(
                &sequential,
                first.activation,
                vars(json!({"result": 1})),
                &NoHooks,
            )
            .unwrap();
        assert_eq!(
            step.new_waits.len(),
            1,
            "the second run starts after the first"
        );
        let second = instance.waits()[0].activation;
        instance
            .complete(&sequential, second, vars(json!({"result": 2})), &NoHooks)
            .unwrap();
        assert_eq!(instance.variables()["results"], json!([1, 2]));
        assert_eq!(path(&instance), ["s", "m", "m", "e"]);
    }

    #[test]
    fn empty_collections_pass_and_bad_collections_raise_incidents() {
        let p = process(multi(TaskKind::User, false, Some("lines"), None));
        let instance = run_all(&p, json!({"lines": []}));
        assert_eq!(path(&instance), ["s", "e"]);
        assert_eq!(instance.variables()["results"], json!([]));
        let (instance, _) = Instance::start(&p, "i1", vars(json!({"lines": 5})), &NoHooks).unwrap();
        assert_eq!(instance.status(), InstanceStatus::Failed);
        assert!(
            instance.incidents()[0].message.contains("is not a list"),
            "{:?}",
            instance.incidents()
        );
    }
}

mod call_activity {
    use super::*;
    use crate::model::{Activity, CallActivity, Definitions, NodeKind};

    fn call(target: &str) -> NodeKind {
        NodeKind::CallActivity(Activity::new(CallActivity {
            called_element: Some(target.into()),
            binding: Default::default(),
        }))
    }

    /// `p` (executable) and `q` (called), one file.
    fn file(main: Scope, called: Scope) -> Definitions {
        let mut defs = main.definitions();
        let mut q = called.definitions().processes.remove(0);
        q.id = "q".into();
        q.executable = false;
        defs.processes.push(q);
        defs
    }

    fn compile_defs(defs: &Definitions) -> CompiledProcess {
        let (process, diagnostics) = compile(defs, None, &Arc::new(ScriptRuntime::default()));
        process.unwrap_or_else(|| panic!("{diagnostics:#?}"))
    }

    #[test]
    fn called_process_runs_inline_with_the_callers_variables() {
        let main = Scope::default()
            .node("s", start())
            .node("c", call("q"))
            .node("e", end())
            .chain(&["s", "c", "e"]);
        let called = Scope::at_line(30)
            .node("qs", start())
            .node("qu", user())
            .node("qsc", script("let result = 42; count += 1;"))
            .node("qe", end())
            .chain(&["qs", "qu", "qsc", "qe"]);
        let p = compile_defs(&file(main, called));
        let instance = run_all(&p, json!({"count": 1}));
        assert_eq!(instance.status(), InstanceStatus::Completed);
        assert_eq!(path(&instance), ["s", "qs", "qu", "qsc", "qe", "c", "e"]);
        assert_eq!(
            Value::Object(instance.variables().clone()),
            json!({"count": 2, "result": 42})
        );
    }

    #[test]
    fn repeated_and_recursive_calls_wait_for_child_instances() {
        let twice = Scope::default()
            .node("s", start())
            .node("c1", call("q"))
            .node("c2", call("q"))
            .node("e", end())
            .chain(&["s", "c1", "c2", "e"]);
        let called = Scope::at_line(30)
            .node("qs", start())
            .node("qe", end())
            .chain(&["qs", "qe"]);
        let p = compile_defs(&file(twice, called));
        let (mut instance, _) = Instance::start(&p, "i1", vars(json!({"n": 1})), &NoHooks).unwrap();
        // The first call runs `q` inline; the second is a child instance the driver starts.
        assert_eq!(path(&instance), ["s", "qs", "qe", "c1"]);
        let wait = instance.waits()[0].clone();
        assert_eq!(wait.node, "c2");
        assert!(matches!(
            &wait.kind,
            WaitKind::Call { process, variables, .. } if process == "q" && variables.get("n") == Some(&json!(1))
        ));
        instance
            .complete(&p, wait.activation, vars(json!({"back": true})), &NoHooks)
            .unwrap();
        assert_eq!(instance.status(), InstanceStatus::Completed);
        assert_eq!(instance.variables().get("back"), Some(&json!(true)));

        let main = Scope::default()
            .node("s", start())
            .node("c", call("q"))
            .node("e", end())
            .chain(&["s", "c", "e"]);
        let back = Scope::at_line(30)
            .node("qs", start())
            .node("qc", call("p"))
            .node("qe", end())
            .chain(&["qs", "qc", "qe"]);
        let p = compile_defs(&file(main, back));
        let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert!(matches!(
            &instance.waits()[0].kind,
            WaitKind::Call { process, .. } if process == "p"
        ));
        assert_eq!(instance.waits()[0].node, "qc");
    }
}

mod escalation {
    use super::*;
    use crate::model::{EventTrigger, NodeKind};

    fn escalation(code: &str) -> EventTrigger {
        EventTrigger::Escalation {
            code: Some(code.into()),
        }
    }

    fn process(interrupting: bool) -> CompiledProcess {
        let inner = Scope::at_line(20)
            .node("is", start())
            .node(
                "esc",
                NodeKind::IntermediateThrowEvent {
                    result: Some(escalation("LATE")),
                },
            )
            .node("iu", user())
            .node("ie", end())
            .chain(&["is", "esc", "iu", "ie"]);
        compiled(
            Scope::default()
                .node("s", start())
                .node("sub", inner.subprocess())
                .node(
                    "b",
                    NodeKind::BoundaryEvent {
                        attached_to: "sub".into(),
                        trigger: escalation("LATE"),
                        interrupting,
                    },
                )
                .node("e1", end())
                .node("e2", end())
                .chain(&["s", "sub", "e1"])
                .chain(&["b", "e2"]),
        )
    }

    #[test]
    fn interrupting_escalation_boundary_ends_the_subprocess() {
        let (instance, _) = Instance::start(&process(true), "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&instance), ["s", "is", "esc", "b", "e2"]);
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }

    #[test]
    fn non_interrupting_escalation_boundary_lets_the_subprocess_go_on() {
        let p = process(false);
        let instance = run_all(&p, json!({}));
        assert_eq!(
            path(&instance),
            ["s", "is", "esc", "b", "e2", "iu", "ie", "sub", "e1"]
        );
        assert_eq!(instance.status(), InstanceStatus::Completed);
    }
}

mod triggered_start {
    use super::*;
    use crate::model::{EventTrigger, MessageRef, NodeKind};

    fn message_start() -> NodeKind {
        NodeKind::StartEvent {
            trigger: Some(EventTrigger::Message(MessageRef {
                name: Some("order".into()),
                correlation_key: None,
            })),
            interrupting: true,
        }
    }

    #[test]
    fn a_process_with_one_message_start_starts_there() {
        let p = compiled(
            Scope::default()
                .node("m", message_start())
                .node("e", end())
                .chain(&["m", "e"]),
        );
        let (instance, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&instance), ["m", "e"]);
    }

    #[test]
    fn start_at_chooses_among_start_events() {
        let p = compiled(
            Scope::default()
                .node("s", start())
                .node("m", message_start())
                .node("a", task())
                .node("b", task())
                .node("e", end())
                .chain(&["s", "a", "e"])
                .chain(&["m", "b", "e"]),
        );
        let (plain, _) = Instance::start(&p, "i1", Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&plain), ["s", "a", "e"]);
        let (by_message, _) = Instance::start_at(&p, "m", "i2", Map::new(), &NoHooks).unwrap();
        assert_eq!(path(&by_message), ["m", "b", "e"]);
        assert_eq!(
            Instance::start_at(&p, "a", "i3", Map::new(), &NoHooks).unwrap_err(),
            ExecError::NoSuchStart("a".into())
        );
    }
}

#[test]
fn joined_ids_read_as_the_formatted_ones() {
    assert_eq!(super::joined_id(&["order", "-"], 42), "order-42");
    assert_eq!(
        super::joined_id(&["order-42", "/", "review", "/"], u64::MAX),
        format!("order-42/review/{}", u64::MAX)
    );
    assert_eq!(super::joined_id(&[], 0), "0");
}
