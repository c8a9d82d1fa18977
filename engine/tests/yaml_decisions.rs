//! The YAML decision language: its JSON Schema and its reader agree (every documented decision
//! example passes both; invalid files fail both; the schema's keys are the reader's), and the
//! schema file in `docs/` is current.

use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::dmn::{decision_json_schema, is_decision_yaml, parse_decision_yaml, Decisions};
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn to_json(text: &str) -> Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("valid YAML");
    serde_json::to_value(yaml).expect("JSON-compatible")
}

fn schema_errors(text: &str) -> Vec<String> {
    let schema = decision_json_schema();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    validator
        .iter_errors(&to_json(text))
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

fn reader_errors(text: &str) -> Vec<String> {
    let (file, mut diagnostics) = parse_decision_yaml(Path::new("d.yaml"), text);
    if let Some(file) = file {
        diagnostics.extend(Decisions::build(&[file]).1);
    }
    diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect()
}

/// The ```yaml blocks of the DSL reference that are decision files.
fn documented_decisions() -> Vec<(usize, String)> {
    let doc = fs::read_to_string(repo_root().join("docs/yaml-dsl.md")).expect("docs exist");
    let mut examples = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in doc.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some((index + 2, String::new())),
            Some(_) if line.trim_start() == "```" => {
                examples.push(current.take().expect("open block"))
            }
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    examples
        .into_iter()
        .filter(|(_, text)| is_decision_yaml(text))
        .collect()
}

#[test]
fn the_decision_schema_is_valid_and_its_file_in_docs_current() {
    let schema = decision_json_schema();
    assert!(jsonschema::meta::is_valid(&schema));
    let path = repo_root().join("docs/flowbot-decision.schema.json");
    let current = format!(
        "{}\n",
        serde_json::to_string_pretty(&schema).expect("serializable")
    );
    if std::env::var_os("FLOWBOT_BLESS").is_some() {
        fs::write(&path, &current).expect("writable schema file");
    }
    let stored = fs::read_to_string(&path).expect("docs/flowbot-decision.schema.json exists");
    assert!(stored == current, "docs/flowbot-decision.schema.json is stale: run `flowbot schema --decision > docs/flowbot-decision.schema.json` (or this test with FLOWBOT_BLESS=1)");
}

#[test]
fn documented_decisions_pass_schema_and_reader() {
    let examples = documented_decisions();
    assert!(
        examples.len() >= 2,
        "found {} decision examples",
        examples.len()
    );
    for (line, text) in examples {
        let schema = schema_errors(&text);
        assert!(schema.is_empty(), "example at line {line}: {schema:?}");
        let reader = reader_errors(&text);
        assert!(reader.is_empty(), "example at line {line}: {reader:?}");
    }
}

#[test]
fn invalid_decisions_fail_schema_and_reader() {
    for (what, text) in [
        (
            "unknown top key",
            "decision: d\nhit_plicy: first\noutputs: { o: ~ }\nrules: []\n",
        ),
        (
            "unknown hit policy",
            "decision: d\nhit_policy: sometimes\noutputs: { o: ~ }\nrules: []\n",
        ),
        (
            "unknown aggregation",
            "decision: d\nhit_policy: collect\naggregation: avg\noutputs: { o: ~ }\nrules: []\n",
        ),
        (
            "bad column key",
            "decision: d\noutputs: { o: { dflt: 1 } }\nrules: []\n",
        ),
        ("bad id", "decision: 9d\noutputs: { o: ~ }\nrules: []\n"),
        (
            "rules not a list",
            "decision: d\noutputs: { o: ~ }\nrules: { a: 1 }\n",
        ),
    ] {
        assert!(
            !schema_errors(text).is_empty(),
            "{what}: the schema accepts it"
        );
        assert!(
            !reader_errors(text).is_empty(),
            "{what}: the reader accepts it"
        );
    }
    let (_, diagnostics) = parse_decision_yaml(Path::new("d.yaml"), "decision: d\n");
    assert!(has_errors(&diagnostics));
}

#[test]
fn the_schema_names_exactly_the_readers_keys() {
    use flowbot_engine::dmn::yaml_vocabulary as vocab;
    let schema = decision_json_schema();
    let names = |value: &Value| -> BTreeSet<String> {
        value["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let set = |list: &[&str]| -> BTreeSet<String> { list.iter().map(|s| s.to_string()).collect() };
    assert_eq!(names(&schema["oneOf"][0]), set(vocab::FILE_KEYS));
    let body = &schema["oneOf"][1]["properties"]["decisions"]["additionalProperties"];
    assert_eq!(names(body), set(vocab::DECISION_KEYS));
    let input = &body["properties"]["inputs"]["additionalProperties"]["oneOf"][2];
    assert_eq!(names(input), set(vocab::INPUT_KEYS));
    let output = &body["properties"]["outputs"]["additionalProperties"]["oneOf"][1];
    assert_eq!(names(output), set(vocab::OUTPUT_KEYS));
    assert_eq!(
        body["properties"]["hit_policy"]["enum"],
        serde_json::json!(vocab::HIT_POLICIES)
    );
    assert_eq!(
        body["properties"]["aggregation"]["enum"],
        serde_json::json!(vocab::AGGREGATIONS)
    );
}
