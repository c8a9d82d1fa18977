//! Runs the BPMN parser over every third-party file of the shared corpus (`../shared/corpus`
//! beside the repository): no file may make it panic, and the files it rejects, with their first
//! error, must match `tests/data/bpmn/corpus.expected`, so that any change shows up here.
//!
//! Run with `UPDATE_EXPECT=1` to record a deliberate change, and `--nocapture` to see the table of
//! rejected files. When the corpus is absent (a lone clone), the test says so and checks nothing.

use flowbot_engine::bpmn::{parse_bpmn, parse_bpmn_file};
use flowbot_engine::diagnostics::Diagnostic;
use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

fn expectation_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bpmn/corpus.expected")
}

fn is_bpmn(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.ends_with(".bpmn") || name.ends_with(".bpmn20.xml")
}

/// Every BPMN file under `root`, sorted, walked without recursion.
fn bpmn_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("readable corpus folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if is_bpmn(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Without the corpus a test checks nothing: locally it says so; in CI (`CI` set) it fails.
fn missing_corpus(path: &Path) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing and CI is set: the corpus test would check nothing",
        path.display()
    );
    eprintln!(
        "{} not found beside the repository; nothing checked",
        path.display()
    );
}

#[test]
fn corpus_parses_without_panics_and_rejects_the_recorded_files() {
    let root = corpus_dir();
    if !root.is_dir() {
        missing_corpus(&root);
        return;
    }
    let files = bpmn_files(&root);
    let mut panicked = Vec::new();
    let mut rejected = Vec::new();
    let mut accepted = 0usize;
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("inside the corpus")
            .to_path_buf();
        let text = fs::read(file).expect("readable corpus file");
        match catch_unwind(AssertUnwindSafe(|| parse_bpmn(&relative, &text))) {
            Err(_) => panicked.push(relative.display().to_string()),
            Ok((definitions, diagnostics)) => {
                match diagnostics
                    .iter()
                    .find(|d| d.is_error())
                    .map(Diagnostic::to_string)
                {
                    Some(first_error) => rejected.push(first_error),
                    None if definitions.is_some() => accepted += 1,
                    None => rejected.push(format!(
                        "{}: no definitions and no error",
                        relative.display()
                    )),
                }
            }
        }
    }
    assert!(panicked.is_empty(), "the parser panicked on: {panicked:?}");

    let summary = format!(
        "files: {}, accepted: {accepted}, rejected: {}",
        files.len(),
        rejected.len()
    );
    eprintln!("{summary}\nrejected files, first error:");
    for line in &rejected {
        eprintln!("  {line}");
    }
    let actual = format!(
        "{summary}\n{}",
        rejected
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(expectation_file(), &actual).expect("writable expectation");
        return;
    }
    let expected = fs::read_to_string(expectation_file()).unwrap_or_default();
    assert_eq!(
        expected, actual,
        "corpus results changed; if intended, rerun with UPDATE_EXPECT=1"
    );
}

/// The files that both reference engines ran (`PEER_PATHS.tsv`) are the ones the executor is
/// compared on: each must parse without errors.
#[test]
fn files_run_by_the_reference_engines_parse_without_errors() {
    let Ok(peer_paths) = fs::read_to_string(corpus_dir().join("PEER_PATHS.tsv")) else {
        missing_corpus(&corpus_dir().join("PEER_PATHS.tsv"));
        return;
    };
    let files: Vec<&str> = peer_paths
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("file\t"))
        .filter_map(|line| line.split('\t').next())
        .filter(|file| !file.is_empty())
        .collect();
    assert!(!files.is_empty(), "PEER_PATHS.tsv lists no files");
    let mut failures = Vec::new();
    for file in files {
        let (definitions, diagnostics) = parse_bpmn_file(&corpus_dir().join(file));
        let errors: Vec<String> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(ToString::to_string)
            .collect();
        if definitions.is_none() || !errors.is_empty() {
            failures.push(format!("{file}: {errors:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
