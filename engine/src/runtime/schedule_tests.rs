//! Timer start events on a schedule, message and signal start events, repeating boundary timers
//! and retry budgets that survive a restart.

use super::record::decode;
use super::*;
use crate::clock::{Clock, Sleep, VirtualClock};
use crate::executor::ExecError;
use crate::executor::InstanceStatus;
use crate::executor::NoHooks;
use crate::script::ScriptLimits;
use crate::store::{Durability, SledStore};
use crate::store::{MemoryStore, Store, Table};
use serde_json::json;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A clock that moves only when the test moves it; a sleep ends once the time has come.
#[derive(Clone)]
struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    fn starting_at(ms: u64) -> Self {
        Self {
            now: Arc::new(watch::channel(ms).0),
        }
    }

    fn set(&self, ms: u64) {
        self.now.send_modify(|now| *now = (*now).max(ms));
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, due_ms: u64) -> Sleep {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            let _ = now.wait_for(|now| *now >= due_ms).await;
        })
    }
}

const HOUR_MS: u64 = 3_600_000;

fn yaml(text: &str) -> Definitions {
    let (defs, diagnostics) = crate::yaml::parse_yaml(Path::new("schedule.yaml"), text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    defs.expect("definitions")
}

/// A process whose timer start event has the given cycle (and zone), then a script and an end.
fn ticking(cycle: &str, zone: Option<&str>, marker: &str) -> Definitions {
    let zone = zone
        .map(|z| format!(", time_zone: {z}"))
        .unwrap_or_default();
    yaml(&format!(
        "process: ticks\nnodes:\n  tick: {{ start: {{ timer: {{ cycle: \"{cycle}\"{zone} }} }}, next: work }}\n  work: {{ script: let marker = \"{marker}\";, next: done }}\n  done: {{ end: ~ }}\n"
    ))
}

/// Polls `condition` while the engine works (no time limit is asserted, only a bound on rounds).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..20_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never happened: {what}");
}

/// (instance, version, tick due time, occurrence) of every instance a timer started, by due time.
fn ticks(engine: &Engine) -> Vec<(String, u32, u64, u32)> {
    let mut out = Vec::new();
    for id in engine.inner.store.instance_ids().unwrap() {
        let version = engine.instance(&id).unwrap().version;
        for record in engine.history(&id).unwrap() {
            if let HistoryEntry::StartedByTimer {
                due_ms, occurrence, ..
            } = record.entry
            {
                out.push((id.clone(), version, due_ms, occurrence));
            }
        }
    }
    out.sort_by_key(|t| t.2);
    out
}

/// An engine on `store` whose time is `clock`.
async fn engine_on(store: Arc<dyn Store>, clock: &(impl Clock + Clone + 'static)) -> Engine {
    Engine::builder()
        .store(store)
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap()
}

fn count(engine: &Engine) -> u64 {
    engine.inner.store.instance_count().unwrap()
}

#[tokio::test]
async fn a_bounded_cycle_starts_one_instance_per_tick_and_stops_after_the_last() {
    let clock = VirtualClock::starting_at(0);
    let engine = engine_on(Arc::new(MemoryStore::new()), &clock).await;
    engine
        .deploy(&ticking("R5/PT10M", None, "v1"), None)
        .await
        .unwrap();
    assert_eq!(
        engine
            .inner
            .store
            .scan(Table::Schedules, b"")
            .unwrap()
            .len(),
        1,
        "deployed with its schedule"
    );
    until("five ticks and no schedule left", || {
        count(&engine) == 5
            && engine
                .inner
                .store
                .scan(Table::Schedules, b"")
                .unwrap()
                .is_empty()
    })
    .await;
    let ticks = ticks(&engine);
    let due: Vec<(u64, u32)> = ticks.iter().map(|t| (t.2, t.3)).collect();
    assert_eq!(
        due,
        (1..=5).map(|k| (k * 600_000, k as u32)).collect::<Vec<_>>()
    );
    for (id, ..) in &ticks {
        let info = engine.wait_for_end(id).await.unwrap();
        assert_eq!(info.status, InstanceStatus::Completed);
        assert_eq!(info.path, vec!["tick", "work", "done"]);
    }
    engine.shutdown().await;
    assert_eq!(count(&engine), 5, "R5 stops after five");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_skips_nor_repeats_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(0);
    {
        let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
        let engine = engine_on(store, &clock).await;
        engine
            .deploy(&ticking("R/PT1H", None, "v1"), None)
            .await
            .unwrap();
        clock.set(2 * HOUR_MS);
        until("two ticks", || count(&engine) == 2).await;
        engine.shutdown().await;
    }
    // Down for three more hours: the ticks at 3, 4 and 5 hours are due when the engine returns.
    clock.set(5 * HOUR_MS);
    let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
    let engine = engine_on(store, &clock).await;
    until("the missed ticks", || count(&engine) >= 5).await;
    clock.set(6 * HOUR_MS);
    until("the next tick", || count(&engine) >= 6).await;
    engine.shutdown().await;
    let due: Vec<u64> = ticks(&engine).iter().map(|t| t.2).collect();
    assert_eq!(
        due,
        (1..=6).map(|h| h * HOUR_MS).collect::<Vec<_>>(),
        "every tick once, in order"
    );
    assert_eq!(count(&engine), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeployment_moves_the_schedule_to_the_new_version() {
    let clock = ManualClock::starting_at(0);
    let engine = engine_on(Arc::new(MemoryStore::new()), &clock).await;
    engine
        .deploy(&ticking("R/PT1H", None, "v1"), None)
        .await
        .unwrap();
    clock.set(HOUR_MS);
    until("the first tick", || count(&engine) == 1).await;
    let v2 = engine
        .deploy(&ticking("R/PT1H", None, "v2"), None)
        .await
        .unwrap();
    assert_eq!(v2.deployed.version, 2);
    clock.set(2 * HOUR_MS);
    until("the second tick", || count(&engine) == 2).await;
    // A changed timer starts over from now.
    engine
        .deploy(&ticking("R/PT30M", None, "v3"), None)
        .await
        .unwrap();
    clock.set(2 * HOUR_MS + 30 * 60_000);
    until("the third tick", || count(&engine) == 3).await;
    engine.shutdown().await;
    let seen: Vec<(u32, u64)> = ticks(&engine).iter().map(|t| (t.1, t.2)).collect();
    assert_eq!(
        seen,
        vec![
            (1, HOUR_MS),
            (2, 2 * HOUR_MS),
            (3, 2 * HOUR_MS + 30 * 60_000)
        ]
    );
    let schedules = engine.inner.store.scan(Table::Schedules, b"").unwrap();
    assert_eq!(schedules.len(), 1);
    let schedule: StoredSchedule = decode(&schedules[0].1, "schedule").unwrap();
    assert_eq!((schedule.version, schedule.next_due_ms), (3, 3 * HOUR_MS));
}

#[tokio::test]
async fn a_cron_start_in_a_business_time_zone_follows_daylight_saving_time() {
    // 2026-03-06T12:00:00Z; New York moves from UTC-5 to UTC-4 on 2026-03-08.
    let clock = VirtualClock::starting_at(1_772_798_400_000);
    let engine = engine_on(Arc::new(MemoryStore::new()), &clock).await;
    engine
        .deploy(
            &ticking("0 0 18 * * *", Some("America/New_York"), "v1"),
            None,
        )
        .await
        .unwrap();
    until("three evenings", || count(&engine) >= 3).await;
    engine.shutdown().await;
    let due: Vec<u64> = ticks(&engine).iter().take(3).map(|t| t.2).collect();
    let utc = |text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis() as u64
    };
    // 18:00 in New York: 23:00 UTC before the change, 22:00 UTC after it.
    assert_eq!(
        due,
        vec![
            utc("2026-03-06T23:00:00Z"),
            utc("2026-03-07T23:00:00Z"),
            utc("2026-03-08T22:00:00Z")
        ]
    );
}

#[tokio::test]
async fn date_and_duration_start_timers_fire_once() {
    let clock = VirtualClock::starting_at(0);
    let engine = engine_on(Arc::new(MemoryStore::new()), &clock).await;
    let once = yaml(
        "process: once
nodes:
  at_date: { start: { timer: { date: \"1970-01-02T00:00:00\", time_zone: Asia/Shanghai } }, next: done }
  after: { start: { timer: { duration: PT1H } }, next: done }
  done: { end: ~ }
",
    );
    engine.deploy(&once, None).await.unwrap();
    until("both fired and no schedule left", || {
        count(&engine) == 2
            && engine
                .inner
                .store
                .scan(Table::Schedules, b"")
                .unwrap()
                .is_empty()
    })
    .await;
    engine.shutdown().await;
    let due: Vec<(u64, u32)> = ticks(&engine).iter().map(|t| (t.2, t.3)).collect();
    // PT1H after the deployment; 1970-01-02 00:00 in Shanghai is 1970-01-01 16:00 UTC.
    assert_eq!(due, vec![(HOUR_MS, 1), (16 * HOUR_MS, 1)]);
}

#[tokio::test]
async fn a_start_timer_that_cannot_be_scheduled_is_refused_at_deployment() {
    let engine = Engine::builder().build().await.unwrap();
    let err = engine
        .deploy(&ticking("every evening", None, "v1"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schedule.yaml:3:")
            && err.contains("every evening")
            && err.contains("found 2 fields"),
        "{err}"
    );
    assert!(engine.deployments().is_empty());
}

#[tokio::test]
async fn a_message_start_event_starts_an_instance_when_nobody_waits() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(
            &yaml("process: orders\nnodes:\n  placed: { start: { message: order_placed }, next: review }\n  review: { user: ~, next: done }\n  done: { end: ~ }\n"),
            None,
        )
        .await
        .unwrap();
    let correlation = engine
        .correlate_message(
            "order_placed",
            Some("SO-1"),
            json!({"order_id": "SO-1"}).as_object().cloned().unwrap(),
        )
        .await
        .unwrap();
    let Correlation::Started { instance } = correlation else {
        panic!("{correlation:?}")
    };
    let info = engine.instance(&instance).unwrap();
    assert_eq!(info.variables["order_id"], json!("SO-1"));
    assert_eq!(info.waiting_on[0].node, "review");
    assert!(engine.history(&instance).unwrap().iter().any(|r| matches!(
        &r.entry,
        HistoryEntry::StartedByMessage { node, name, correlation_key } if node == "placed" && name == "order_placed" && correlation_key.as_deref() == Some("SO-1")
    )));
    // Another name still waits in the buffer.
    assert!(matches!(
        engine
            .correlate_message("other", None, Map::new())
            .await
            .unwrap(),
        Correlation::Buffered { .. }
    ));
}

/// A message a process throws starts the process with that message start event, with the
/// thrower's variables; a form on the task it reaches shows their values.
#[tokio::test]
async fn a_thrown_message_starts_an_instance_with_the_throwers_variables() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(
            &yaml("process: orders\nnodes:\n  placed: { start: { message: order_placed }, next: review }\n  review: { user: { form: [order_id, amount] }, next: done }\n  done: { end: ~ }\n"),
            None,
        )
        .await
        .unwrap();
    engine
        .deploy(
            &yaml("process: mail\nnodes:\n  got: { start: ~, next: sent }\n  sent: { end: { message: order_placed } }\n"),
            None,
        )
        .await
        .unwrap();
    let mail = engine
        .start(
            "mail",
            json!({"order_id": "SO-7"}).as_object().cloned().unwrap(),
        )
        .await
        .unwrap();
    engine.wait_for_end(&mail.id).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks = engine.open_tasks(&TaskFilter::default());
        if !tasks.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tasks.len(), 1, "the thrown message started no instance");
    assert_eq!(tasks[0].process_id, "orders");
    assert_eq!(
        Value::Object(tasks[0].form.clone()),
        json!({"order_id": "SO-7", "amount": null})
    );
}

#[tokio::test]
async fn a_signal_start_event_starts_an_instance() {
    let engine = Engine::builder().build().await.unwrap();
    engine
        .deploy(&yaml("process: closing\nnodes:\n  go: { start: { signal: close_day }, next: check }\n  check: { user: ~, next: done }\n  done: { end: ~ }\n"), None)
        .await
        .unwrap();
    assert_eq!(
        engine
            .broadcast_signal("close_day", Map::new())
            .await
            .unwrap(),
        1
    );
    assert_eq!(engine.running().len(), 1);
}

#[tokio::test]
async fn a_non_interrupting_boundary_cycle_fires_once_per_tick_while_the_task_waits() {
    let clock = VirtualClock::starting_at(0);
    let engine = engine_on(Arc::new(MemoryStore::new()), &clock).await;
    engine
        .deploy(
            &yaml(
                "process: reminders
nodes:
  s: { start: ~, next: review }
  review: { user: ~, next: done }
  remind: { boundary: { attached_to: review, timer: { cycle: R3/PT1H }, interrupting: false }, next: reminder }
  reminder: { script: let reminded = true;, next: reminded }
  reminded: { end: ~ }
  done: { end: ~ }
",
            ),
            None,
        )
        .await
        .unwrap();
    let started = engine.start("reminders", Map::new()).await.unwrap();
    let review = started
        .waiting_on
        .iter()
        .find(|w| w.node == "review")
        .unwrap()
        .activation;
    let settled = engine.wait_settled(&started.id).await.unwrap();
    assert_eq!(settled.status, InstanceStatus::Waiting);
    assert_eq!(
        settled.path.iter().filter(|n| *n == "reminder").count(),
        3,
        "{:?}",
        settled.path
    );
    assert_eq!(clock.now_ms(), 3 * HOUR_MS);
    assert!(
        settled.waiting_on.iter().all(|w| w.node == "review"),
        "the cycle is used up"
    );
    let fired: Vec<u64> = engine
        .history(&started.id)
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.entry, HistoryEntry::TimerFired { .. }))
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(fired, vec![HOUR_MS, 2 * HOUR_MS, 3 * HOUR_MS]);
    let done = engine
        .complete_task(&started.id, review, Map::new())
        .await
        .unwrap();
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(armed_timers(&engine, &started.id), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_and_backoff_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_at(0);
    let calls = Arc::new(AtomicU32::new(0));
    let failing = |calls: Arc<AtomicU32>| {
        handler(move |_ctx: JobContext| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(HandlerError::new("the ledger is down"))
            }
        })
    };
    // Two retries after the first failure, one hour apart, then two hours.
    let defs = yaml(
        "process: billing\nnodes:\n  s: { start: ~, next: charge }\n  charge: { service: ledger, retry: { retries: 2, delay: 1h, max_delay: 2h }, next: e }\n  e: { end: ~ }\n",
    );
    let id = {
        let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
        let engine = Engine::builder()
            .store(store)
            .clock(Arc::new(clock.clone()))
            .handler("ledger", failing(calls.clone()))
            .build()
            .await
            .unwrap();
        engine.deploy(&defs, None).await.unwrap();
        let id = engine.start("billing", Map::new()).await.unwrap().id;
        until("the first failure is recorded", || {
            engine
                .history(&id)
                .unwrap()
                .iter()
                .any(|r| matches!(r.entry, HistoryEntry::JobFailed { .. }))
        })
        .await;
        engine.shutdown().await;
        id
    };
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
    let engine = Engine::builder()
        .store(store)
        .clock(Arc::new(clock.clone()))
        .handler("ledger", failing(calls.clone()))
        .build()
        .await
        .unwrap();
    // The restarted engine waits for the recorded retry time before the second call.
    clock.set(HOUR_MS);
    until("the second failure is recorded", || {
        engine
            .history(&id)
            .unwrap()
            .iter()
            .any(|r| matches!(r.entry, HistoryEntry::JobFailed { attempt: 2, .. }))
    })
    .await;
    clock.set(3 * HOUR_MS);
    let incident = {
        let mut found = None;
        until("the incident", || {
            found = engine
                .instance(&id)
                .unwrap()
                .engine_incidents
                .first()
                .cloned();
            found.is_some()
        })
        .await;
        found.unwrap()
    };
    assert_eq!(
        incident.attempts, 3,
        "the budget counts the call made before the restart"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let failures: Vec<(u32, u64, Option<u64>)> = engine
        .history(&id)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.entry {
            HistoryEntry::JobFailed {
                attempt,
                retry_at_ms,
                ..
            } => Some((attempt, r.at_ms, retry_at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        vec![
            (1, 0, Some(HOUR_MS)),
            (2, HOUR_MS, Some(3 * HOUR_MS)),
            (3, 3 * HOUR_MS, None)
        ]
    );
    engine.shutdown().await;
}

#[test]
fn only_a_non_interrupting_boundary_timer_ticks() {
    let defs = yaml(
        "process: ticking
nodes:
  s: { start: ~, next: review }
  review: { user: ~, next: done }
  remind: { boundary: { attached_to: review, timer: { cycle: R3/PT1H }, interrupting: false }, next: reminded }
  reminded: { end: ~ }
  done: { end: ~ }
",
    );
    let scripts = Arc::new(ScriptRuntime::new(&ScriptLimits::default()));
    let (process, _) = compile(&defs, None, &scripts, &crate::graph::Catalog::default()).unwrap();
    let (mut instance, step) = Instance::start(&process, "t-1", Map::new(), &NoHooks).unwrap();
    let wait_of = |node: &str| {
        step.new_waits
            .iter()
            .find(|w| w.node == node)
            .unwrap()
            .activation
    };
    let (timer, review) = (wait_of("remind"), wait_of("review"));
    for _ in 0..2 {
        instance.tick_boundary(&process, timer, &NoHooks).unwrap();
    }
    assert_eq!(
        instance.path().iter().filter(|n| *n == "reminded").count(),
        2
    );
    assert!(
        instance.wait(timer).is_some() && instance.wait(review).is_some(),
        "both waits stay open"
    );
    let err = instance
        .tick_boundary(&process, review, &NoHooks)
        .unwrap_err();
    assert_eq!(
        err,
        ExecError::NotARepeatingBoundary {
            activation: review,
            node: "review".into()
        }
    );
    instance
        .complete(&process, review, Map::new(), &NoHooks)
        .unwrap();
    assert!(
        instance.wait(timer).is_none(),
        "the task's end disarms its boundary timer"
    );
}

/// On a store shared with other engines a tick takes the store's deployment lock; while the
/// database does not answer, the tick is tried again each second instead of being lost, and
/// starts its one instance, for the tick it was, once the lock is had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_whose_lock_is_refused_is_tried_again_until_it_starts_its_instance() {
    let clock = ManualClock::starting_at(0);
    let store = Arc::new(super::test_store::RecordingStore {
        shared: true,
        ..Default::default()
    });
    let engine = engine_on(store.clone(), &clock).await;
    engine
        .deploy(&ticking("R/PT1H", None, "v1"), None)
        .await
        .unwrap();
    store
        .lock_refusals
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let mut now = HOUR_MS;
    clock.set(now);
    until("the tick, after the refusals", || {
        now += 1_000;
        clock.set(now);
        count(&engine) == 1
    })
    .await;
    assert_eq!(
        store
            .lock_refusals
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    engine.shutdown().await;
    let seen: Vec<(u32, u64, u32)> = ticks(&engine).iter().map(|t| (t.1, t.2, t.3)).collect();
    assert_eq!(seen, vec![(1, HOUR_MS, 1)]);
}
