use super::jobs::backoff_ms;
use super::*;
use crate::clock::VirtualClock;
use crate::executor::InstanceStatus;
use crate::model::RetryPolicy;
use crate::model::{EventTrigger, Expr, MessageRef, NodeKind, Span, TaskKind, Timer, TimerKind};
use crate::store::Table;
use crate::store::{Durability, SledStore};
use crate::testkit::*;
use serde_json::json;
use serde_json::{Map, Value};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn vars(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn expr(source: &str) -> Expr {
    Expr {
        language: None,
        source: source.into(),
        span: Span::new(9, 9),
    }
}

fn timer_catch(kind: TimerKind, text: &str) -> NodeKind {
    NodeKind::IntermediateCatchEvent {
        trigger: EventTrigger::Timer(Timer {
            kind,
            expression: expr(text),
            time_zone: None,
        }),
    }
}

fn receive(name: &str, key: &str) -> NodeKind {
    NodeKind::Task(crate::model::Activity::new(TaskKind::Receive {
        message: Some(MessageRef {
            name: Some(name.into()),
            correlation_key: Some(expr(key)),
        }),
    }))
}

fn signal_catch(name: &str) -> NodeKind {
    NodeKind::IntermediateCatchEvent {
        trigger: EventTrigger::Signal {
            name: Some(name.into()),
        },
    }
}

fn service_with_retry(handler: &str, retries: u32, initial: u64, max: u64) -> NodeKind {
    let mut activity = crate::model::Activity::new(TaskKind::Service {
        handler: Some(handler.into()),
    });
    activity.retry = Some(RetryPolicy {
        retries,
        initial_delay_ms: initial,
        max_delay_ms: max,
    });
    NodeKind::Task(activity)
}

/// start → a → end with the given middle node.
fn single(kind: NodeKind) -> Definitions {
    Scope::at_line(1)
        .node("s", start())
        .node("a", kind)
        .node("e", end())
        .chain(&["s", "a", "e"])
        .definitions()
}

const DAY_MS: u64 = 86_400_000;

#[tokio::test]
async fn a_three_day_duration_timer_fires_on_the_virtual_clock() {
    let clock = VirtualClock::starting_at(1_000_000);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(timer_catch(TimerKind::Duration, "P3D")), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    assert_eq!(started.status, InstanceStatus::Waiting);
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.path, vec!["s", "a", "e"]);
    assert_eq!(clock.now_ms(), 1_000_000 + 3 * DAY_MS);
    let history = engine.history(&started.id).unwrap();
    assert!(history.iter().any(|r| matches!(&r.entry, HistoryEntry::TimerArmed { due_ms, .. } if *due_ms == 1_000_000 + 3 * DAY_MS)));
    assert!(history
        .iter()
        .any(|r| matches!(&r.entry, HistoryEntry::TimerFired { node, .. } if node == "a")));
}

#[tokio::test]
async fn a_date_timer_fires_at_its_date() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(
            &single(timer_catch(TimerKind::Date, "2026-12-01T08:00:00Z")),
            None,
        )
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    assert_eq!(
        engine.wait_for_end(&started.id).await.unwrap().status,
        InstanceStatus::Completed
    );
    assert_eq!(clock.now_ms(), 1_796_112_000_000);
}

#[tokio::test]
async fn a_cycle_timer_on_a_catch_event_fires_at_its_first_due_time() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(timer_catch(TimerKind::Cycle, "R5/PT10M")), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    assert_eq!(
        engine.wait_for_end(&started.id).await.unwrap().status,
        InstanceStatus::Completed
    );
    assert_eq!(clock.now_ms(), 600_000);
}

#[tokio::test]
async fn a_timer_written_as_an_expression_takes_its_value_when_the_wait_begins() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    // A variable (Camunda's `${delay}`).
    engine
        .deploy(&single(timer_catch(TimerKind::Duration, "delay")), None)
        .await
        .unwrap();
    let mut variables = Map::new();
    variables.insert("delay".into(), json!("PT7M"));
    let started = engine.start("p", variables).await.unwrap();
    assert_eq!(started.waiting_on[0].timer.as_deref(), Some("PT7M"));
    assert_eq!(started.waiting_on[0].due_ms, Some(420_000));
    assert_eq!(
        engine.wait_for_end(&started.id).await.unwrap().status,
        InstanceStatus::Completed
    );
    assert_eq!(clock.now_ms(), 420_000);

    // Without the variable, the instance stops at the timer with an incident that says why.
    let stuck = engine.start("p", Map::new()).await.unwrap();
    assert_eq!(stuck.incidents.len(), 1, "{stuck:?}");
    assert!(
        stuck.incidents[0].message.contains("delay"),
        "{:?}",
        stuck.incidents
    );
    assert!(stuck.waiting_on.is_empty() || stuck.waiting_on[0].due_ms.is_none());

    // A string literal (SpiffWorkflow's `"PT1S"`).
    engine
        .deploy(&single(timer_catch(TimerKind::Duration, "\"PT1S\"")), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(clock.now_ms(), 421_000);
}

#[tokio::test]
async fn a_daily_cron_timer_waits_for_six_in_the_evening() {
    // 2026-05-04T09:30:00Z
    let clock = VirtualClock::starting_at(1_777_887_000_000);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(timer_catch(TimerKind::Cycle, "0 0 18 * * *")), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    assert_eq!(
        engine.wait_for_end(&started.id).await.unwrap().status,
        InstanceStatus::Completed
    );
    // 2026-05-04T18:00:00Z
    assert_eq!(clock.now_ms(), 1_777_917_600_000);
}

#[tokio::test]
async fn a_bad_timer_definition_is_refused_at_deployment() {
    let engine = Engine::builder()
        .clock(Arc::new(VirtualClock::starting_at(0)))
        .build()
        .await
        .unwrap();
    let error = engine
        .deploy(
            &single(timer_catch(TimerKind::Duration, "10 minutes")),
            None,
        )
        .await
        .unwrap_err();
    let EngineError::Compile(diagnostics) = &error else {
        panic!("{error:?}");
    };
    assert!(
        diagnostics.iter().any(|d| d.is_error()
            && d.message
                .contains("timer of a: invalid timer duration '10 minutes'")
            && d.message
                .contains("nor is it valid Rhai for an expression that gives one")),
        "{diagnostics:?}"
    );
    // Nothing was deployed: the process cannot be started.
    assert!(engine.start("p", Map::new()).await.is_err());
}

#[tokio::test]
async fn messages_correlate_by_name_and_key_including_early_arrival() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(&single(receive("payment", "order_id")), None)
        .await
        .unwrap();
    let a = engine
        .start("p", vars(json!({"order_id": "A"})))
        .await
        .unwrap();
    let b = engine
        .start("p", vars(json!({"order_id": "B"})))
        .await
        .unwrap();

    // B's payment reaches B only, with its variables.
    let delivered = engine
        .correlate_message("payment", Some("B"), vars(json!({"paid": true})))
        .await
        .unwrap();
    assert_eq!(
        delivered,
        Correlation::Delivered {
            instance: b.id.clone(),
            activation: b.waiting_on[0].activation
        }
    );
    let b_done = engine.wait_for_end(&b.id).await.unwrap();
    assert_eq!(b_done.variables["paid"], json!(true));
    assert_eq!(
        engine.instance(&a.id).unwrap().status,
        InstanceStatus::Waiting
    );

    // C's payment comes before C waits: it is buffered, then delivered when C subscribes.
    let early = engine
        .correlate_message("payment", Some("C"), vars(json!({"paid": 42})))
        .await
        .unwrap();
    assert!(matches!(early, Correlation::Buffered { .. }));
    let c = engine
        .start("p", vars(json!({"order_id": "C"})))
        .await
        .unwrap();
    let c_done = engine.wait_for_end(&c.id).await.unwrap();
    assert_eq!(c_done.variables["paid"], json!(42));
    assert!(engine.history(&c.id).unwrap().iter().any(
        |r| matches!(&r.entry, HistoryEntry::MessageCorrelated { name, .. } if name == "payment")
    ));
    // A message with another name does not reach A.
    assert!(matches!(
        engine
            .correlate_message("refund", Some("A"), Map::new())
            .await
            .unwrap(),
        Correlation::Buffered { .. }
    ));
    assert_eq!(
        engine.instance(&a.id).unwrap().status,
        InstanceStatus::Waiting
    );
}

#[tokio::test]
async fn a_buffered_message_expires_after_its_ttl() {
    let clock = VirtualClock::starting_at(0);
    let options = EngineOptions {
        message_ttl: Duration::from_secs(60),
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .options(options)
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(receive("payment", "order_id")), None)
        .await
        .unwrap();
    engine
        .correlate_message("payment", Some("late"), Map::new())
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let started = engine
        .start("p", vars(json!({"order_id": "late"})))
        .await
        .unwrap();
    // Give the engine the chance to (wrongly) deliver the expired message.
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        engine.instance(&started.id).unwrap().status,
        InstanceStatus::Waiting
    );
}

#[tokio::test]
async fn a_signal_reaches_every_waiting_instance() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(&single(signal_catch("close_day")), None)
        .await
        .unwrap();
    let ids: Vec<String> = futures_join(&engine, 3).await;
    assert_eq!(
        engine.broadcast_signal("other", Map::new()).await.unwrap(),
        0
    );
    assert_eq!(
        engine
            .broadcast_signal("close_day", vars(json!({"closed": true})))
            .await
            .unwrap(),
        3
    );
    for id in ids {
        let done = engine.wait_for_end(&id).await.unwrap();
        assert_eq!(done.status, InstanceStatus::Completed);
        assert_eq!(done.variables["closed"], json!(true));
    }
    assert_eq!(
        engine
            .broadcast_signal("close_day", Map::new())
            .await
            .unwrap(),
        0
    );
}

async fn futures_join(engine: &Engine, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(engine.start("p", Map::new()).await.unwrap().id);
    }
    ids
}

#[tokio::test]
async fn a_failing_handler_is_retried_with_exponential_backoff_then_succeeds() {
    let clock = VirtualClock::starting_at(0);
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let flaky = handler(move |ctx: JobContext| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            if ctx.attempt < 3 {
                Err(HandlerError::new(format!(
                    "warehouse offline (attempt {})",
                    ctx.attempt
                )))
            } else {
                Ok(vars(json!({"booked": ctx.idempotency_key})))
            }
        }
    });
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .handler("book", flaky)
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(service_with_retry("book", 5, 1_000, 1_500)), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        done.variables["booked"],
        json!(format!(
            "{}/a/{}",
            started.id, started.waiting_on[0].activation
        ))
    );
    let retries: Vec<Option<u64>> = engine
        .history(&started.id)
        .unwrap()
        .iter()
        .filter_map(|r| match &r.entry {
            HistoryEntry::JobFailed { retry_at_ms, .. } => Some(*retry_at_ms),
            _ => None,
        })
        .collect();
    // 1 s after the first failure, then 2 s capped at 1.5 s.
    assert_eq!(retries, vec![Some(1_000), Some(2_500)]);
}

#[test]
fn backoff_doubles_up_to_the_maximum() {
    let policy = RetryPolicy {
        retries: 10,
        initial_delay_ms: 100,
        max_delay_ms: 1_000,
    };
    let delays: Vec<u64> = (1..=6).map(|a| backoff_ms(&policy, a)).collect();
    assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
    assert_eq!(backoff_ms(&policy, 200), 1_000);
}

#[tokio::test]
async fn exhausted_retries_raise_an_incident_that_an_operator_can_retry_or_resolve() {
    let clock = VirtualClock::starting_at(0);
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let h = handler(move |_ctx: JobContext| {
        let ok = flag.load(Ordering::SeqCst);
        async move {
            if ok {
                Ok(vars(json!({"fixed": true})))
            } else {
                Err(HandlerError::new("ledger locked"))
            }
        }
    });
    let engine = Engine::builder()
        .clock(Arc::new(clock))
        .handler("post", h)
        .build()
        .await
        .unwrap();
    engine
        .deploy(&single(service_with_retry("post", 2, 10, 100)), None)
        .await
        .unwrap();

    let first = engine.start("p", Map::new()).await.unwrap();
    let incident = wait_for_incident(&engine, &first.id).await;
    assert_eq!(incident.attempts, 3);
    assert_eq!(incident.message, "ledger locked");
    assert_eq!(
        engine.instance(&first.id).unwrap().status,
        InstanceStatus::Waiting
    );

    // Retry after the cause is fixed.
    healthy.store(true, Ordering::SeqCst);
    engine
        .retry_incident(&first.id, incident.activation)
        .await
        .unwrap();
    let done = engine.wait_for_end(&first.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables["fixed"], json!(true));

    // Resolve by hand.
    healthy.store(false, Ordering::SeqCst);
    let second = engine.start("p", Map::new()).await.unwrap();
    let incident = wait_for_incident(&engine, &second.id).await;
    let resolved = engine
        .resolve_incident(
            &second.id,
            incident.activation,
            vars(json!({"posted_by": "operator"})),
        )
        .await
        .unwrap();
    assert_eq!(resolved.status, InstanceStatus::Completed);
    assert!(resolved.engine_incidents.is_empty());
    let err = engine
        .resolve_incident(&second.id, incident.activation, Map::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ended") || err.to_string().contains("incident"),
        "{err}"
    );
}

async fn wait_for_incident(engine: &Engine, id: &str) -> EngineIncident {
    let mut events = engine.subscribe();
    loop {
        if let Some(incident) = engine.instance(id).unwrap().engine_incidents.first() {
            return incident.clone();
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
}

#[tokio::test]
async fn a_running_instance_keeps_its_version_across_a_redeploy() {
    let engine = Engine::builder().build().await.unwrap();
    let v1 = Scope::at_line(1)
        .node("s", start())
        .node("review", user())
        .node("mark", script("let version = 1;"))
        .node("e", end())
        .chain(&["s", "review", "mark", "e"])
        .definitions();
    let v2 = Scope::at_line(1)
        .node("s", start())
        .node("review", user())
        .node("mark", script("let version = 2;"))
        .node("e", end())
        .chain(&["s", "review", "mark", "e"])
        .definitions();
    let first = engine.deploy(&v1, None).await.unwrap();
    assert!(first.created);
    assert_eq!(first.deployed.version, 1);
    let old = engine.start("p", Map::new()).await.unwrap();
    let again = engine.deploy(&v1, None).await.unwrap();
    assert!(
        !again.created,
        "identical content must not create a version"
    );
    assert_eq!(again.deployed.version, 1);
    let second = engine.deploy(&v2, None).await.unwrap();
    assert!(second.created);
    assert_eq!(second.deployed.version, 2);
    assert_ne!(first.deployed.content_hash, second.deployed.content_hash);
    let new = engine.start("p", Map::new()).await.unwrap();
    assert_eq!((old.version, new.version), (1, 2));
    let old_done = engine
        .complete_task(&old.id, old.waiting_on[0].activation, Map::new())
        .await
        .unwrap();
    let new_done = engine
        .complete_task(&new.id, new.waiting_on[0].activation, Map::new())
        .await
        .unwrap();
    assert_eq!(old_done.variables["version"], json!(1));
    assert_eq!(new_done.variables["version"], json!(2));
    assert_eq!(engine.deployments().len(), 2);
}

#[tokio::test]
async fn completing_a_task_that_is_not_open_is_an_error() {
    let engine = Engine::builder().build().await.unwrap();
    engine.deploy(&single(user()), None).await.unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let err = engine
        .complete_task(&started.id, 999, Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::NoSuchWait {
                activation: 999,
                ..
            }
        ),
        "{err}"
    );
    let err = engine.start("nope", Map::new()).await.unwrap_err();
    assert!(matches!(err, EngineError::UnknownProcess(_)), "{err}");
    assert!(matches!(
        engine.instance("p-no-such").unwrap_err(),
        EngineError::UnknownInstance(_)
    ));
}

#[tokio::test]
async fn cancel_drops_waits_and_subscriptions() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(&single(signal_catch("go")), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let cancelled = engine.cancel(&started.id).await.unwrap();
    assert_eq!(cancelled.status, InstanceStatus::Terminated);
    assert_eq!(engine.broadcast_signal("go", Map::new()).await.unwrap(), 0);
}

#[tokio::test]
async fn subscribers_see_durable_history_events() {
    let engine = Engine::builder().build().await.unwrap();
    engine.deploy(&single(task()), None).await.unwrap();
    let mut events = engine.subscribe();
    let started = engine.start("p", Map::new()).await.unwrap();
    let mut kinds = Vec::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        assert_eq!(event.instance, started.id);
        if let HistoryEntry::Executor { event } = &event.record.entry {
            kinds.push(
                serde_json::to_value(event).unwrap()["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if kinds.last().map(String::as_str) == Some("instance_completed") {
            break;
        }
    }
    assert_eq!(kinds.first().map(String::as_str), Some("instance_started"));
    assert_eq!(kinds.last().map(String::as_str), Some("instance_completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_does_not_block_other_instances() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let opened = gate.clone();
    let slow = handler(move |ctx: JobContext| {
        let opened = opened.clone();
        async move {
            if ctx.variables.get("slow") == Some(&json!(true)) {
                opened.notified().await;
            }
            Ok(Map::new())
        }
    });
    let engine = Engine::builder()
        .handler("work", slow)
        .build()
        .await
        .unwrap();
    engine.deploy(&single(service("work")), None).await.unwrap();
    let blocked = engine
        .start("p", vars(json!({"slow": true})))
        .await
        .unwrap();
    for _ in 0..20 {
        let quick = engine
            .start("p", vars(json!({"slow": false})))
            .await
            .unwrap();
        assert_eq!(
            engine.wait_for_end(&quick.id).await.unwrap().status,
            InstanceStatus::Completed
        );
    }
    assert_eq!(
        engine.instance(&blocked.id).unwrap().status,
        InstanceStatus::Waiting
    );
    gate.notify_one();
    assert_eq!(
        engine.wait_for_end(&blocked.id).await.unwrap().status,
        InstanceStatus::Completed
    );
}

/// Process `p`: the job `charge`, then an hour's wait (`wait`), then the end.
fn charge_then_wait() -> crate::model::Definitions {
    Scope::at_line(1)
        .node("s", start())
        .node("charge", service("charge"))
        .node("wait", timer_catch(TimerKind::Duration, "PT1H"))
        .node("e", end())
        .chain(&["s", "charge", "wait", "e"])
        .definitions()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_resumes_instances_and_records_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let defs = charge_then_wait();
    let clock = VirtualClock::starting_at(0);
    let effects = Arc::new(Mutex::new(Vec::<String>::new()));
    let ids = {
        // First run: the handler never answers, as if the process died while calling it.
        let never = handler(|_ctx: JobContext| async { std::future::pending().await });
        let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
        let engine = Engine::builder()
            .store(store)
            .clock(Arc::new(clock.clone()))
            .handler("charge", never)
            .build()
            .await
            .unwrap();
        engine.deploy(&defs, None).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(engine.start("p", vars(json!({"n": i}))).await.unwrap().id);
        }
        engine.shutdown().await;
        ids
    };
    let recorded = effects.clone();
    let charge = handler(move |ctx: JobContext| {
        let recorded = recorded.clone();
        async move {
            let mut log = recorded.lock().unwrap();
            if !log.contains(&ctx.idempotency_key) {
                log.push(ctx.idempotency_key.clone());
            }
            Ok(Map::new())
        }
    });
    let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
    let engine = Engine::builder()
        .store(store)
        .clock(Arc::new(clock.clone()))
        .handler("charge", charge)
        .build()
        .await
        .unwrap();
    assert_eq!(engine.deployments().len(), 1);
    for id in &ids {
        let done = engine.wait_for_end(id).await.unwrap();
        assert_eq!(done.status, InstanceStatus::Completed, "{id}");
        assert_eq!(done.path, vec!["s", "charge", "wait", "e"]);
    }
    let log = effects.lock().unwrap().clone();
    assert_eq!(log.len(), 5, "{log:?}");
    for id in &ids {
        let completions = engine
            .inner
            .store
            .scan(Table::Completions, format!("{id}/").as_bytes())
            .unwrap();
        assert_eq!(completions.len(), 1, "{id}");
    }
}

#[tokio::test]
async fn a_job_completion_delivered_twice_is_applied_once() {
    let defs = charge_then_wait();
    let clock = VirtualClock::starting_at(0);
    // The handler never answers: the test delivers the completions itself.
    let never = handler(|_ctx: JobContext| async { std::future::pending().await });
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .handler("charge", never)
        .build()
        .await
        .unwrap();
    engine.deploy(&defs, None).await.unwrap();
    let id = engine.start("p", Map::new()).await.unwrap().id;
    let wait = {
        let live = engine.inner.live_instance(&id).unwrap();
        let guard = live.lock().unwrap();
        guard.stored.instance.waits()[0].clone()
    };
    let deliver = |charged: i64| {
        let outcome = jobs::JobOutcome::Completed(vars(json!({ "charged": charged })));
        engine.inner.complete_job(&id, &wait, outcome, Vec::new())
    };
    deliver(1).await;
    // A second delivery while the instance waits on its timer, another after it has ended.
    deliver(2).await;
    let waiting = engine.instance(&id).unwrap();
    assert_eq!(waiting.path, vec!["s", "charge"]);
    assert_eq!(waiting.waiting_on[0].node, "wait");
    assert_eq!(waiting.variables["charged"], json!(1));
    clock.advance(Duration::from_secs(3600));
    let done = engine.wait_for_end(&id).await.unwrap();
    deliver(3).await;
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.path, vec!["s", "charge", "wait", "e"]);
    assert_eq!(done.variables["charged"], json!(1));
    let completions = engine
        .inner
        .store
        .scan(Table::Completions, format!("{id}/").as_bytes())
        .unwrap();
    assert_eq!(completions.len(), 1);
}

fn boundary_timer(on: &str, text: &str, interrupting: bool) -> NodeKind {
    NodeKind::BoundaryEvent {
        attached_to: on.into(),
        trigger: EventTrigger::Timer(Timer {
            kind: TimerKind::Duration,
            expression: expr(text),
            time_zone: None,
        }),
        interrupting,
    }
}

/// start → review (user task, 2-day boundary timer → escalate → end_escalated) → end.
fn review_with_deadline(interrupting: bool) -> Definitions {
    Scope::at_line(1)
        .node("s", start())
        .node("review", user())
        .node("deadline", boundary_timer("review", "P2D", interrupting))
        .node("escalate", script("let escalated = true;"))
        .node("e", end())
        .node("e_escalated", end())
        .chain(&["s", "review", "e"])
        .chain(&["deadline", "escalate", "e_escalated"])
        .definitions()
}

#[tokio::test]
async fn an_interrupting_boundary_timer_cancels_the_task_when_due() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&review_with_deadline(true), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(done.variables["escalated"], json!(true));
    assert!(
        !done.path.contains(&"review".to_string()),
        "{:?}",
        done.path
    );
    assert_eq!(clock.now_ms(), 2 * DAY_MS);
}

#[tokio::test]
async fn a_boundary_timer_is_disarmed_when_the_task_completes_first() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&review_with_deadline(true), None)
        .await
        .unwrap();
    // Keep the engine busy so that virtual time cannot jump before the task is completed.
    let started = {
        let _busy = engine.inner.busy();
        let started = engine.start("p", Map::new()).await.unwrap();
        let review = started
            .waiting_on
            .iter()
            .find(|w| w.node == "review")
            .unwrap()
            .activation;
        engine
            .complete_task(&started.id, review, Map::new())
            .await
            .unwrap();
        started
    };
    let done = engine.wait_for_end(&started.id).await.unwrap();
    assert_eq!(done.path.last().map(String::as_str), Some("e"));
    assert_eq!(
        armed_timers(&engine, &started.id),
        0,
        "the timer stays armed"
    );
    assert_eq!(clock.now_ms(), 0);
}

#[tokio::test]
async fn a_non_interrupting_boundary_timer_fires_while_the_task_goes_on() {
    let clock = VirtualClock::starting_at(0);
    let engine = Engine::builder()
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    engine
        .deploy(&review_with_deadline(false), None)
        .await
        .unwrap();
    let started = engine.start("p", Map::new()).await.unwrap();
    let review = started
        .waiting_on
        .iter()
        .find(|w| w.node == "review")
        .unwrap()
        .activation;
    let mut events = engine.subscribe();
    // Wait until the escalation branch has run; the review task is still open.
    loop {
        let info = engine.instance(&started.id).unwrap();
        if info.variables.get("escalated") == Some(&json!(true)) {
            assert_eq!(info.status, InstanceStatus::Waiting);
            assert!(info.waiting_on.iter().any(|w| w.activation == review));
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    }
    let done = engine
        .complete_task(&started.id, review, Map::new())
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert!(
        done.path.contains(&"escalate".to_string()) && done.path.contains(&"review".to_string()),
        "{:?}",
        done.path
    );
}

#[tokio::test]
async fn an_instance_that_ends_in_its_first_turn_answers_with_its_path_and_variables() {
    let defs = Scope::at_line(1)
        .node("s", start())
        .node("double", script("let total = amount * 2;"))
        .node("e", end())
        .chain(&["s", "double", "e"])
        .definitions();
    let engine = Engine::builder().build().await.unwrap();
    engine.deploy(&defs, None).await.unwrap();
    let info = engine
        .start("p", vars(json!({"amount": 21})))
        .await
        .unwrap();
    assert_eq!(info.status, InstanceStatus::Completed);
    assert_eq!(info.path, vec!["s", "double", "e"]);
    assert_eq!(info.variables, vars(json!({"amount": 21, "total": 42})));
    // The stored record is whole as well: the answer took its data only after the commit.
    let stored = engine.instance(&info.id).unwrap();
    assert_eq!(stored.path, info.path);
    assert_eq!(stored.variables, info.variables);
}

#[tokio::test]
async fn a_named_reader_cursor_is_kept_apart_from_others_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
        let engine = Engine::builder().store(store).build().await.unwrap();
        assert_eq!(engine.reader_cursor("webhook:erp").unwrap(), None);
        engine.store_reader_cursor("webhook:erp", 0).await.unwrap();
        assert_eq!(engine.reader_cursor("webhook:erp").unwrap(), Some(0));
        engine.store_reader_cursor("webhook:erp", 41).await.unwrap();
        engine.store_reader_cursor("webhook:crm", 7).await.unwrap();
        engine.shutdown().await;
    }
    let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
    let engine = Engine::builder().store(store).build().await.unwrap();
    assert_eq!(engine.reader_cursor("webhook:erp").unwrap(), Some(41));
    assert_eq!(engine.reader_cursor("webhook:crm").unwrap(), Some(7));
    // The effect sink's own cursor is not a named reader's.
    assert_eq!(engine.reader_cursor("effect_sink").unwrap(), None);
}
