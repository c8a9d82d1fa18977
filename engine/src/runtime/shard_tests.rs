//! Shards moving between two engines on one store: each engine serves only the instances of its
//! shards, and one that takes a shard carries its instances on where the other left them.

use super::*;
use crate::clock::VirtualClock;
use crate::executor::InstanceStatus;
use crate::model::{EventTrigger, Expr, NodeKind, Span, Timer, TimerKind};
use crate::shard::{shard_of, ShardSet};
use crate::store::{MemoryStore, Store, Table};
use crate::testkit::*;
use serde_json::Map;

/// start → review (a user task) → an hour's timer → end.
fn review_then_wait() -> Definitions {
    let timer = NodeKind::IntermediateCatchEvent {
        trigger: EventTrigger::Timer(Timer {
            kind: TimerKind::Duration,
            expression: Expr {
                language: None,
                source: "PT1H".into(),
                span: Span::new(1, 1),
            },
            time_zone: None,
        }),
    };
    Scope::at_line(1)
        .node("s", start())
        .node("review", user())
        .node("wait", timer)
        .node("e", end())
        .chain(&["s", "review", "wait", "e"])
        .definitions()
}

async fn engine_owning(store: &Arc<MemoryStore>, clock: &VirtualClock, shards: ShardSet) -> Engine {
    let engine = Engine::builder()
        .store(store.clone())
        .clock(Arc::new(clock.clone()))
        .options(EngineOptions {
            shards,
            ..EngineOptions::default()
        })
        .build()
        .await
        .unwrap();
    engine.deploy(&review_then_wait(), None).await.unwrap();
    engine
}

/// The instance once it ended; a test that would wait forever fails instead.
async fn ended(engine: &Engine, id: &str) -> InstanceInfo {
    tokio::time::timeout(std::time::Duration::from_secs(30), engine.wait_for_end(id))
        .await
        .unwrap_or_else(|_| panic!("{id} did not end"))
        .unwrap()
}

/// A memory store, a virtual clock, and two engines on them: one owning `low`, shards 0 to 31,
/// the other the rest.
async fn two_engines() -> (Arc<MemoryStore>, VirtualClock, ShardSet, Engine, Engine) {
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::starting_at(0);
    let low: ShardSet = (0..32).collect();
    let a = engine_owning(&store, &clock, low).await;
    let b = engine_owning(&store, &clock, ShardSet::ALL.minus(low)).await;
    (store, clock, low, a, b)
}

/// The definitions of a YAML process.
fn parsed(yaml: &str) -> Definitions {
    let (defs, diagnostics) = crate::yaml::parse_yaml(std::path::Path::new("test.yaml"), yaml);
    defs.unwrap_or_else(|| panic!("{diagnostics:?}"))
}

fn review_activation(info: &InstanceInfo) -> u64 {
    info.waiting_on
        .iter()
        .find(|w| w.node == "review")
        .map(|w| w.activation)
        .unwrap_or_else(|| panic!("{} waits on no review: {info:?}", info.id))
}

#[tokio::test]
async fn an_engine_serves_its_shards_and_takes_over_anothers() {
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::starting_at(0);
    let low: ShardSet = (0..32).collect();
    let high = ShardSet::ALL.minus(low);
    let a = engine_owning(&store, &clock, low).await;
    let b = engine_owning(&store, &clock, high).await;

    let mut started_on_a = Vec::new();
    let mut started_on_b = Vec::new();
    for _ in 0..10 {
        started_on_a.push(a.start("p", Map::new()).await.unwrap().id);
        started_on_b.push(b.start("p", Map::new()).await.unwrap().id);
    }
    // New instances get ids in their engine's shards, and each engine holds only its own.
    assert!(
        started_on_a.iter().all(|id| low.holds(id)),
        "{started_on_a:?}"
    );
    assert!(
        started_on_b.iter().all(|id| high.holds(id)),
        "{started_on_b:?}"
    );
    assert_eq!(a.running().len(), 10);
    assert_eq!(b.running().len(), 10);

    // Listings show every running instance and open task, the other engine's as stored.
    for engine in [&a, &b] {
        assert_eq!(engine.open_tasks(&TaskFilter::default()).len(), 20);
        let running = InstanceFilter {
            status: Some(InstanceStatus::Waiting),
            ..InstanceFilter::default()
        };
        let page = engine.list_instances(&running, None, 100).unwrap();
        assert_eq!(page.items.len(), 20);
    }

    // An engine started on the store loads the unfinished instances of its own shards only.
    let c = engine_owning(&store, &clock, high).await;
    let mut on_b = started_on_b.clone();
    on_b.sort();
    assert_eq!(c.running(), on_b);
    c.shutdown().await;

    // A request about another engine's instance is refused (any engine may still read it).
    let theirs = &started_on_a[0];
    let info = b.instance(theirs).unwrap();
    let err = b
        .complete_task(theirs, review_activation(&info), Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::NotOwned { instance, shard } if instance == theirs && *shard == shard_of(theirs)),
        "{err}"
    );

    // A gives its shards up: it holds and starts nothing any more.
    assert_eq!(a.release_shards(low), 10);
    assert_eq!(a.owned_shards(), ShardSet::NONE);
    assert!(a.running().is_empty());
    assert!(matches!(
        a.start("p", Map::new()).await.unwrap_err(),
        EngineError::NoShards
    ));

    // B takes them and carries A's instances on: tasks, then timers, to the end.
    assert_eq!(b.acquire_shards(ShardSet::ALL).await.unwrap(), 10);
    assert_eq!(b.acquire_shards(low).await.unwrap(), 0, "already owned");
    assert_eq!(b.owned_shards(), ShardSet::ALL);
    for id in started_on_a.iter().chain(&started_on_b) {
        let info = b.instance(id).unwrap();
        b.complete_task(id, review_activation(&info), Map::new())
            .await
            .unwrap();
    }
    for id in started_on_a.iter().chain(&started_on_b) {
        let done = ended(&b, id).await;
        assert_eq!(done.status, InstanceStatus::Completed, "{id}");
        assert_eq!(done.path, vec!["s", "review", "wait", "e"], "{id}");
        // One owner at a time: the timer was armed and fired once, the history is in order.
        let history = b.history(id).unwrap();
        let count =
            |wanted: fn(&HistoryEntry) -> bool| history.iter().filter(|r| wanted(&r.entry)).count();
        assert_eq!(
            count(|e| matches!(e, HistoryEntry::TimerArmed { .. })),
            1,
            "{id}"
        );
        assert_eq!(
            count(|e| matches!(e, HistoryEntry::TimerFired { .. })),
            1,
            "{id}"
        );
        assert!(
            history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
            "{id}: history out of order"
        );
    }
    assert_eq!(clock.now_ms(), 3_600_000);
}

#[tokio::test]
async fn shards_given_up_take_their_timers_along() {
    let store = Arc::new(MemoryStore::new());
    let clock = VirtualClock::starting_at(0);
    let a = engine_owning(&store, &clock, ShardSet::ALL).await;
    let id = a.start("p", Map::new()).await.unwrap().id;
    let info = a.instance(&id).unwrap();
    a.complete_task(&id, review_activation(&info), Map::new())
        .await
        .unwrap();
    a.release_shards(ShardSet::ALL);
    // With the timer disarmed, nothing is due: the virtual clock does not move.
    a.wait_idle().await;
    assert_eq!(clock.now_ms(), 0);
    assert_eq!(a.instance(&id).unwrap().status, InstanceStatus::Waiting);

    a.acquire_shards(ShardSet::ALL).await.unwrap();
    let done = ended(&a, &id).await;
    assert_eq!(done.status, InstanceStatus::Completed);
    assert_eq!(clock.now_ms(), 3_600_000);
}

#[tokio::test]
async fn an_engine_picks_up_what_another_deployed_to_the_store() {
    let (_, _, _, a, b) = two_engines().await;
    assert_eq!(a.refresh_deployments().unwrap(), 0, "nothing new");
    // b deploys a second version (the review becomes a plain task); a compiles it on refresh
    // and starts it from then on.
    let second = Scope::at_line(1)
        .node("s", start())
        .node("review", user())
        .node("e", end())
        .chain(&["s", "review", "e"])
        .definitions();
    assert!(b.deploy(&second, None).await.unwrap().created);
    assert_eq!(a.refresh_deployments().unwrap(), 1);
    assert_eq!(a.refresh_deployments().unwrap(), 0);
    let started = a.start("p", Map::new()).await.unwrap();
    assert_eq!(started.version, 2);
}

/// Waits for a message `paid` keyed by the order, then for the signal `closing`.
const MESSAGE_THEN_SIGNAL: &str = "
process: m
nodes:
  s: { start: ~, next: paid }
  paid: { catch: { message: { name: paid, correlation_key: order } }, next: closing }
  closing: { catch: { signal: closing }, next: e }
  e: { end: ~ }
";

#[tokio::test]
async fn messages_and_signals_for_another_engines_instance_wait_in_the_inbox_for_it() {
    let (store, _, _, a, b) = two_engines().await;
    b.deploy(&parsed(MESSAGE_THEN_SIGNAL), None).await.unwrap();
    a.refresh_deployments().unwrap();
    let vars = |order: &str| {
        let mut vars = Map::new();
        vars.insert("order".into(), order.into());
        vars
    };
    let theirs = b.start("m", vars("SO-1")).await.unwrap().id;

    // a finds b's instance waiting and leaves the message in the inbox; b delivers it, once.
    let outcome = a
        .correlate_message("paid", Some("SO-1"), vars("SO-1"))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Correlation::Queued { instance, .. } if *instance == theirs),
        "{outcome:?}"
    );
    assert_eq!(
        b.instance(&theirs).unwrap().path,
        ["s"],
        "not delivered yet"
    );
    b.inner.deliver_inbox().await;
    b.inner.deliver_inbox().await;
    assert_eq!(b.instance(&theirs).unwrap().path, ["s", "paid"]);
    assert!(store.scan(Table::Inbox, b"").unwrap().is_empty());

    // a's own instance gets the signal at once, b's through the inbox.
    let ours = a.start("m", vars("SO-2")).await.unwrap().id;
    a.correlate_message("paid", Some("SO-2"), vars("SO-2"))
        .await
        .unwrap();
    assert_eq!(a.broadcast_signal("closing", Map::new()).await.unwrap(), 2);
    assert_eq!(ended(&a, &ours).await.status, InstanceStatus::Completed);
    b.inner.deliver_inbox().await;
    assert_eq!(ended(&b, &theirs).await.path, ["s", "paid", "closing", "e"]);
    assert_eq!(messages_received(&b, &theirs), 1);
}

/// Started by the message `go`, then waits for review.
const STARTED_BY_GO: &str = "
process: r
nodes:
  s: { start: { message: go }, next: review }
  review: { user: ~, next: e }
  e: { end: ~ }
";

#[tokio::test]
async fn only_the_owner_of_the_throwers_shard_delivers_its_thrown_events() {
    let (store, _, low, a, b) = two_engines().await;
    a.deploy(&parsed(STARTED_BY_GO), None).await.unwrap();
    b.refresh_deployments().unwrap();
    // A message thrown by an instance of a's shards, waiting in the outbox.
    let thrower = (0..).map(|n| format!("t-{n}")).find(|id| low.holds(id));
    let mut commit = crate::store::StepCommit::default();
    commit
        .outbox
        .push(super::record::encode(&super::messaging::OutboxEntry {
            instance: thrower,
            node: "throw".into(),
            event: crate::graph::ThrownEvent {
                kind: "message".into(),
                name: Some("go".into()),
            },
            variables: Map::new(),
        }));
    store.commit(commit).unwrap().wait().unwrap();
    b.inner.deliver_outbox().await;
    assert_eq!(
        store.pending_outbox().unwrap().len(),
        1,
        "not b's to deliver"
    );
    assert!(b.running().is_empty() && a.running().is_empty());
    a.inner.deliver_outbox().await;
    assert!(store.pending_outbox().unwrap().is_empty());
    assert_eq!(a.running().len(), 1, "started once, by a");
    assert!(b.running().is_empty());
}

/// An engine owning `shards` whose effect sink records the notification texts it is handed.
async fn engine_with_sink(
    store: &Arc<MemoryStore>,
    shards: ShardSet,
) -> (Engine, Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let sink: EffectSink = Arc::new(move |_instance: &str, effect: &crate::rules::Effect| {
        if let crate::rules::Effect::Notify { message, .. } = effect {
            recorded.lock().unwrap().push(message.clone());
        }
        Ok(())
    });
    let engine = Engine::builder()
        .store(store.clone())
        .effect_sink(sink)
        .options(EngineOptions {
            shards,
            ..EngineOptions::default()
        })
        .build()
        .await
        .unwrap();
    (engine, seen)
}

/// Appends a notification with `message` to the log and makes it visible to both engines.
fn notify(store: &MemoryStore, engines: [&Engine; 2], message: &str) {
    let mut commit = crate::store::StepCommit::default();
    commit.notifications.push(super::record::encode(
        &super::notifications::StoredNotification {
            instance: "p-1".into(),
            time_ms: 0,
            effect: crate::rules::Effect::Notify {
                receiver: "finance".into(),
                message: message.into(),
                rule: "r".into(),
            },
        },
    ));
    let ack = store.commit(commit).unwrap();
    let last = ack.last_notification().get().unwrap();
    ack.wait().unwrap();
    for engine in engines {
        engine.inner.notifications_durable(last);
    }
}

/// Waits until `seen` holds `expected` (the sinks run in the background).
async fn sink_holds(seen: &std::sync::Mutex<Vec<String>>, expected: &[&str]) {
    let reached = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while seen.lock().unwrap().as_slice() != expected {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{:?} != {expected:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn one_engine_feeds_the_effect_sink_and_another_takes_the_duty_over_where_it_stopped() {
    let store = Arc::new(MemoryStore::new());
    let low: ShardSet = (0..32).collect();
    let (a, seen_a) = engine_with_sink(&store, low).await;
    let (b, seen_b) = engine_with_sink(&store, ShardSet::ALL.minus(low)).await;
    assert!(a.coordinates() && !b.coordinates());
    notify(&store, [&a, &b], "first");
    sink_holds(&seen_a, &["first"]).await;

    a.release_shards(low);
    b.acquire_shards(low).await.unwrap();
    assert!(b.coordinates());
    notify(&store, [&a, &b], "second");
    sink_holds(&seen_b, &["second"]).await;
    assert_eq!(seen_a.lock().unwrap().as_slice(), ["first"]);
}

#[tokio::test]
async fn a_message_buffered_while_another_engines_wait_subscribed_still_reaches_it_once() {
    let (store, _, _, a, b) = two_engines().await;
    b.deploy(&parsed(MESSAGE_THEN_SIGNAL), None).await.unwrap();
    a.refresh_deployments().unwrap();
    let mut vars = Map::new();
    vars.insert("order".into(), "SO-7".into());
    let theirs = b.start("m", vars.clone()).await.unwrap().id;
    // The race: a buffered the message after b's wait had looked for one, and before a's own
    // look at the subscriptions; both missed each other.
    let mut key = super::record::buffered_prefix("paid", Some("SO-7"));
    key.extend_from_slice(&1u64.to_be_bytes());
    let mut commit = crate::store::StepCommit::default();
    commit.put(
        Table::BufferedMessages,
        key,
        super::record::encode(&super::record::BufferedMessage {
            variables: vars,
            expires_ms: u64::MAX,
        }),
    );
    store.commit(commit).unwrap().wait().unwrap();
    // a's look after buffering finds b's wait and asks b, through its inbox, to look again.
    for _ in 0..2 {
        a.inner
            .recheck_after_buffering("paid", Some("SO-7"))
            .await
            .unwrap();
        b.inner.deliver_inbox().await;
    }
    assert_eq!(b.instance(&theirs).unwrap().path, ["s", "paid"]);
    assert!(store.scan(Table::Inbox, b"").unwrap().is_empty());
    assert!(store.scan(Table::BufferedMessages, b"").unwrap().is_empty());
    assert_eq!(messages_received(&b, &theirs), 1);
}

/// How many messages the history of instance `id` on `engine` records as received.
fn messages_received(engine: &Engine, id: &str) -> usize {
    engine
        .history(id)
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.entry, HistoryEntry::MessageCorrelated { .. }))
        .count()
}
