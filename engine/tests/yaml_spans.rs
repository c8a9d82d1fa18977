//! Every node, flow, expression, script and rule the YAML reader produces points at its own text:
//! checked over every valid YAML file the project has (shipped workflows, documented examples,
//! valid test data).

use flowbot_engine::model::*;
use flowbot_engine::yaml::parse_yaml;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// (name, text) of every valid YAML document in the project.
fn documents() -> Vec<(String, String)> {
    let mut docs = Vec::new();
    for dir in ["workflows", "examples", "engine/tests/data/yaml"] {
        let Ok(entries) = fs::read_dir(root().join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let expected = fs::read_to_string(path.with_extension("expected"));
            let valid = dir != "engine/tests/data/yaml" || expected.is_ok_and(|e| e.is_empty());
            if path.extension().is_some_and(|e| e == "yaml") && valid {
                docs.push((
                    path.display().to_string(),
                    fs::read_to_string(&path).expect("readable"),
                ));
            }
        }
    }
    let reference = fs::read_to_string(root().join("docs/yaml-dsl.md")).expect("docs/yaml-dsl.md");
    for (index, block) in reference.split("```yaml\n").skip(1).enumerate() {
        let text = block.split("```").next().expect("block").to_string();
        docs.push((format!("docs/yaml-dsl.md example {}", index + 1), text));
    }
    docs
}

/// The text from `span` to the end of its line.
fn at(text: &str, span: Span) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line = text
        .lines()
        .nth(span.line as usize - 1)
        .unwrap_or_else(|| panic!("no line {}", span.line));
    line.chars().skip(span.col as usize - 1).collect()
}

fn check_scope(name: &str, text: &str, nodes: &[Node], flows: &[SequenceFlow]) {
    for node in nodes {
        let here = at(text, node.span);
        let here = here.trim_start_matches(['"', '\'']);
        assert!(
            here.starts_with(node.id.as_str()),
            "{name}: node `{}` at {:?} points at `{here}`",
            node.id,
            node.span
        );
        for rule in &node.rules {
            let here = at(text, rule.span);
            assert!(
                here.starts_with('-') || here.starts_with('{'),
                "{name}: rule of `{}` points at `{here}`",
                node.id
            );
        }
        match &node.kind {
            NodeKind::Task(a) => {
                if let TaskKind::Script { script: Some(s) }
                | TaskKind::BusinessRule {
                    script: Some(s), ..
                } = &a.body
                {
                    check_source(name, text, &s.source, s.span);
                }
                if let Some(mi) = &a.multi_instance {
                    for e in [&mi.collection, &mi.cardinality, &mi.completion_condition]
                        .into_iter()
                        .flatten()
                    {
                        check_source(name, text, &e.source, e.span);
                    }
                }
            }
            NodeKind::SubProcess(a) => check_scope(name, text, &a.body.nodes, &a.body.flows),
            NodeKind::StartEvent {
                trigger: Some(EventTrigger::Timer(t)),
                ..
            }
            | NodeKind::IntermediateCatchEvent {
                trigger: EventTrigger::Timer(t),
            }
            | NodeKind::BoundaryEvent {
                trigger: EventTrigger::Timer(t),
                ..
            } => check_source(name, text, &t.expression.source, t.expression.span),
            _ => {}
        }
    }
    for flow in flows {
        let here = at(text, flow.span);
        assert!(
            here.starts_with(&flow.target) || here.starts_with('-') || here.starts_with('{'),
            "{name}: flow `{}` at {:?} points at `{here}`",
            flow.id,
            flow.span
        );
        if let Some(c) = &flow.condition {
            check_source(name, text, &c.source, c.span);
        }
    }
}

/// The first line of a script or expression starts where its span points (folded scalars aside).
fn check_source(name: &str, text: &str, source: &str, span: Span) {
    let first_word = source.split_whitespace().next().unwrap_or("");
    let here = at(text, span);
    assert!(
        here.starts_with(first_word),
        "{name}: `{source}` at {span:?} points at `{here}`"
    );
}

#[test]
fn every_element_points_at_its_own_text() {
    let docs = documents();
    assert!(docs.len() >= 10, "found only {} documents", docs.len());
    for (name, text) in docs {
        let (definitions, diagnostics) = parse_yaml(Path::new(&name), &text);
        assert!(diagnostics.is_empty(), "{name}: {diagnostics:#?}");
        for process in definitions.expect("definitions").processes {
            let here = at(&text, process.span);
            assert!(
                here.starts_with("process:"),
                "{name}: process points at `{here}`"
            );
            check_scope(&name, &text, &process.nodes, &process.flows);
        }
    }
}
