//! Data-driven tests of the YAML front end: every `data/yaml/*.yaml` is parsed and its diagnostics
//! (one per line, `file:line:col: severity: message [id]`) must equal `*.expected` beside it. An
//! empty `.expected` file means the file must parse with no diagnostics.
//!
//! To write the `.expected` files after an intended change, run with `FLOWBOT_BLESS=1` and review
//! the diff.

use flowbot_engine::yaml::parse_yaml_bytes;
use std::fs;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/yaml")
}

#[test]
fn every_yaml_file_gives_its_expected_diagnostics() {
    let bless = std::env::var_os("FLOWBOT_BLESS").is_some();
    let mut files: Vec<PathBuf> = fs::read_dir(data_dir())
        .expect("tests/data/yaml exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the data folder to hold the test files, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        let bytes = fs::read(file).expect("readable file");
        let (definitions, diagnostics) = parse_yaml_bytes(Path::new(&name), &bytes);
        let actual: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
        let expected_path = file.with_extension("expected");
        if bless {
            fs::write(&expected_path, &actual).expect("writable expected file");
            continue;
        }
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if actual != expected {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
        if expected.is_empty() {
            let definitions =
                definitions.unwrap_or_else(|| panic!("{name}: valid file gave no definitions"));
            assert_eq!(definitions.processes.len(), 1, "{name}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
