use super::*;
use std::sync::Arc;
use std::time::Duration;

fn step(
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

/// The same behaviour checks for every store implementation.
fn exercise(store: &dyn Store) {
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
    assert_eq!(
        ack.last_notification(),
        Some(3),
        "numbers follow commit order"
    );
    ack.wait().unwrap();

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

/// History written over several turns, with and without snapshots, reads back in order.
fn exercise_history_across_turns(store: &dyn Store) {
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
            &["e2"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(history(store), ["e0", "e1", "e2"]);
    store
        .commit(step(
            "t1",
            SnapshotChange::Finished(b"d".to_vec()),
            3,
            &["e3", "e4"],
        ))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(history(store), ["e0", "e1", "e2", "e3", "e4"]);
    assert_eq!(store.instance("t1").unwrap(), Some(b"d".to_vec()));
    assert!(store.unfinished().unwrap().iter().all(|(id, _)| id != "t1"));
}

#[test]
fn memory_store_commits_and_reads_back() {
    exercise(&MemoryStore::new());
    exercise_history_across_turns(&MemoryStore::new());
}

#[test]
fn sled_store_keeps_history_across_turns_and_a_reopen() {
    for durability in [Durability::Step, Durability::group()] {
        let dir = tempfile::tempdir().unwrap();
        exercise_history_across_turns(&SledStore::open(dir.path(), durability).unwrap());
        let reopened = SledStore::open(dir.path(), Durability::Step).unwrap();
        let history: Vec<Vec<u8>> = ["e0", "e1", "e2", "e3", "e4"]
            .iter()
            .map(|e| e.as_bytes().to_vec())
            .collect();
        assert_eq!(reopened.history("t1").unwrap(), history);
        assert_eq!(reopened.instance("t1").unwrap(), Some(b"d".to_vec()));
    }
}

#[test]
fn sled_store_commits_and_reads_back_in_both_durability_modes() {
    for durability in [Durability::Step, Durability::group()] {
        let dir = tempfile::tempdir().unwrap();
        exercise(&SledStore::open(dir.path(), durability).unwrap());
    }
}

#[test]
fn sled_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), Durability::group()).unwrap();
        store
            .commit(step(
                "i1",
                SnapshotChange::Running(b"s".to_vec()),
                0,
                &["e0"],
            ))
            .unwrap()
            .wait()
            .unwrap();
    }
    let store = SledStore::open(dir.path(), Durability::Step).unwrap();
    assert_eq!(
        store.unfinished().unwrap(),
        vec![("i1".to_string(), b"s".to_vec())]
    );
    assert_eq!(store.history("i1").unwrap(), vec![b"e0".to_vec()]);
}

#[test]
fn sled_ids_never_repeat_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let store = SledStore::open(dir.path(), Durability::Step).unwrap();
        (0..10).map(|_| store.next_id().unwrap()).max().unwrap()
    };
    let store = SledStore::open(dir.path(), Durability::Step).unwrap();
    assert!(store.next_id().unwrap() > last);
}

#[test]
fn another_schema_version_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    SledStore::open(dir.path(), Durability::Step)
        .unwrap()
        .write_schema_version(SCHEMA_VERSION + 6)
        .unwrap();
    let err = SledStore::open(dir.path(), Durability::Step).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaMismatch { found, expected, .. } if found == SCHEMA_VERSION + 6 && expected == SCHEMA_VERSION),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("schema version {}", SCHEMA_VERSION + 6)),
        "{text}"
    );
    assert!(
        text.contains(&format!("schema version {SCHEMA_VERSION}")),
        "{text}"
    );
}

#[test]
fn a_foreign_sled_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.insert(b"something", b"else").unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path(), Durability::Step).unwrap_err();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
}

/// Writes a store with some data and returns its directory.
fn populated_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), Durability::Step).unwrap();
    for i in 0..200 {
        let id = format!("instance-{i}");
        let events: Vec<String> = (0..5)
            .map(|e| format!("event {e} of {id} with some padding text"))
            .collect();
        let refs: Vec<&str> = events.iter().map(String::as_str).collect();
        store
            .commit(step(
                &id,
                SnapshotChange::Running(vec![i as u8; 300]),
                0,
                &refs,
            ))
            .unwrap()
            .wait()
            .unwrap();
    }
    drop(store);
    dir
}

fn data_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.metadata().unwrap().len() > 0 {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Opening a damaged store either fails with a clear error or, when sled recovers a consistent
/// prefix, never returns data that was not written: no panic, no silent garbage.
fn assert_clear_failure_or_consistent(dir: &std::path::Path, what: &str) {
    match SledStore::open(dir, Durability::Step) {
        Err(err) => {
            let text = err.to_string();
            assert!(
                text.contains(&dir.display().to_string()),
                "{what}: error does not name the store: {text}"
            );
            assert!(
                matches!(
                    err,
                    StoreError::Corrupted { .. }
                        | StoreError::NotAStore { .. }
                        | StoreError::Io { .. }
                ),
                "{what}: unexpected error kind: {text}"
            );
        }
        Ok(store) => {
            let unfinished = store.unfinished();
            if let Ok(unfinished) = unfinished {
                for (id, snapshot) in unfinished {
                    assert!(
                        id.starts_with("instance-"),
                        "{what}: invented instance {id}"
                    );
                    assert_eq!(
                        snapshot.len(),
                        300,
                        "{what}: damaged snapshot of {id} returned"
                    );
                }
            }
        }
    }
}

#[test]
fn a_truncated_store_gives_a_clear_error() {
    let dir = populated_store();
    let files = data_files(dir.path());
    assert!(!files.is_empty());
    for file in &files {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let target = copy.path().join(file.strip_prefix(dir.path()).unwrap());
        let len = std::fs::metadata(&target).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap()
            .set_len(len / 3)
            .unwrap();
        assert_clear_failure_or_consistent(copy.path(), &format!("truncated {}", file.display()));
    }
}

#[test]
fn a_garbled_store_gives_a_clear_error() {
    let dir = populated_store();
    for file in data_files(dir.path()) {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let target = copy.path().join(file.strip_prefix(dir.path()).unwrap());
        let mut bytes = std::fs::read(&target).unwrap();
        for (i, b) in bytes.iter_mut().enumerate() {
            if i % 7 == 3 {
                *b ^= 0x5a;
            }
        }
        std::fs::write(&target, bytes).unwrap();
        assert_clear_failure_or_consistent(copy.path(), &format!("garbled {}", file.display()));
    }
}

/// Opens a store directory with sled directly, once the store closed in this process has let go.
fn open_raw_sled(dir: &std::path::Path) -> sled::Db {
    for _ in 0..100 {
        if let Ok(db) = sled::open(dir) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} stayed locked", dir.display());
}

#[test]
fn a_damaged_instance_record_is_reported_as_corruption_naming_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), Durability::Step).unwrap();
        store
            .commit(step(
                "i1",
                SnapshotChange::Running(vec![7; 400]),
                0,
                &["e0"],
            ))
            .unwrap()
            .wait()
            .unwrap();
    }
    {
        // Overwrite the record with bytes sled accepts but that are no record. (sled releases
        // the closed store's file lock when its background threads end.)
        let db = open_raw_sled(dir.path());
        let tree = db.open_tree("flowbot").unwrap();
        let key = b"ii1";
        assert!(
            tree.get(key).unwrap().is_some(),
            "the instance record lives under its key"
        );
        tree.insert(key, &[1, 0xff, 0xff, 0, 0, 9][..]).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), Durability::Step).unwrap();
    for err in [
        store.instance("i1").unwrap_err(),
        store.history("i1").unwrap_err(),
        store.unfinished().unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Corrupted { .. }), "{err}");
        assert!(err.to_string().contains("instance i1"), "{err}");
    }
}

#[test]
fn the_conf_file_garbled_is_reported_as_corruption() {
    let dir = populated_store();
    std::fs::write(dir.path().join("conf"), b"\x00\x01 not a config").unwrap();
    let err = SledStore::open(dir.path(), Durability::Step).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupted { .. } | StoreError::Io { .. }),
        "{err}"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn group_commit_shares_flushes_and_acknowledges_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SledStore::open(
            dir.path(),
            Durability::Group {
                window: Duration::from_millis(2),
                max_batch: 1024,
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let id = format!("t{t}-{i}");
                    store
                        .commit(step(&id, SnapshotChange::Running(vec![1]), 0, &["e"]))
                        .unwrap()
                        .wait()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = store.flush_stats().unwrap();
    assert_eq!(stats.commits, 400);
    assert!(stats.flushes < 400, "no flush was shared: {stats:?}");
    assert_eq!(store.unfinished().unwrap().len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_acks_resolve_asynchronously() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), Durability::group()).unwrap());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ack = store
                .commit(step(
                    &format!("i{i}"),
                    SnapshotChange::Running(vec![2]),
                    0,
                    &[],
                ))
                .unwrap();
            ack.durable().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.flush_stats().unwrap().commits, 100);
}
