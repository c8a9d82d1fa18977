//! Call activities as child instances: start, output mapping, errors, cancel, version binding,
//! recursion and restart.

use super::*;
use crate::executor::InstanceStatus;
use crate::store::{Durability, SledStore};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;

fn vars(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn yaml(text: &str) -> Definitions {
    let (defs, diagnostics) = crate::yaml::parse_yaml(Path::new("call.yaml"), text);
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    defs.expect("parses")
}

fn bpmn(text: &str) -> Definitions {
    let (defs, diagnostics) = crate::bpmn::parse_bpmn(Path::new("call.bpmn"), text.as_bytes());
    assert!(diagnostics.iter().all(|d| !d.is_error()), "{diagnostics:?}");
    defs.expect("parses")
}

async fn engine() -> Engine {
    Engine::builder().build().await.unwrap()
}

const QUOTE: &str = r#"
process: quote
nodes:
  begin: { start: ~, next: price }
  price: { script: 'let price = weight * 2; let internal = true;', next: done }
  done: { end: ~ }
"#;

const SHIP: &str = r#"
process: ship
nodes:
  begin: { start: ~, next: get_quote }
  get_quote:
    call: quote
    inputs: { weight: order.kg }
    outputs: { freight: price + 1 }
    next: done
  done: { end: ~ }
"#;

#[tokio::test]
async fn a_yaml_call_activity_runs_a_child_instance_and_maps_its_outputs() {
    let engine = engine().await;
    engine.deploy(&yaml(QUOTE), None).await.unwrap();
    engine.deploy(&yaml(SHIP), None).await.unwrap();
    let started = engine
        .start("ship", vars(json!({"order": {"kg": 5}})))
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    assert_eq!(done.path, ["begin", "get_quote", "done"]);
    assert_eq!(done.variables.get("freight"), Some(&json!(11)));
    // Only the output mapping comes back: not the child's other variables.
    assert!(
        !done.variables.contains_key("internal"),
        "{:?}",
        done.variables
    );
    assert!(!done.variables.contains_key("price"));
    let child = engine.instance(&format!("{}.2", started.id));
    let child = child.expect("the child is stored under its caller's wait");
    assert_eq!(child.process_id, "quote");
    assert_eq!(child.status, InstanceStatus::Completed);
    assert_eq!(child.path, ["begin", "price", "done"]);
    assert_eq!(child.variables.get("weight"), Some(&json!(5)));
}

#[tokio::test]
async fn without_mappings_the_child_gets_and_returns_every_variable() {
    let engine = engine().await;
    engine.deploy(&yaml(QUOTE), None).await.unwrap();
    let caller = r#"
process: plain
nodes:
  begin: { start: ~, next: get_quote }
  get_quote: { call: { process: quote }, next: done }
  done: { end: ~ }
"#;
    engine.deploy(&yaml(caller), None).await.unwrap();
    let started = engine
        .start("plain", vars(json!({"weight": 3})))
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    assert_eq!(done.variables.get("price"), Some(&json!(6)));
    assert_eq!(done.variables.get("internal"), Some(&json!(true)));
}

const PAY_CHILD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d1" targetNamespace="t">
  <bpmn:error id="Err_Pay" errorCode="PAYMENT_FAILED" />
  <bpmn:process id="pay" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:exclusiveGateway id="ok" default="f_good" />
    <bpmn:endEvent id="paid" />
    <bpmn:endEvent id="refused"><bpmn:errorEventDefinition errorRef="Err_Pay" /></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="ok" />
    <bpmn:sequenceFlow id="f_bad" sourceRef="ok" targetRef="refused">
      <bpmn:conditionExpression>amount &gt; 100</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_good" sourceRef="ok" targetRef="paid" />
  </bpmn:process>
</bpmn:definitions>"#;

const ORDER_CALLER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d2" targetNamespace="t">
  <bpmn:error id="Err_Pay" errorCode="PAYMENT_FAILED" />
  <bpmn:process id="order" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:callActivity id="charge" calledElement="pay" camunda:calledElementBinding="latest" />
    <bpmn:boundaryEvent id="declined" attachedToRef="charge">
      <bpmn:errorEventDefinition errorRef="Err_Pay" />
    </bpmn:boundaryEvent>
    <bpmn:endEvent id="shipped" />
    <bpmn:endEvent id="cancelled" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="charge" />
    <bpmn:sequenceFlow id="f2" sourceRef="charge" targetRef="shipped" />
    <bpmn:sequenceFlow id="f3" sourceRef="declined" targetRef="cancelled" />
  </bpmn:process>
</bpmn:definitions>"#;

#[tokio::test]
async fn a_bpmn_child_error_end_event_reaches_the_error_boundary_of_the_call_activity() {
    let engine = engine().await;
    engine.deploy(&bpmn(PAY_CHILD), None).await.unwrap();
    engine.deploy(&bpmn(ORDER_CALLER), None).await.unwrap();
    let fine = engine
        .start("order", vars(json!({"amount": 50})))
        .await
        .unwrap();
    let fine = engine.wait_for_end(&fine.id).await.unwrap();
    assert_eq!(fine.path, ["s", "charge", "shipped"], "{fine:?}");
    let refused = engine
        .start("order", vars(json!({"amount": 500})))
        .await
        .unwrap();
    let refused = engine.wait_for_end(&refused.id).await.unwrap();
    assert_eq!(refused.status, InstanceStatus::Completed, "{refused:?}");
    assert_eq!(refused.path, ["s", "declined", "cancelled"]);
}

#[tokio::test]
async fn a_child_that_fails_without_an_error_event_is_an_incident_of_its_caller() {
    let engine = engine().await;
    let broken = r#"
process: broken
nodes:
  begin: { start: ~, next: divide }
  divide: { script: 'let x = missing_variable + 1;', next: done }
  done: { end: ~ }
"#;
    let caller = r#"
process: caller
nodes:
  begin: { start: ~, next: run_it }
  run_it: { call: broken, next: done }
  done: { end: ~ }
"#;
    engine.deploy(&yaml(broken), None).await.unwrap();
    engine.deploy(&yaml(caller), None).await.unwrap();
    let started = engine.start("caller", Map::new()).await.unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Failed);
    let incident = &done.incidents[0];
    assert_eq!(incident.node, "run_it");
    assert!(
        incident
            .message
            .starts_with(&format!("called instance `{}.2` failed: ", started.id)),
        "{incident:?}"
    );
}

#[tokio::test]
async fn an_incident_of_a_waiting_child_or_grandchild_shows_on_every_caller_above_it() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let post = handler(move |_ctx: JobContext| {
        let ok = flag.load(std::sync::atomic::Ordering::SeqCst);
        async move {
            if ok {
                Ok(Map::new())
            } else {
                Err(HandlerError::new("ledger locked"))
            }
        }
    });
    let engine = Engine::builder()
        .handler("post", post)
        .build()
        .await
        .unwrap();
    let ledger = r#"
process: ledger
nodes:
  begin: { start: ~, next: post_it }
  post_it: { service: post, retry: 0, next: done }
  done: { end: ~ }
"#;
    let invoice = r#"
process: invoice
nodes:
  begin: { start: ~, next: book }
  book: { call: ledger, next: done }
  done: { end: ~ }
"#;
    let order = r#"
process: order
nodes:
  begin: { start: ~, next: bill }
  bill: { call: invoice, next: done }
  done: { end: ~ }
"#;
    for text in [ledger, invoice, order] {
        engine.deploy(&yaml(text), None).await.unwrap();
    }
    let started = engine.start("order", Map::new()).await.unwrap();
    let child = format!("{}.2", started.id);
    let grandchild = format!("{child}.2");
    let mut events = engine.subscribe();
    let mut top = engine.instance(&started.id).unwrap();
    for _ in 0..100 {
        if !top.child_incidents.is_empty() {
            break;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), events.recv()).await;
        top = engine.instance(&started.id).unwrap();
    }
    let incident = &top.child_incidents[0];
    assert_eq!(top.child_incidents.len(), 1, "{top:?}");
    assert_eq!(incident.call, "bill");
    assert_eq!(incident.instance, grandchild);
    assert_eq!(incident.node, "post_it");
    assert_eq!(incident.message, "ledger locked");
    let activation = incident
        .activation
        .expect("a job's incident can be retried");
    // The middle caller shows it too, under its own call activity.
    let middle = engine.instance(&child).unwrap();
    assert_eq!(middle.child_incidents.len(), 1);
    assert_eq!(middle.child_incidents[0].call, "book");
    // So does a listing.
    let page = engine
        .list_instances(&InstanceFilter::default(), None, 10)
        .unwrap();
    let listed = page.items.iter().find(|i| i.id == started.id).unwrap();
    assert_eq!(listed.child_incidents, top.child_incidents);

    // Retried where it happened, it clears on every caller, and the whole chain ends.
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    engine
        .retry_incident(&grandchild, activation)
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert!(engine
        .instance(&started.id)
        .unwrap()
        .child_incidents
        .is_empty());
}

const SAME_FILE_CALLS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:process id="ship" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:callActivity id="get_quote" calledElement="quote">
      <bpmn:extensionElements>
        <camunda:in source="kg" target="weight" />
        <camunda:out source="price" target="freight" />
      </bpmn:extensionElements>
    </bpmn:callActivity>
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="get_quote" />
    <bpmn:sequenceFlow id="f2" sourceRef="get_quote" targetRef="e" />
  </bpmn:process>
  <bpmn:process id="quote" isExecutable="false">
    <bpmn:startEvent id="qs" />
    <bpmn:scriptTask id="price_it" scriptFormat="rhai"><bpmn:script>let price = weight * 2; let internal = true;</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="qe" />
    <bpmn:sequenceFlow id="q1" sourceRef="qs" targetRef="price_it" />
    <bpmn:sequenceFlow id="q2" sourceRef="price_it" targetRef="qe" />
  </bpmn:process>
</bpmn:definitions>"#;

#[tokio::test]
async fn a_same_file_call_with_mappings_runs_as_a_child_with_variables_of_its_own() {
    let engine = engine().await;
    engine
        .deploy(&bpmn(SAME_FILE_CALLS), Some("ship"))
        .await
        .unwrap();
    let started = engine.start("ship", vars(json!({"kg": 5}))).await.unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    // Only the mapped output comes back: neither the child's input nor its own variables land in
    // the caller, as they would if the called process ran inline in the caller's scope.
    assert_eq!(done.variables, vars(json!({"kg": 5, "freight": 10})));
    assert_eq!(done.path, ["s", "get_quote", "e"]);
    let child = engine.instance(&format!("{}.2", started.id)).unwrap();
    assert_eq!(child.path, ["qs", "price_it", "qe"]);
}

#[tokio::test]
async fn cancelling_the_caller_cancels_its_child() {
    let engine = engine().await;
    let child = r#"
process: approve
nodes:
  begin: { start: ~, next: review }
  review: { user: ~, next: done }
  done: { end: ~ }
"#;
    let caller = r#"
process: request
nodes:
  begin: { start: ~, next: approval }
  approval: { call: approve, next: done }
  done: { end: ~ }
"#;
    engine.deploy(&yaml(child), None).await.unwrap();
    engine.deploy(&yaml(caller), None).await.unwrap();
    let started = engine.start("request", Map::new()).await.unwrap();
    let child_id = format!("{}.2", started.id);
    engine.wait_idle().await;
    let waiting = engine.instance(&started.id).unwrap();
    assert!(matches!(
        waiting.waiting_on[0].child.as_deref(),
        Some(id) if id == child_id
    ));
    assert_eq!(
        engine.instance(&child_id).unwrap().status,
        InstanceStatus::Waiting
    );
    engine.cancel(&started.id).await.unwrap();
    engine.wait_idle().await;
    assert_eq!(
        engine.instance(&child_id).unwrap().status,
        InstanceStatus::Terminated
    );
    assert_eq!(
        engine.instance(&started.id).unwrap().status,
        InstanceStatus::Terminated
    );
}

fn versioned(value: u32) -> Definitions {
    yaml(&format!(
        "process: child\nnodes:\n  begin: {{ start: ~, next: set }}\n  set: {{ script: 'let v = {value};', next: done }}\n  done: {{ end: ~ }}\n"
    ))
}

fn caller(name: &str, call: &str) -> Definitions {
    yaml(&format!(
        "process: {name}\nnodes:\n  begin: {{ start: ~, next: c }}\n  c: {{ call: {{ process: child, {call} }}, next: done }}\n  done: {{ end: ~ }}\n"
    ))
}

async fn run(engine: &Engine, process: &str) -> InstanceInfo {
    let started = engine.start(process, Map::new()).await.unwrap();
    engine.wait_for_end(&started.id).await.unwrap()
}

#[tokio::test]
async fn call_activities_bind_the_latest_the_deployment_or_a_fixed_version() {
    let clock = crate::clock::VirtualClock::starting_at(1_000);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine.deploy(&versioned(1), None).await.unwrap();
    clock.advance(std::time::Duration::from_millis(10));
    let by_deployment = caller("by_deployment", "binding: deployment");
    engine.deploy(&by_deployment, None).await.unwrap();
    engine
        .deploy(&caller("by_latest", "binding: latest"), None)
        .await
        .unwrap();
    clock.advance(std::time::Duration::from_millis(10));
    engine.deploy(&versioned(2), None).await.unwrap();
    engine.deploy(&versioned(3), None).await.unwrap();
    engine
        .deploy(&caller("by_version", "version: 2"), None)
        .await
        .unwrap();
    engine
        .deploy(&caller("by_missing", "version: 9"), None)
        .await
        .unwrap();
    let v = |info: InstanceInfo| info.variables.get("v").cloned();
    assert_eq!(v(run(&engine, "by_deployment").await), Some(json!(1)));
    assert_eq!(v(run(&engine, "by_latest").await), Some(json!(3)));
    assert_eq!(v(run(&engine, "by_version").await), Some(json!(2)));
    let missing = run(&engine, "by_missing").await;
    assert_eq!(missing.status, InstanceStatus::Failed);
    assert_eq!(
        missing.incidents[0].message,
        "called process `child` has no deployed version 9"
    );
}

#[tokio::test]
async fn a_process_may_call_itself_until_the_depth_limit() {
    let engine = engine().await;
    let countdown = r#"
process: countdown
nodes:
  begin: { start: ~, next: more }
  more:
    exclusive:
      - { when: n > 0, to: again }
      - { otherwise: done }
  again:
    call: countdown
    inputs: { n: n - 1 }
    outputs: { total: total + 1 }
    next: done
  done: { end: ~ }
"#;
    engine.deploy(&yaml(countdown), None).await.unwrap();
    let started = engine
        .start("countdown", vars(json!({"n": 3, "total": 0})))
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    assert_eq!(done.variables.get("total"), Some(&json!(3)));

    let endless = engine
        .start("countdown", vars(json!({"n": 1000, "total": 0})))
        .await
        .unwrap();
    let failed = engine.wait_for_end(&endless.id).await.unwrap();
    assert_eq!(failed.status, InstanceStatus::Failed);
    // The deepest caller says why; every caller above it names the child that failed.
    let deepest = (0..MAX_CALL_DEPTH).fold(endless.id.clone(), |id, _| format!("{id}.3"));
    let deepest = engine.instance(&deepest).unwrap();
    assert!(
        deepest.incidents[0]
            .message
            .starts_with(&format!("call depth limit {MAX_CALL_DEPTH} reached")),
        "{:?}",
        deepest.incidents
    );
    assert!(failed.incidents[0].message.contains("call depth limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_child_and_its_caller_go_on_after_a_restart_on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let child = r#"
process: approve
nodes:
  begin: { start: ~, next: review }
  review: { user: ~, next: done }
  done: { end: ~ }
"#;
    let parent = r#"
process: request
nodes:
  begin: { start: ~, next: approval }
  approval: { call: approve, outputs: { approved: ok }, next: done }
  done: { end: ~ }
"#;
    let open = || async {
        let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
        Engine::builder().store(store).build().await.unwrap()
    };
    let id = {
        let engine = open().await;
        engine.deploy(&yaml(child), None).await.unwrap();
        engine.deploy(&yaml(parent), None).await.unwrap();
        let started = engine.start("request", Map::new()).await.unwrap();
        engine.wait_idle().await;
        engine.shutdown().await;
        started.id
    };
    let engine = open().await;
    let child_id = format!("{id}.2");
    let child = engine.instance(&child_id).unwrap();
    assert_eq!(child.status, InstanceStatus::Waiting);
    let review = child.waiting_on[0].activation;
    engine
        .complete_task(&child_id, review, vars(json!({"ok": true})))
        .await
        .unwrap();
    let done = engine.wait_for_end(&id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    assert_eq!(done.variables.get("approved"), Some(&json!(true)));
    assert!(done.waiting_on.is_empty());
}

#[tokio::test]
async fn deploying_a_process_deploys_the_processes_of_its_file_it_calls() {
    let file = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="main" isExecutable="true">
    <bpmn:startEvent id="s" />
    <bpmn:callActivity id="first" calledElement="add" />
    <bpmn:callActivity id="second" calledElement="add" />
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="first" />
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="second" />
    <bpmn:sequenceFlow id="f3" sourceRef="second" targetRef="e" />
  </bpmn:process>
  <bpmn:process id="add" isExecutable="false">
    <bpmn:startEvent id="as" />
    <bpmn:scriptTask id="inc" scriptFormat="rhai"><bpmn:script>n += 1;</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="ae" />
    <bpmn:sequenceFlow id="g1" sourceRef="as" targetRef="inc" />
    <bpmn:sequenceFlow id="g2" sourceRef="inc" targetRef="ae" />
  </bpmn:process>
</bpmn:definitions>"#;
    let engine = engine().await;
    let deployed = engine.deploy(&bpmn(file), Some("main")).await.unwrap();
    assert_eq!(deployed.deployed.process_id, "main");
    let mut ids: Vec<String> = engine
        .deployments()
        .iter()
        .map(|d| d.process_id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["add", "main"]);
    let started = engine.start("main", vars(json!({"n": 0}))).await.unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed, "{done:?}");
    // The first call runs inline, the second as a child instance: both add one.
    assert_eq!(done.path, ["s", "as", "inc", "ae", "first", "second", "e"]);
    assert_eq!(done.variables.get("n"), Some(&json!(2)));
}

#[tokio::test]
async fn a_caller_settles_only_once_its_childs_timers_have_fired() {
    let clock = crate::clock::VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let child = r#"
process: later
nodes:
  begin: { start: ~, next: pause }
  pause: { catch: { timer: { duration: PT2H } }, next: done }
  done: { end: ~ }
"#;
    let caller = r#"
process: waits
nodes:
  begin: { start: ~, next: c }
  c: { call: later, next: done }
  done: { end: ~ }
"#;
    engine.deploy(&yaml(child), None).await.unwrap();
    engine.deploy(&yaml(caller), None).await.unwrap();
    let started = engine.start("waits", Map::new()).await.unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(settled.status, InstanceStatus::Completed, "{settled:?}");
    assert_eq!(clock.now_ms(), 2 * 3_600_000);
}
