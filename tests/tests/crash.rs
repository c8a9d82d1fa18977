//! Crash safety: 5,000 instances, 1,000 of them in flight at a time, against a sled store, the
//! `flowbot` process killed with SIGKILL at random moments several times and restarted on the
//! same store. Afterwards every instance has completed exactly once, every job completion is
//! recorded exactly once, and every handler effect (a line keyed by the job's idempotency key) is
//! in the effects log exactly once.
//!
//! The binary comes from `flowbot_e2e::flowbot_bin` (`$FLOWBOT_BIN`, else built by cargo).

use flowbot_engine::executor::Event;
use flowbot_engine::runtime::{read_history, HistoryEntry};
use flowbot_engine::store::{Durability, SledStore, Store, Table};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Enough instances that a whole run outlasts the kill delays (a run of only 1,000 could finish
/// before the second kill).
const INSTANCES: usize = 5000;
const IN_FLIGHT: usize = 1000;
const JOBS_PER_INSTANCE: usize = 4;
const KILLS: usize = 6;

/// Four service tasks (two in parallel branches), a script and a user task.
const PROCESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="crash_defs" targetNamespace="http://example.org/crash">
  <bpmn:process id="crash_order" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="reserve"/>
    <bpmn:serviceTask id="reserve"/>
    <bpmn:sequenceFlow id="f2" sourceRef="reserve" targetRef="price"/>
    <bpmn:scriptTask id="price" scriptFormat="rhai"><bpmn:script>let total = 2 * 21;</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f3" sourceRef="price" targetRef="fork"/>
    <bpmn:parallelGateway id="fork"/>
    <bpmn:sequenceFlow id="f4" sourceRef="fork" targetRef="invoice"/>
    <bpmn:sequenceFlow id="f5" sourceRef="fork" targetRef="notify"/>
    <bpmn:serviceTask id="invoice"/>
    <bpmn:serviceTask id="notify"/>
    <bpmn:sequenceFlow id="f6" sourceRef="invoice" targetRef="join"/>
    <bpmn:sequenceFlow id="f7" sourceRef="notify" targetRef="join"/>
    <bpmn:parallelGateway id="join"/>
    <bpmn:sequenceFlow id="f8" sourceRef="join" targetRef="approve"/>
    <bpmn:userTask id="approve"/>
    <bpmn:sequenceFlow id="f9" sourceRef="approve" targetRef="ship"/>
    <bpmn:serviceTask id="ship"/>
    <bpmn:sequenceFlow id="f10" sourceRef="ship" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"#;

/// A small pseudo-random generator (xorshift), seeded from the clock; the seed is printed so a
/// failing run can be replayed with `CRASH_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn bench_command(bin: &Path, process: &Path, store: &Path, log: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("bench")
        .arg(process)
        .args([
            "--instances",
            &INSTANCES.to_string(),
            "--in-flight",
            &IN_FLIGHT.to_string(),
        ])
        .args(["--store", "sled", "--durability", "group", "--json"])
        .arg("--store-dir")
        .arg(store)
        .arg("--effects-log")
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// How many instances are stored and how many of them are unfinished.
fn progress(store_dir: &Path) -> (u64, usize) {
    let store = SledStore::open(store_dir, Durability::Step).expect("the store opens after a kill");
    (
        store.instance_count().unwrap(),
        store.unfinished().unwrap().len(),
    )
}

#[test]
fn killed_and_restarted_runs_complete_every_instance_exactly_once() {
    let bin = flowbot_e2e::flowbot_bin().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let process = dir.path().join("crash_order.bpmn");
    std::fs::write(&process, PROCESS).unwrap();
    let store_dir = dir.path().join("store");
    let log = dir.path().join("effects.log");
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let mut killed_mid_flight = 0;
    for round in 0..KILLS {
        let mut child = bench_command(&bin, &process, &store_dir, &log)
            .spawn()
            .expect("flowbot starts");
        let delay = 20 + rng.next(280);
        std::thread::sleep(Duration::from_millis(delay));
        match child.try_wait().unwrap() {
            Some(status) => {
                let out = child.wait_with_output().unwrap();
                println!(
                    "round {round}: finished before the kill ({status}): {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                let (stored, unfinished) = progress(&store_dir);
                println!("round {round}: killed after {delay} ms with {stored} instances stored, {unfinished} unfinished");
                if unfinished > 0 || (stored as usize) < INSTANCES {
                    killed_mid_flight += 1;
                }
            }
        }
    }
    assert!(
        killed_mid_flight >= 2,
        "only {killed_mid_flight} kills landed while instances were in flight"
    );

    let out = bench_command(&bin, &process, &store_dir, &log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "final run failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["not_completed"], 0, "{report}");
    println!("final run: {report}");

    // Inspect the store with the library, independently of the binary.
    let store = SledStore::open(&store_dir, Durability::Step).unwrap();
    assert_eq!(store.instance_count().unwrap(), INSTANCES as u64);
    assert!(store.unfinished().unwrap().is_empty());
    let ids = store.instance_ids().unwrap();
    assert_eq!(ids.len(), INSTANCES);
    for id in &ids {
        let history = read_history(&store, id).unwrap();
        let completions = history
            .iter()
            .filter(|r| {
                matches!(
                    &r.entry,
                    HistoryEntry::Executor {
                        event: Event::InstanceCompleted
                    }
                )
            })
            .count();
        let starts = history
            .iter()
            .filter(|r| {
                matches!(
                    &r.entry,
                    HistoryEntry::Executor {
                        event: Event::InstanceStarted { .. }
                    }
                )
            })
            .count();
        assert_eq!(
            (starts, completions),
            (1, 1),
            "{id} started {starts} and completed {completions} times"
        );
    }

    let recorded: HashSet<String> = store
        .scan(Table::Completions, b"")
        .unwrap()
        .into_iter()
        .map(|(key, _)| String::from_utf8(key).unwrap())
        .collect();
    assert_eq!(
        recorded.len(),
        INSTANCES * JOBS_PER_INSTANCE,
        "job completion records"
    );

    let effects = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = effects.lines().collect();
    let unique: HashSet<String> = lines.iter().map(|l| l.to_string()).collect();
    assert_eq!(lines.len(), unique.len(), "an effect was applied twice");
    assert_eq!(unique, recorded, "effects and completion records differ");
}
