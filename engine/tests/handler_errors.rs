//! A service-task handler that reports a business error (`HandlerError::bpmn_error`) throws that
//! BPMN error on its task: the error boundary event with the code catches it, in YAML and in
//! BPMN; a code no boundary catches fails the instance; a permanent failure becomes an incident
//! without retries.

use flowbot_engine::executor::InstanceStatus;
use flowbot_engine::runtime::{handler, Engine, HandlerError, HistoryEntry, JobContext};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const YAML: &str = r#"
process: payment
nodes:
  begin: { start: ~, next: charge }
  charge: { service: charge_card, next: paid }
  declined:
    boundary: { attached_to: charge, error: CARD_DECLINED }
    next: ask_for_another_card
  ask_for_another_card: { user: ~, next: done }
  paid: { end: ~ }
  done: { end: ~ }
"#;

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                  xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:error id="Error_declined" errorCode="CARD_DECLINED" />
  <bpmn:process id="payment" isExecutable="true">
    <bpmn:startEvent id="begin" />
    <bpmn:sequenceFlow id="f1" sourceRef="begin" targetRef="charge" />
    <bpmn:serviceTask id="charge" camunda:type="external" camunda:topic="charge_card" />
    <bpmn:sequenceFlow id="f2" sourceRef="charge" targetRef="paid" />
    <bpmn:endEvent id="paid" />
    <bpmn:boundaryEvent id="declined" attachedToRef="charge">
      <bpmn:errorEventDefinition errorRef="Error_declined" />
    </bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="declined" targetRef="ask_for_another_card" />
    <bpmn:userTask id="ask_for_another_card" />
    <bpmn:sequenceFlow id="f4" sourceRef="ask_for_another_card" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>
"#;

fn definitions(name: &str) -> flowbot_engine::model::Definitions {
    let (defs, diagnostics) = if name.ends_with(".yaml") {
        flowbot_engine::yaml::parse_yaml(Path::new(name), YAML)
    } else {
        flowbot_engine::bpmn::parse_bpmn(Path::new(name), BPMN.as_bytes())
    };
    defs.unwrap_or_else(|| panic!("{name} does not parse: {diagnostics:?}"))
}

/// An engine whose `charge_card` handler fails with `error`, counting its calls.
async fn engine_failing_with(error: HandlerError, calls: Arc<AtomicU32>) -> Engine {
    Engine::builder()
        .handler(
            "charge_card",
            handler(move |_job: JobContext| {
                let (error, calls) = (error.clone(), calls.clone());
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<Map<String, Value>, _>(error)
                }
            }),
        )
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bpmn_error_from_a_handler_fires_the_error_boundary_in_yaml_and_bpmn() {
    for file in ["payment.yaml", "payment.bpmn"] {
        let calls = Arc::new(AtomicU32::new(0));
        let engine = engine_failing_with(
            HandlerError::bpmn_error("CARD_DECLINED", "the card was declined"),
            calls.clone(),
        )
        .await;
        engine.deploy(&definitions(file), None).await.unwrap();
        let started = engine.start("payment", Map::new()).await.unwrap();
        let settled = engine.wait_settled(&started.id).await.unwrap();
        assert_eq!(settled.status, InstanceStatus::Waiting, "{file}");
        assert_eq!(
            settled
                .waiting_on
                .iter()
                .map(|w| w.node.as_str())
                .collect::<Vec<_>>(),
            ["ask_for_another_card"],
            "{file}: the boundary path runs instead of the normal one"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{file}: no retries");
        let thrown =
            engine
                .history(&started.id)
                .unwrap()
                .into_iter()
                .find_map(|record| match record.entry {
                    HistoryEntry::JobErrorThrown { code, message, .. } => Some((code, message)),
                    _ => None,
                });
        assert_eq!(
            thrown,
            Some(("CARD_DECLINED".into(), "the card was declined".into())),
            "{file}"
        );
        let task = settled.waiting_on[0].activation;
        let done = engine
            .complete_task(&started.id, task, json!({}).as_object().cloned().unwrap())
            .await
            .unwrap();
        assert_eq!(done.path.last().map(String::as_str), Some("done"), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_code_no_boundary_catches_fails_the_instance() {
    let calls = Arc::new(AtomicU32::new(0));
    let engine = engine_failing_with(
        HandlerError::bpmn_error("FRAUD_SUSPECTED", "blocked by the bank"),
        calls,
    )
    .await;
    engine
        .deploy(&definitions("payment.yaml"), None)
        .await
        .unwrap();
    let started = engine.start("payment", Map::new()).await.unwrap();
    let ended = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(ended.status, InstanceStatus::Failed);
    assert!(
        ended.incidents[0].message.contains("FRAUD_SUSPECTED"),
        "{:?}",
        ended.incidents
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_an_incident_at_once_without_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let engine = engine_failing_with(
        HandlerError::permanent("the account is closed"),
        calls.clone(),
    )
    .await;
    engine
        .deploy(&definitions("payment.yaml"), None)
        .await
        .unwrap();
    let started = engine.start("payment", Map::new()).await.unwrap();
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(settled.status, InstanceStatus::Waiting);
    assert_eq!(settled.engine_incidents.len(), 1);
    assert_eq!(settled.engine_incidents[0].message, "the account is closed");
    assert_eq!(engine.incidents().len(), 1, "listed for an operator");
}
