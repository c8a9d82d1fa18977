//! The third-party corpus in `../shared/corpus` through the binary: every file through `check`
//! (no panic, no hang), and every row of `PEER_PATHS.tsv` through `run --auto-complete --json`,
//! compared with the path two other engines agree on. The exact counts are asserted so that any
//! change in behaviour shows. Without `../shared` the tests say so and check nothing, except in
//! CI, where that fails.

use flowbot_e2e::{flowbot_with_limit, shared_or_skip};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn corpus() -> Option<PathBuf> {
    shared_or_skip("corpus")
}

fn bpmn_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
        if path.is_dir() {
            bpmn_files(&path, out);
        } else if name.ends_with(".bpmn") || name.ends_with(".bpmn20.xml") {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_is_checked_without_panic_or_hang() {
    let Some(dir) = corpus() else { return };
    let mut files = Vec::new();
    bpmn_files(&dir, &mut files);
    let (mut accepted, mut rejected) = (0, 0);
    for file in &files {
        let out = flowbot_with_limit(&["check", file.to_str().unwrap()], LIMIT);
        assert!(!out.timed_out, "check hung on {}", file.display());
        assert!(
            !out.stderr.contains("panicked"),
            "check panicked on {}:\n{}",
            file.display(),
            out.stderr
        );
        match out.code {
            Some(0) => accepted += 1,
            Some(1) => {
                assert!(
                    out.stdout.contains(": error: "),
                    "exit 1 without an error line for {}",
                    file.display()
                );
                rejected += 1;
            }
            other => panic!(
                "check exited with {other:?} on {}:\n{}",
                file.display(),
                out.stderr
            ),
        }
    }
    println!(
        "corpus check: {} files, {accepted} accepted, {rejected} rejected",
        files.len()
    );
    assert_eq!(files.len(), 202);
    // Rejections: 82 files whose scripts, conditions, timers or input/output mappings are not Rhai (Python, JavaScript, FEEL,
    // XPath; a JavaScript conditional event and a Python loop condition among them; 7 of them
    // Python that parses as Rhai: `True`/`False` read as names, a string times a number; 7
    // bpmn-engine files whose `${...}` expressions read its JavaScript context: `variables.x`,
    // `environment.variables.x`, `content.output`; a timer written as Python's `'P14D'`), 8 with
    // structural errors (no start event, unreachable nodes, dangling flows, duplicate ids,
    // event-based gateways followed by tasks), 2 standard loops with neither a condition nor a
    // maximum (they would never end), 1 with front-end errors only (a MIWG timer without a
    // definition).
    assert_eq!((accepted, rejected), (109, 93));
}

/// How one PEER_PATHS row came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// Same path as the peers (for `order` rows: as either peer).
    Match,
    /// Refused before running: a script or condition is not Rhai.
    NotRhai,
    /// Refused before running: an element the executor does not run yet.
    Unsupported,
    /// Refused before running: the decision a business-rule task calls (from the files beside
    /// the process or in a `dmn/` folder below it, SpiffWorkflow's layout) breaks the DMN rules.
    InvalidDecision,
    /// Ran, and a script that parses as Rhai but is written for another language failed (an
    /// incident with its position; exit 1).
    ScriptFailed,
    /// Ran to the path listed in [`KNOWN_DIFFERENCES`], where the peers disagree with the BPMN
    /// semantics Flowbot follows.
    KnownDifference,
    /// Anything else: a regression.
    Different,
}

/// Files where Flowbot's path differs from both peers on purpose: (file, our path, why).
const KNOWN_DIFFERENCES: &[(&str, &str, &str)] = &[(
    "spiffworkflow/bpmn/event-subprocess.bpmn",
    "StartEvent_1 set_data Event_1o52hta Event_0rfrdxr task Event_17xen75 sub",
    "a signal reaches the instance that throws it, in the same step (as in Camunda); the event \
     subprocess it starts is interrupting, so the main token never reaches its end event. Both \
     peers let the main token end first and do not interrupt it",
)];

#[test]
fn peer_paths_match_or_are_refused_with_a_reason() {
    let Some(dir) = corpus() else { return };
    let table = std::fs::read_to_string(dir.join("PEER_PATHS.tsv")).unwrap();
    let mut outcomes: Vec<(String, Outcome, String)> = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("file\t") && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, agreement, path, other) = (
            cols[0],
            cols[1],
            cols[2],
            cols.get(3).copied().unwrap_or(""),
        );
        let path_of_file = dir.join(file).display().to_string();
        let run = |more: &[&str]| {
            let mut args = vec!["run", path_of_file.as_str(), "--auto-complete", "--json"];
            args.extend_from_slice(more);
            flowbot_with_limit(&args, LIMIT)
        };
        let mut out = run(&[]);
        // SpiffWorkflow keeps the decisions its processes call in a `dmn/` folder below them.
        let decisions = dir.join(file).parent().unwrap().join("dmn");
        if out.stderr.contains("cannot run: no decision") && decisions.is_dir() {
            out = run(&["--decisions", decisions.to_str().unwrap()]);
        }
        assert!(!out.timed_out, "run hung on {file}");
        let (outcome, detail) = match out.code {
            Some(0) => {
                let report = out.json();
                let got: Vec<&str> = report["path"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                let got = got.join(" ");
                if let Some((_, ours, _)) = KNOWN_DIFFERENCES.iter().find(|(f, ..)| *f == file) {
                    assert_eq!(&got, ours, "{file}: the known difference changed");
                    (Outcome::KnownDifference, format!("got {got}"))
                } else if got == path || (agreement == "order" && got == other) {
                    (
                        Outcome::Match,
                        report["status"].as_str().unwrap().to_string(),
                    )
                } else {
                    (Outcome::Different, format!("got {got}"))
                }
            }
            Some(1) if out.stderr.contains("given with --decisions does not check") => {
                (Outcome::InvalidDecision, first_error(&out.stderr))
            }
            Some(1) if out.stderr.contains("not supported yet") => {
                (Outcome::Unsupported, first_error(&out.stderr))
            }
            Some(1) if out.stderr.contains("not Rhai") || out.stderr.contains("not valid Rhai") => {
                (Outcome::NotRhai, first_error(&out.stderr))
            }
            Some(1) if !out.stdout.is_empty() => {
                let report = out.json();
                let incident = &report["incidents"][0];
                let message = incident["message"].as_str().unwrap_or_default();
                let at = incident["at"].as_str().unwrap_or_default();
                let positioned = at.rsplit(':').take(2).all(|n| n.parse::<u32>().is_ok());
                // A script or a mapping expression that parsed as Rhai but failed when run.
                let foreign_failed = [
                    "script failed in",
                    "input mapping failed in",
                    "output mapping failed in",
                ]
                .iter()
                .any(|start| message.starts_with(start));
                if report["status"] == "failed" && foreign_failed && positioned {
                    (Outcome::ScriptFailed, format!("{at}: {message}"))
                } else {
                    (Outcome::Different, format!("{at}: {message}"))
                }
            }
            _ => (Outcome::Different, out.stderr.clone()),
        };
        outcomes.push((file.to_string(), outcome, detail));
    }
    let mut counts: BTreeMap<Outcome, usize> = BTreeMap::new();
    for (file, outcome, detail) in &outcomes {
        *counts.entry(*outcome).or_default() += 1;
        println!(
            "{outcome:<12?} {file}  {}",
            detail.chars().take(160).collect::<String>()
        );
    }
    println!("{counts:?}");
    let count = |o| counts.get(&o).copied().unwrap_or(0);
    assert_eq!(outcomes.len(), 42);
    assert_eq!(
        count(Outcome::Different),
        0,
        "regressions: see the table above"
    );
    // Among them diff v2/v3 and service_task_variable, whose scripts assign a new variable
    // without `let` (`v = 1`): an assignment creates the variable, as in their own engines.
    assert_eq!(count(Outcome::Match), 27);
    // ScriptTest, random_fact, script-start, script_task_with_unit_tests: Python that is not Rhai;
    // prescript_postscript (2): Python pre/post scripts, read since input/output mappings are;
    // service-task-io: a JavaScript input/output mapping; data_store (3): Python's `True`;
    // task_data_size: Python's string repetition (`"a"*512`); forms and send-signal: bpmn-engine's
    // JavaScript context in `${...}` mappings (`${variables.suggestedStartDate}`,
    // `${content.output.form.newPrice}`), which parse as Rhai and used to fail only when run.
    assert_eq!(count(Outcome::NotRhai), 13);
    assert_eq!(count(Outcome::Unsupported), 0);
    // business_rule_task: its decision (`dmn/business_rules.dmn`) has a catch-all rule that
    // overlaps another under the default hit policy UNIQUE, which DMN forbids (SpiffWorkflow takes
    // the first match without checking).
    assert_eq!(count(Outcome::InvalidDecision), 1);
    assert_eq!(count(Outcome::KnownDifference), KNOWN_DIFFERENCES.len());
    // Nothing that checks clean stops at run time on a script of another language.
    assert_eq!(count(Outcome::ScriptFailed), 0);
}

fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("error"))
        .unwrap_or_default()
        .to_string()
}
