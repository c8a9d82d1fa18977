//! The engine with business rules: effects commit with their step, refused steps leave nothing
//! behind, and the daily settlement workflow (rule 7) runs on the engine's timers.

use super::record::decode;
use super::test_store::RecordingStore;
use super::*;
use crate::clock::VirtualClock;
use crate::executor::ExecError;
use crate::executor::InstanceStatus;
use crate::rules::Effect as RuleEffect;
use crate::rules::{RuleEngine, RulesConfig, StdlibConfig};
use crate::store::SnapshotChange;
use crate::store::{StepCommit, Store};
use serde_json::json;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
const WORKFLOWS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../workflows");

fn workflow(name: &str) -> Definitions {
    let path = Path::new(WORKFLOWS).join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let (defs, diagnostics) = crate::yaml::parse_yaml(&path, &text);
    defs.unwrap_or_else(|| panic!("{name} does not parse: {diagnostics:?}"))
}

fn inline_workflow(text: &str) -> Definitions {
    let (defs, diagnostics) = crate::yaml::parse_yaml(Path::new("inline.yaml"), text);
    defs.unwrap_or_else(|| panic!("does not parse: {diagnostics:?}"))
}

/// The decisions of the shipped workflows (the order process's review table).
fn workflow_decisions() -> Arc<crate::dmn::Decisions> {
    let (file, diagnostics) =
        crate::dmn::parse_dmn_file(&Path::new(WORKFLOWS).join("order_review.dmn"));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let (decisions, diagnostics) = crate::dmn::Decisions::build(&[file.unwrap()]);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    Arc::new(decisions)
}

/// `builder` with `rules` as its hooks and their script runtime, and the workflows' decisions.
fn with_rules(builder: EngineBuilder, rules: &Arc<RuleEngine>) -> EngineBuilder {
    builder
        .rules(Arc::new(SharedRuleHooks::new(rules.clone())))
        .scripts(rules.script_runtime())
        .decisions(workflow_decisions())
}

fn rule_engine(clock: Option<Arc<dyn Clock>>) -> Arc<RuleEngine> {
    let mut stdlib = StdlibConfig::default();
    if let Some(clock) = clock {
        stdlib = stdlib.with_engine_clock(clock);
    }
    Arc::new(
        RuleEngine::load(
            RULES,
            &RulesConfig {
                stdlib,
                ..RulesConfig::default()
            },
        )
        .unwrap(),
    )
}

/// The rule effects a commit appends to the notification log.
fn rule_effects(commit: &StepCommit) -> Vec<RuleEffect> {
    commit
        .notifications
        .iter()
        .map(|bytes| {
            decode::<super::notifications::StoredNotification>(bytes, "notification")
                .unwrap()
                .effect
        })
        .collect()
}

fn snapshot_status(commit: &StepCommit) -> Option<String> {
    let bytes = match commit.snapshot.as_ref()? {
        SnapshotChange::Running(b) | SnapshotChange::Finished(b) => b,
    };
    let stored: StoredInstance = decode(bytes, "instance").unwrap();
    stored
        .instance
        .variables()
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The effects a sink received, with their instance.
type Received = Arc<Mutex<Vec<(String, RuleEffect)>>>;

fn collecting_sink() -> (EffectSink, Received) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let sink: EffectSink = Arc::new(move |instance: &str, effect: &RuleEffect| {
        sink_seen
            .lock()
            .unwrap()
            .push((instance.to_string(), effect.clone()));
        Ok(())
    });
    (sink, seen)
}

#[tokio::test]
async fn variables_set_from_outside_pass_the_guards_or_change_nothing() {
    let rules = rule_engine(None);
    let engine = with_rules(Engine::builder(), &rules)
        .fallback_handler(handler(|_ctx: JobContext| async move { Ok(Map::new()) }))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&workflow("order_processing.yaml"), None)
        .await
        .unwrap();
    let order = json!({"order_id": "SO-3", "customer": "ACME", "amount": 20, "currency": "EUR"});
    let started = engine
        .start("order_processing", order.as_object().cloned().unwrap())
        .await
        .unwrap();
    let before = engine.wait_settled(&started.id).await.unwrap();
    // Rule 1: shipment information before the order awaits shipment is refused as a whole.
    let shipment = json!({"shipment": "DHL, 2 kg", "note": "x"});
    let refused = engine
        .set_variables(&started.id, shipment.as_object().cloned().unwrap())
        .await;
    assert!(
        matches!(&refused, Err(EngineError::Exec(ExecError::VariablesRejected(reason)))
            if reason.contains("shipment information can only be filled in while the order is awaiting shipment")),
        "{refused:?}"
    );
    assert_eq!(
        engine.instance(&started.id).unwrap().variables,
        before.variables
    );
    // Other variables go in, and their change policies run (rule 3 on `status`).
    let status = json!({"status": "on_hold"});
    let changed = engine
        .set_variables(&started.id, status.as_object().cloned().unwrap())
        .await
        .unwrap();
    assert_eq!(changed.variables["status"], "on_hold");
    let told = engine.history(&started.id).unwrap().into_iter().any(|record| {
        matches!(record.entry, HistoryEntry::RuleEffect { effect: RuleEffect::Notify { ref message, .. } }
            if message == "Your order SO-3 is now on hold.")
    });
    assert!(told, "rule 3 told the customer");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_status_change_notifies_the_customer_through_the_outbox_of_the_same_commit() {
    let rules = rule_engine(None);
    let store = Arc::new(RecordingStore::default());
    let (sink, seen) = collecting_sink();
    let engine = with_rules(Engine::builder().store(store.clone()), &rules)
        .effect_sink(sink)
        .fallback_handler(handler(|_ctx: JobContext| async move { Ok(Map::new()) }))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&workflow("order_processing.yaml"), None)
        .await
        .unwrap();
    let order = json!({"order_id": "SO-9", "customer": "ACME", "amount": 99.5, "currency": "EUR", "paid": false,
                        "shipment": {"carrier": "UPS", "weight_kg": 4}});
    let started = engine
        .start("order_processing", order.as_object().cloned().unwrap())
        .await
        .unwrap();
    // Every job runs in a turn of its own; without a text generator the confirmation step
    // waits for its text, which is given here; the order then waits for its shipment.
    let writing = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(writing.waiting_on[0].node, "notify_customer", "{writing:?}");
    let confirmation = json!({"confirmation": "Thank you for order SO-9."});
    engine
        .complete_task(
            &started.id,
            writing.waiting_on[0].activation,
            confirmation.as_object().cloned().unwrap(),
        )
        .await
        .unwrap();
    let waiting = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(waiting.waiting_on[0].node, "ship_order", "{waiting:?}");
    engine
        .complete_task(&started.id, waiting.waiting_on[0].activation, Map::new())
        .await
        .unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);

    // Each order status first appears in a commit whose outbox holds the customer's notification.
    let commits = store.commits.lock().unwrap().clone();
    for (status, label) in [
        ("confirmed", "confirmed"),
        ("awaiting_shipment", "awaiting shipment"),
        ("shipped", "shipped"),
    ] {
        let commit = commits
            .iter()
            .find(|c| snapshot_status(c).as_deref() == Some(status))
            .unwrap_or_else(|| panic!("no commit reached status {status}"));
        let expected = RuleEffect::Notify {
            receiver: "ACME".into(),
            message: format!("Your order SO-9 is now {label}."),
            rule: "notify_customer_status".into(),
        };
        assert!(
            rule_effects(commit).contains(&expected),
            "{status}: {:?}",
            rule_effects(commit)
        );
    }
    // The invoice (rule 5) is in the outbox as well, and the history shows the effects.
    let all: Vec<RuleEffect> = commits.iter().flat_map(rule_effects).collect();
    assert!(all
        .iter()
        .any(|e| matches!(e, RuleEffect::Emit { event, .. } if event == "send_invoice")));
    let history = engine.history(&started.id).unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|r| matches!(r.entry, HistoryEntry::RuleEffect { .. }))
            .count(),
        all.len()
    );

    // Once durable, every effect reaches the sink and leaves the outbox.
    let mut rounds = 0;
    while !store.pending_outbox().unwrap().is_empty() {
        rounds += 1;
        assert!(rounds < 10_000, "the outbox is never delivered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.shutdown().await;
    let delivered: Vec<RuleEffect> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    assert_eq!(delivered, all);
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|(instance, _)| instance == &started.id));
}

#[tokio::test]
async fn effects_of_a_refused_completion_are_dropped() {
    let rules = rule_engine(None);
    let store = Arc::new(RecordingStore::default());
    let engine = with_rules(Engine::builder().store(store.clone()), &rules)
        .build()
        .await
        .unwrap();
    let defs = inline_workflow(
        r#"
process: approval
nodes:
  s: { start: ~, next: approve }
  approve:
    user: ~
    next: e
    rules:
      - on: guard_complete
        script: |
          if event.output.approved != true {
            notify("audit", "refused attempt");
            reject("not approved");
          }
      - on: leave
        script: notify("audit", "approved");
  e: { end: ~ }
"#,
    );
    engine.deploy(&defs, None).await.unwrap();
    let started = engine.start("approval", Map::new()).await.unwrap();
    let activation = started.waiting_on[0].activation;
    let refused = engine
        .complete_task(&started.id, activation, Map::new())
        .await;
    assert!(
        matches!(refused, Err(EngineError::Exec(ExecError::Rejected { .. }))),
        "{refused:?}"
    );
    let approved = json!({"approved": true}).as_object().cloned().unwrap();
    let done = engine
        .complete_task(&started.id, activation, approved)
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    let all: Vec<RuleEffect> = store
        .commits
        .lock()
        .unwrap()
        .iter()
        .flat_map(rule_effects)
        .collect();
    assert_eq!(
        all,
        vec![RuleEffect::Notify {
            receiver: "audit".into(),
            message: "approved".into(),
            rule: "inline@15:7".into()
        }]
    );
}

#[tokio::test]
async fn the_daily_settlement_settles_unpaid_orders_at_the_end_of_the_day() {
    // 2026-11-29T10:00:00Z
    let start_ms = 1_795_946_400_000;
    let end_of_day_ms = start_ms + 13 * 3_600_000 + 59 * 60_000;
    let clock = VirtualClock::starting_at(start_ms);
    let rules = rule_engine(Some(Arc::new(clock.clone())));
    let (sink, seen) = collecting_sink();
    let open_orders = handler(|_ctx: JobContext| async move {
        let orders = json!({"open_orders": [
            {"order_id": "PAID", "amount": 10, "created_at": "2026-11-29T08:00:00Z", "paid": true},
            {"order_id": "UNPAID", "amount": 20.5, "created_at": "2026-11-29T09:00:00Z", "paid": false},
            {"order_id": "BY-STATUS", "amount": "7.125", "created_at": "2026-11-28", "payment_status": "open"},
        ]});
        Ok(orders.as_object().cloned().unwrap_or_default())
    });
    let engine = with_rules(Engine::builder().clock(Arc::new(clock.clone())), &rules)
        .handler("open_orders", open_orders)
        .effect_sink(sink)
        .build()
        .await
        .unwrap();
    // Deploying schedules the timer start event: no instance runs before the end of the day.
    engine
        .deploy(&workflow("daily_settlement.yaml"), None)
        .await
        .unwrap();

    // The virtual clock jumps to 23:59 when the engine is idle; that tick starts the day's
    // instance. Wait for the first settlement.
    let mut rounds = 0;
    let settlements = |seen: &[(String, RuleEffect)]| -> Vec<(String, RuleEffect)> {
        seen.iter()
            .filter(|(_, effect)| matches!(effect, RuleEffect::Emit { .. }))
            .cloned()
            .collect()
    };
    while settlements(&seen.lock().unwrap()).len() < 2 {
        rounds += 1;
        assert!(rounds < 10_000, "no settlement arrived");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.shutdown().await;
    let first_day: Vec<(String, RuleEffect)> = settlements(&seen.lock().unwrap())
        .into_iter()
        .take(2)
        .collect();
    // Finance is told of each settlement.
    assert!(seen.lock().unwrap().iter().any(|(_, effect)| matches!(effect,
        RuleEffect::Notify { receiver, message, .. }
            if receiver == "finance" && message == "Order UNPAID is unpaid at the end of 2026-11-29 and was settled: 20.50.")));
    let settle = |order: &str, amount: &str| RuleEffect::Emit {
        event: "settle_order".into(),
        payload: json!({"order_id": order, "amount": amount, "settled_on": "2026-11-29"}),
        rule: "settle_open_orders".into(),
    };
    let effects: Vec<RuleEffect> = first_day.iter().map(|(_, effect)| effect.clone()).collect();
    assert_eq!(
        effects,
        vec![settle("UNPAID", "20.50"), settle("BY-STATUS", "7.12")]
    );
    let day = &first_day[0].0;
    assert_eq!(&first_day[1].0, day, "one instance settles the day");
    let info = engine.instance(day).unwrap();
    assert_eq!(
        info.status,
        InstanceStatus::Completed,
        "each day's instance ends once the day is settled"
    );
    assert_eq!(
        info.variables["settled_orders"],
        json!(["UNPAID", "BY-STATUS"])
    );
    // 2026-11-29T23:59:00Z: the end of the first business day started it.
    let started_by =
        engine
            .history(day)
            .unwrap()
            .into_iter()
            .find_map(|record| match record.entry {
                HistoryEntry::StartedByTimer {
                    node,
                    due_ms,
                    occurrence,
                } => Some((node, due_ms, occurrence)),
                _ => None,
            });
    assert_eq!(
        started_by,
        Some(("end_of_day".to_string(), end_of_day_ms, 1))
    );
}

#[tokio::test]
async fn a_change_of_the_instance_status_runs_the_status_change_rules() {
    let rules = rule_engine(None);
    let store = Arc::new(RecordingStore::default());
    let engine = with_rules(Engine::builder().store(store.clone()), &rules)
        .build()
        .await
        .unwrap();
    let defs = inline_workflow(
        r#"
process: watched
rules:
  - on: status_change
    script: |
      notify("ops", `${event.previous} -> ${event.value}`);
      set("closed_as", event.value);
nodes:
  s: { start: ~, next: review }
  review: { user: ~, next: e }
  e: { end: ~ }
"#,
    );
    engine.deploy(&defs, None).await.unwrap();
    let started = engine.start("watched", Map::new()).await.unwrap();
    assert_eq!(started.variables["closed_as"], json!("waiting"));
    let done = engine
        .complete_task(&started.id, started.waiting_on[0].activation, Map::new())
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(
        done.variables["closed_as"],
        json!("completed"),
        "an ended instance keeps the policy's variables"
    );
    let messages: Vec<String> = store
        .commits
        .lock()
        .unwrap()
        .iter()
        .flat_map(rule_effects)
        .map(|effect| match effect {
            RuleEffect::Notify { message, .. } => message,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(messages, ["running -> waiting", "waiting -> completed"]);
}
