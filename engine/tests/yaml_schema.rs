//! The JSON Schema of the YAML DSL and the reader must agree: every shipped, documented and valid
//! test file passes both; invalid documents fail both; the schema's keys are the reader's keys.

use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::yaml::{json_schema, parse_yaml, vocabulary as vocab};
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

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&json_schema()).expect("the schema compiles")
}

fn yaml_to_json(name: &str, text: &str) -> Value {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: invalid YAML: {e}"));
    serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{name}: not JSON-compatible: {e}"))
}

/// Checks that `text` passes the schema and parses without errors.
fn assert_valid_everywhere(name: &str, text: &str) {
    let instance = yaml_to_json(name, text);
    let validator = validator();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("  {} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} fails the schema:\n{}",
        errors.join("\n")
    );
    let (definitions, diagnostics) = parse_yaml(Path::new(name), text);
    assert!(
        !has_errors(&diagnostics),
        "{name} has errors:\n{diagnostics:#?}"
    );
    assert!(definitions.is_some(), "{name} gave no definitions");
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = json_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(jsonschema::meta::is_valid(&schema));
}

#[test]
fn the_schema_file_in_docs_is_current() {
    let path = repo_root().join("docs/flowbot-workflow.schema.json");
    let current = format!(
        "{}\n",
        serde_json::to_string_pretty(&json_schema()).expect("serializable")
    );
    if std::env::var_os("FLOWBOT_BLESS").is_some() {
        fs::write(&path, &current).expect("writable schema file");
    }
    let stored = fs::read_to_string(&path).expect("docs/flowbot-workflow.schema.json exists");
    assert!(stored == current, "docs/flowbot-workflow.schema.json is stale: run `flowbot schema > docs/flowbot-workflow.schema.json` (or this test with FLOWBOT_BLESS=1)");
}

#[test]
fn shipped_workflows_and_examples_pass_schema_and_reader() {
    let root = repo_root();
    let mut files = Vec::new();
    yaml_files_under(&root.join("workflows"), &mut files);
    yaml_files_under(&root.join("examples"), &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("workflows/order_processing.yaml")),
        "found {files:?}"
    );
    for file in files {
        let text = fs::read_to_string(&file).expect("readable");
        assert_valid_everywhere(&file.display().to_string(), &text);
    }
}

#[test]
fn valid_test_data_passes_the_schema() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/yaml");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("data dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "yaml")
            && fs::read_to_string(path.with_extension("expected")).is_ok_and(|e| e.is_empty())
        {
            assert_valid_everywhere(
                &path.display().to_string(),
                &fs::read_to_string(&path).expect("readable"),
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected valid files in {}", dir.display());
}

/// The ```yaml blocks of the DSL reference.
fn doc_examples() -> Vec<(usize, String)> {
    let doc =
        fs::read_to_string(repo_root().join("docs/yaml-dsl.md")).expect("docs/yaml-dsl.md exists");
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
}

#[test]
fn every_documented_example_passes_schema_and_reader() {
    let examples = doc_examples();
    assert!(
        examples.len() >= 8,
        "expected the reference to show many examples, found {}",
        examples.len()
    );
    for (line, text) in examples {
        assert_valid_everywhere(&format!("docs/yaml-dsl.md (example at line {line})"), &text);
    }
}

#[test]
fn invalid_documents_fail_both_schema_and_reader() {
    let cases = [
        ("unknown node key", "process: p\nnodes:\n  a: { start: ~, nxt: b }\n  b: { end: ~ }\n"),
        ("two kind keys", "process: p\nnodes:\n  a: { start: ~, end: ~ }\n"),
        ("no kind key", "process: p\nnodes:\n  a: { name: x }\n"),
        ("missing nodes", "process: p\n"),
        ("missing process id", "nodes:\n  a: { end: ~ }\n"),
        ("bad id", "process: 9p\nnodes:\n  a: { end: ~ }\n"),
        ("next on an end event", "process: p\nnodes:\n  a: { end: ~, next: a }\n"),
        ("terminate on a start", "process: p\nnodes:\n  a: { start: { terminate: true } }\n"),
        ("catch without trigger", "process: p\nnodes:\n  a: { catch: {} }\n"),
        ("timer with two forms", "process: p\nnodes:\n  a: { catch: { timer: { duration: PT1M, date: x } } }\n"),
        ("boundary without attached_to", "process: p\nnodes:\n  a: { boundary: { signal: s } }\n"),
        ("retry on a gateway", "process: p\nnodes:\n  a: { exclusive: merge, retry: 2 }\n"),
        ("gateway branches and next", "process: p\nnodes:\n  a: { parallel: [b], next: b }\n  b: { end: ~ }\n"),
        (
            "condition in a parallel gateway",
            "process: p\nnodes:\n  a: { parallel: [{ to: b, when: x }] }\n  b: { end: ~ }\n",
        ),
        ("exclusive branch without when", "process: p\nnodes:\n  a: { exclusive: [{ to: b }] }\n  b: { end: ~ }\n"),
        (
            "otherwise with when",
            "process: p\nnodes:\n  a: { task: ~, next: [{ otherwise: b, when: x }] }\n  b: { end: ~ }\n",
        ),
        ("classify without labels", "process: p\nnodes:\n  a: { llm: { mode: classify, prompt: x, output: y } }\n"),
        ("generate without output", "process: p\nnodes:\n  a: { llm: { prompt: x } }\n"),
        ("unknown llm mode", "process: p\nnodes:\n  a: { llm: { mode: dream, prompt: x, output: y } }\n"),
        ("rule without source", "process: p\nnodes:\n  a: { task: ~, rules: [{ on: enter }] }\n"),
        (
            "rule without variable",
            "process: p\nnodes:\n  a: { task: ~, rules: [{ on: variable_change, script: x }] }\n",
        ),
        ("rule with an unknown moment", "process: p\nnodes:\n  a: { task: ~, rules: [{ on: later, script: x }] }\n"),
        ("for_each without over or count", "process: p\nnodes:\n  a: { task: ~, for_each: { as: x } }\n"),
        ("retry with a bad delay", "process: p\nnodes:\n  a: { service: h, retry: { retries: 1, delay: soon } }\n"),
        ("user task with settings", "process: p\nnodes:\n  a: { user: { form: x } }\n"),
        ("subprocess without nodes", "process: p\nnodes:\n  a: { subprocess: { event: true } }\n"),
        ("lane with unknown key", "process: p\nlanes:\n  l: { nme: x, nodes: [a] }\nnodes:\n  a: { end: ~ }\n"),
    ];
    let validator = validator();
    for (what, text) in cases {
        let instance = yaml_to_json(what, text);
        assert!(
            !validator.is_valid(&instance),
            "the schema accepts an invalid document ({what}):\n{text}"
        );
        let (_, diagnostics) = parse_yaml(Path::new("case.yaml"), text);
        assert!(
            has_errors(&diagnostics),
            "the reader accepts an invalid document ({what}):\n{text}"
        );
    }
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(words: &[&[&str]]) -> BTreeSet<String> {
    words
        .iter()
        .flat_map(|w| w.iter().map(|s| s.to_string()))
        .collect()
}

/// The object alternative of a `oneOf`, or the schema itself.
fn object_schema(schema: &Value) -> &Value {
    schema["oneOf"]
        .as_array()
        .and_then(|alts| alts.iter().find(|a| a["type"] == "object"))
        .unwrap_or(schema)
}

#[test]
fn the_schema_uses_exactly_the_readers_keys() {
    let schema = json_schema();
    let defs = &schema["$defs"];
    assert_eq!(property_names(&schema), set(&[vocab::PROCESS_KEYS]));
    assert_eq!(
        property_names(&defs["node"]),
        set(&[
            vocab::NODE_KIND_KEYS,
            vocab::NODE_COMMON_KEYS,
            vocab::ACTIVITY_KEYS
        ])
    );
    assert_eq!(
        property_names(object_schema(&defs["lane"])),
        set(&[vocab::LANE_KEYS])
    );
    assert_eq!(
        property_names(object_schema(&defs["message"])),
        set(&[vocab::MESSAGE_KEYS])
    );
    assert_eq!(
        property_names(&defs["timer"]),
        set(&[vocab::TIMER_KEYS, vocab::TIMER_EXTRA_KEYS])
    );
    assert_eq!(
        property_names(object_schema(&defs["script"])),
        set(&[vocab::SCRIPT_KEYS])
    );
    assert_eq!(property_names(&defs["llm"]), set(&[vocab::LLM_KEYS]));
    assert_eq!(property_names(&defs["branch"]), set(&[vocab::BRANCH_KEYS]));
    assert_eq!(
        property_names(object_schema(&defs["retry"])),
        set(&[vocab::RETRY_KEYS])
    );
    assert_eq!(
        property_names(&defs["for_each"]),
        set(&[vocab::FOR_EACH_KEYS])
    );
    assert_eq!(property_names(&defs["rule"]), set(&[vocab::RULE_KEYS]));
    assert_eq!(
        property_names(&defs["catch_event"]),
        set(&[vocab::CATCH_TRIGGERS])
    );
    assert_eq!(
        property_names(&defs["boundary_event"]),
        set(&[vocab::BOUNDARY_TRIGGERS, vocab::BOUNDARY_EXTRA_KEYS])
    );
    for (def, triggers, extra) in [
        (
            "start_event",
            vocab::START_TRIGGERS,
            vocab::START_EXTRA_KEYS,
        ),
        ("end_event", vocab::END_TRIGGERS, &[][..]),
        ("throw_event", vocab::THROW_TRIGGERS, &[][..]),
    ] {
        assert_eq!(
            property_names(object_schema(&defs[def])),
            set(&[triggers, extra]),
            "{def}"
        );
    }
    let node_props = &defs["node"]["properties"];
    assert_eq!(
        property_names(object_schema(&node_props["service"])),
        set(&[vocab::SERVICE_KEYS])
    );
    assert_eq!(
        property_names(object_schema(&node_props["send"])),
        set(&[vocab::SEND_KEYS])
    );
    assert_eq!(
        property_names(object_schema(&node_props["business_rule"])),
        set(&[vocab::BUSINESS_RULE_KEYS])
    );
    assert_eq!(
        property_names(&node_props["subprocess"]),
        set(&[vocab::SUBPROCESS_KEYS])
    );
    assert_eq!(
        property_names(object_schema(&node_props["call"])),
        set(&[vocab::CALL_KEYS])
    );
    assert_eq!(
        defs["llm"]["properties"]["mode"]["enum"],
        serde_json::json!(vocab::LLM_MODES)
    );
    assert_eq!(
        defs["rule"]["properties"]["on"]["enum"],
        serde_json::json!(vocab::RULE_POINTS)
    );
}
