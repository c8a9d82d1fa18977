//! The store conformance suite: the behaviour every [`Store`] implementation must show, as
//! functions over a store, so that each implementation (memory, sled, PostgreSQL in
//! `flowbot-postgres`) runs the same checks. Each function panics with a message on the first
//! difference. Compiled for the engine's own tests and with the cargo feature `test-support`.

use super::{SnapshotChange, StepCommit, Store, Table};
use std::sync::Arc;

/// A commit of `instance` with a snapshot and history entries from slot `history_from`.
pub fn step(
    instance: &str,
    snapshot: SnapshotChange,
    history_from: u64,
    events: &[&str],
) -> StepCommit {
    let mut commit = StepCommit::for_instance(instance);
    commit.snapshot = Some(snapshot);
    commit.history_from = history_from;
    commit.history = events.iter().map(|e| e.as_bytes().to_vec()).collect();
    commit
}

/// Commits of several instances with every kind of change, then every read: snapshots,
/// unfinished instances, history, keyed tables, the notification log and its numbering, the
/// outbox, ids, paging and retention. Needs an empty store.
pub fn commits_and_reads_back(store: &dyn Store) {
    let mut first = step(
        "i1",
        SnapshotChange::Running(b"s1".to_vec()),
        0,
        &["started", "entered a"],
    );
    first.outbox.push(b"note-1".to_vec());
    first.put(Table::Subscriptions, b"m\0late\0i1".to_vec(), b"s".to_vec());
    first.put(
        Table::Subscriptions,
        b"m\0early\0i1".to_vec(),
        b"s-early".to_vec(),
    );
    first.notifications.push(b"told-1".to_vec());
    first.notifications.push(b"told-2".to_vec());
    first.put(Table::Completions, b"i1/a/1".to_vec(), b"done".to_vec());
    store.commit(first).unwrap().wait().unwrap();
    store
        .commit(step(
            "i2",
            SnapshotChange::Running(b"x".to_vec()),
            0,
            &["started"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    // Started and ended in one commit: never unfinished.
    let mut at_once = step(
        "i0",
        SnapshotChange::Finished(b"done".to_vec()),
        0,
        &["started", "ended"],
    );
    at_once.first = true;
    store.commit(at_once).unwrap().wait().unwrap();

    let mut second = step(
        "i1",
        SnapshotChange::Finished(b"s2".to_vec()),
        2,
        &["ended"],
    );
    second.remove(Table::Subscriptions, b"m\0late\0i1".to_vec());
    second.notifications.push(b"told-3".to_vec());
    let ack = store.commit(second).unwrap();
    let last = ack.last_notification();
    ack.wait().unwrap();
    assert_eq!(last.get(), Some(3), "numbers follow commit order");

    assert_eq!(store.instance("i1").unwrap(), Some(b"s2".to_vec()));
    assert_eq!(store.instance("missing").unwrap(), None);
    assert_eq!(
        store.unfinished().unwrap(),
        vec![("i2".to_string(), b"x".to_vec())]
    );
    assert_eq!(
        store.history("i1").unwrap(),
        vec![
            b"started".to_vec(),
            b"entered a".to_vec(),
            b"ended".to_vec()
        ]
    );
    assert_eq!(store.history("i2").unwrap(), vec![b"started".to_vec()]);
    assert_eq!(store.instance("i0").unwrap(), Some(b"done".to_vec()));
    assert_eq!(
        store.history("i0").unwrap(),
        vec![b"started".to_vec(), b"ended".to_vec()]
    );
    let subscriptions = store.scan(Table::Subscriptions, b"m\0").unwrap();
    assert_eq!(
        subscriptions,
        vec![(b"m\0early\0i1".to_vec(), b"s-early".to_vec())]
    );
    assert_eq!(
        store.notifications_after(0, 10).unwrap(),
        vec![
            (1, b"told-1".to_vec()),
            (2, b"told-2".to_vec()),
            (3, b"told-3".to_vec())
        ]
    );
    assert_eq!(
        store.notifications_after(1, 1).unwrap(),
        vec![(2, b"told-2".to_vec())]
    );
    assert_eq!(store.last_notification().unwrap(), 3);
    store.remove_notifications_through(3).unwrap();
    assert_eq!(
        store.notifications_after(0, 10).unwrap(),
        vec![(3, b"told-3".to_vec())],
        "the newest entry stays"
    );
    assert_eq!(
        store.get(Table::Completions, b"i1/a/1").unwrap(),
        Some(b"done".to_vec())
    );
    let outbox = store.pending_outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].payload, b"note-1".to_vec());
    store.ack_outbox(&[outbox[0].seq]).unwrap();
    assert!(store.pending_outbox().unwrap().is_empty());
    assert_eq!(store.instance_count().unwrap(), 3);
    assert_eq!(
        store.instance_ids().unwrap(),
        vec!["i0".to_string(), "i1".to_string(), "i2".to_string()]
    );
    let (a, b) = (store.next_id().unwrap(), store.next_id().unwrap());
    assert!(b > a);
    let page = |after: Option<&str>, limit| -> Vec<String> {
        store
            .instances_after(after, limit)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    };
    assert_eq!(page(None, 2), ["i0", "i1"]);
    assert_eq!(page(Some("i1"), 5), ["i2"]);
    assert_eq!(
        store.instances_after(Some("i0"), 1).unwrap(),
        vec![("i1".to_string(), b"s2".to_vec())]
    );
    // Retention: an ended instance goes with its history and completion records; a running one
    // stays.
    store.purge_instance("i2").unwrap();
    store.purge_instance("i1").unwrap();
    assert_eq!(page(None, 10), ["i0", "i2"]);
    assert!(store.history("i1").unwrap().is_empty());
    assert_eq!(store.get(Table::Completions, b"i1/a/1").unwrap(), None);
    assert_eq!(store.history("i2").unwrap(), vec![b"started".to_vec()]);
}

/// History written over several turns, with and without snapshots, reads back in order. Needs a
/// store without an instance `t1`; leaves `t1` ended with the history `e0`..`e4` and the
/// snapshot `d` (see [`reopened_store_keeps_history`]).
pub fn history_across_turns(store: &dyn Store) {
    let history = |store: &dyn Store| -> Vec<String> {
        store
            .history("t1")
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e).unwrap())
            .collect()
    };
    let mut first = step("t1", SnapshotChange::Running(b"a".to_vec()), 0, &["e0"]);
    first.first = true;
    store.commit(first).unwrap().wait().unwrap();
    assert!(store
        .unfinished()
        .unwrap()
        .contains(&("t1".to_string(), b"a".to_vec())));
    // A turn without history keeps the earlier turn's entries.
    store
        .commit(step("t1", SnapshotChange::Running(b"b".to_vec()), 1, &[]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(store.instance("t1").unwrap(), Some(b"b".to_vec()));
    assert_eq!(history(store), ["e0"]);
    // History without a snapshot.
    let mut history_only = StepCommit::for_instance("t1");
    history_only.history_from = 1;
    history_only.history = vec![b"e1".to_vec()];
    store.commit(history_only).unwrap().wait().unwrap();
    assert_eq!(store.instance("t1").unwrap(), Some(b"b".to_vec()));
    store
        .commit(step(
            "t1",
            SnapshotChange::Running(b"c".to_vec()),
            2,
            &["e2", "e3"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(history(store), ["e0", "e1", "e2", "e3"]);
    // The next turn with history moves a tail of two entries.
    store
        .commit(step(
            "t1",
            SnapshotChange::Finished(b"d".to_vec()),
            4,
            &["e4"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(history(store), ["e0", "e1", "e2", "e3", "e4"]);
    assert_eq!(store.instance("t1").unwrap(), Some(b"d".to_vec()));
    assert!(store.unfinished().unwrap().iter().all(|(id, _)| id != "t1"));
}

/// On an empty store: the notification log read after any number gives exactly the entries
/// after it, however the store keeps them (a commit of many entries included), and removal
/// through a number takes exactly the entries up to it, the newest excepted.
pub fn notification_log_reads_and_removes_exactly(store: &dyn Store) {
    // Every entry with the number the log must give it.
    let mut all: Vec<(u64, Vec<u8>)> = Vec::new();
    for (commit, count) in [3usize, 1, 40, 2].into_iter().enumerate() {
        let mut told = StepCommit::for_instance(format!("n{commit}"));
        told.notifications = (0..count)
            .map(|i| format!("{commit}.{i}").into_bytes())
            .collect();
        let before = all.len() as u64;
        all.extend(
            told.notifications
                .iter()
                .enumerate()
                .map(|(i, entry)| (before + i as u64 + 1, entry.clone())),
        );
        let ack = store.commit(told).unwrap();
        let last = ack.last_notification();
        ack.wait().unwrap();
        assert_eq!(last.get(), Some(all.len() as u64));
    }
    for after in 0..=all.len() as u64 {
        for limit in [1, 5, 100] {
            let expected: Vec<_> = all
                .iter()
                .filter(|(n, _)| *n > after)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(
                store.notifications_after(after, limit).unwrap(),
                expected,
                "after {after}, limit {limit}"
            );
        }
    }
    for through in [2, 5, 30] {
        store.remove_notifications_through(through).unwrap();
        let left = store.notifications_after(0, 100).unwrap();
        assert_eq!(left, all[through as usize..], "removed through {through}");
    }
    store.remove_notifications_through(1_000).unwrap();
    assert_eq!(
        store.notifications_after(0, 100).unwrap(),
        all[all.len() - 1..],
        "the newest entry stays"
    );
    assert_eq!(store.last_notification().unwrap(), all.len() as u64);
}

/// After [`history_across_turns`], the same store opened again (a durable store) still has `t1`.
pub fn reopened_store_keeps_history(store: &dyn Store) {
    let history: Vec<Vec<u8>> = ["e0", "e1", "e2", "e3", "e4"]
        .iter()
        .map(|e| e.as_bytes().to_vec())
        .collect();
    assert_eq!(store.history("t1").unwrap(), history);
    assert_eq!(store.instance("t1").unwrap(), Some(b"d".to_vec()));
}

/// An unfinished instance committed and acknowledged, then the store closed: returns the ids a
/// store opened again must know (see [`reopened_store_resumes`]).
pub fn commit_before_reopen(store: &dyn Store) -> Vec<u64> {
    store
        .commit(step(
            "r1",
            SnapshotChange::Running(b"s".to_vec()),
            0,
            &["e0"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    let mut notified = StepCommit::for_instance("r1");
    notified.history_from = 1;
    notified.history = vec![b"e1".to_vec()];
    notified.notifications = vec![b"n1".to_vec(), b"n2".to_vec()];
    store.commit(notified).unwrap().wait().unwrap();
    (0..10).map(|_| store.next_id().unwrap()).collect()
}

/// The store opened again after [`commit_before_reopen`]: the instance is unfinished with its
/// history, notification numbering goes on after the last number, and ids never repeat.
pub fn reopened_store_resumes(store: &dyn Store, ids_before: &[u64]) {
    assert_eq!(
        store.unfinished().unwrap(),
        vec![("r1".to_string(), b"s".to_vec())]
    );
    assert_eq!(
        store.history("r1").unwrap(),
        vec![b"e0".to_vec(), b"e1".to_vec()]
    );
    assert_eq!(store.last_notification().unwrap(), 2);
    let mut more = StepCommit::for_instance("r1");
    more.history_from = 2;
    more.notifications = vec![b"n3".to_vec()];
    let ack = store.commit(more).unwrap();
    let last = ack.last_notification();
    ack.wait().unwrap();
    assert_eq!(last.get(), Some(3), "numbering goes on");
    let next = store.next_id().unwrap();
    let max_before = ids_before.iter().copied().max().unwrap_or(0);
    assert!(
        next > max_before,
        "id {next} handed out again after a reopen (had {max_before})"
    );
}

/// Many threads commit at once (as a group committer sees them): every commit is acknowledged
/// and visible, and notification numbers are unique and dense in commit order.
pub fn concurrent_commits_are_all_acknowledged(store: Arc<dyn Store>) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut numbers = Vec::new();
                for i in 0..50 {
                    let id = format!("t{t}-{i}");
                    let mut commit = step(&id, SnapshotChange::Running(vec![1]), 0, &["e"]);
                    commit.notifications.push(id.into_bytes());
                    let ack = store.commit(commit).unwrap();
                    let last = ack.last_notification();
                    ack.wait().unwrap();
                    numbers.push(last.get().expect("a number once durable"));
                }
                numbers
            })
        })
        .collect();
    let mut numbers: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=400).collect::<Vec<u64>>());
    assert_eq!(store.unfinished().unwrap().len(), 400);
    let log = store.notifications_after(0, 1_000).unwrap();
    assert_eq!(log.len(), 400);
    for (number, entry) in log {
        let id = String::from_utf8(entry).unwrap();
        assert!(
            store.instance(&id).unwrap().is_some(),
            "notification {number} of {id} without its instance"
        );
    }
}

/// Acks awaited from tasks on a multi-threaded tokio runtime resolve, and reads from those tasks
/// see the commits (a store must not block or panic on an async worker).
pub async fn acks_resolve_on_async_workers(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("a{i}");
            let ack = store
                .commit(step(&id, SnapshotChange::Running(vec![2]), 0, &[]))
                .unwrap();
            ack.durable().await.unwrap();
            assert_eq!(store.instance(&id).unwrap(), Some(vec![2]));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.instance_count().unwrap(), 100);
}

/// Keys of the keyed tables are ordered bytewise, prefixes included (`0xff` bytes, empty keys and
/// prefixes), and a removal of a missing key is no error.
pub fn keyed_tables_scan_bytewise(store: &dyn Store) {
    let keys: [&[u8]; 6] = [b"", b"a", b"a\0", b"a\xff", b"a\xff\xff", b"b"];
    let mut commit = StepCommit::default();
    for (i, key) in keys.iter().enumerate() {
        commit.put(Table::Schedules, key.to_vec(), vec![i as u8]);
    }
    commit.remove(Table::Schedules, b"missing".to_vec());
    commit.put(Table::Cursors, b"a".to_vec(), b"other table".to_vec());
    store.commit(commit).unwrap().wait().unwrap();
    let scanned = |prefix: &[u8]| -> Vec<Vec<u8>> {
        store
            .scan(Table::Schedules, prefix)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(
        scanned(b""),
        keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>()
    );
    assert_eq!(
        scanned(b"a\xff"),
        vec![b"a\xff".to_vec(), b"a\xff\xff".to_vec()]
    );
    assert_eq!(scanned(b"c"), Vec::<Vec<u8>>::new());
    assert_eq!(store.get(Table::Schedules, b"").unwrap(), Some(vec![0]));
    assert_eq!(
        store.get(Table::Cursors, b"a").unwrap(),
        Some(b"other table".to_vec())
    );
    // A put and a removal of the same key in one commit: the later change wins.
    let mut commit = StepCommit::default();
    commit.put(Table::Schedules, b"b".to_vec(), vec![9]);
    commit.remove(Table::Schedules, b"b".to_vec());
    commit.remove(Table::Schedules, b"a".to_vec());
    commit.put(Table::Schedules, b"a".to_vec(), vec![8]);
    store.commit(commit).unwrap().wait().unwrap();
    assert_eq!(store.get(Table::Schedules, b"b").unwrap(), None);
    assert_eq!(store.get(Table::Schedules, b"a").unwrap(), Some(vec![8]));
}
