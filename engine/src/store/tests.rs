use super::conformance::step;
use super::*;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn memory_store_passes_the_conformance_suite() {
    conformance::commits_and_reads_back(&MemoryStore::new());
    conformance::history_across_turns(&MemoryStore::new());
    conformance::keyed_tables_scan_bytewise(&MemoryStore::new());
    conformance::notification_log_reads_and_removes_exactly(&MemoryStore::new());
    conformance::concurrent_commits_are_all_acknowledged(Arc::new(MemoryStore::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_acks_resolve_on_async_workers() {
    conformance::acks_resolve_on_async_workers(Arc::new(MemoryStore::new())).await;
}

#[test]
fn sled_store_passes_the_conformance_suite_in_both_durability_modes() {
    for durability in [Durability::Step, Durability::group()] {
        let fresh = || {
            let dir = tempfile::tempdir().unwrap();
            let store = SledStore::open(dir.path(), durability).unwrap();
            (dir, store)
        };
        let (_dir, store) = fresh();
        conformance::commits_and_reads_back(&store);
        let (_dir, store) = fresh();
        conformance::keyed_tables_scan_bytewise(&store);
        let (_dir, store) = fresh();
        conformance::notification_log_reads_and_removes_exactly(&store);
        let (_dir, store) = fresh();
        conformance::concurrent_commits_are_all_acknowledged(Arc::new(store));
        let (dir, store) = fresh();
        conformance::history_across_turns(&store);
        drop(store);
        conformance::reopened_store_keeps_history(
            &SledStore::open(dir.path(), Durability::Step).unwrap(),
        );
        let (dir, store) = fresh();
        let ids = conformance::commit_before_reopen(&store);
        drop(store);
        conformance::reopened_store_resumes(
            &SledStore::open(dir.path(), durability).unwrap(),
            &ids,
        );
    }
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
fn a_moved_tail_is_one_history_key_and_a_damaged_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), Durability::Step).unwrap();
        conformance::history_across_turns(&store);
    }
    let db = open_raw_sled(dir.path());
    let tree = db.open_tree("flowbot").unwrap();
    // Slot 0: the first turn's tail (e0); slot 1: the history-only commit (e1); slot 2: the
    // tail e2 + e3 moved by the last turn, whose own entry (e4) stays in the record.
    let history_keys: Vec<Vec<u8>> = tree
        .scan_prefix(b"ht1\0")
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    let slots: Vec<u64> = history_keys
        .iter()
        .map(|k| u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap()))
        .collect();
    assert_eq!(slots, [0, 1, 2]);
    // Unpacks, but is no chunk: its entry count is cut short.
    tree.insert(&history_keys[2], super::packed::pack(&[2, 0, 0]))
        .unwrap();
    db.flush().unwrap();
    drop(tree);
    drop(db);
    let store = SledStore::open(dir.path(), Durability::Step).unwrap();
    let err = store.history("t1").unwrap_err();
    assert!(matches!(err, StoreError::Corrupted { .. }), "{err}");
    assert!(
        err.to_string().contains("a history chunk of instance t1"),
        "{err}"
    );
}

#[test]
fn a_commit_keeps_its_notifications_under_one_key_per_sixteen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), Durability::Step).unwrap();
        for count in [3, 40] {
            let mut told = StepCommit::for_instance("n");
            told.notifications = (0..count).map(|i: u32| i.to_be_bytes().to_vec()).collect();
            store.commit(told).unwrap().wait().unwrap();
        }
    }
    let db = open_raw_sled(dir.path());
    let tree = db.open_tree("flowbot").unwrap();
    let firsts: Vec<u64> = tree
        .scan_prefix(b"n")
        .keys()
        .map(|k| u64::from_be_bytes(k.unwrap()[1..].try_into().unwrap()))
        .collect();
    assert_eq!(firsts, [1, 4, 20, 36]);
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
    conformance::acks_resolve_on_async_workers(store.clone()).await;
    assert_eq!(store.flush_stats().unwrap().commits, 100);
}
