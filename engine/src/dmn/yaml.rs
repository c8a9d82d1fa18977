//! The YAML decision language: decision tables and literal expressions written beside YAML
//! workflows (see `docs/yaml-dsl.md`, "Decisions"). Entries are FEEL text; every problem is
//! reported at its `line:col`.
//!
//! ```yaml
//! decision: order_review
//! hit_policy: first
//! inputs: { tier: customer_tier, amount: amount }
//! outputs: { review: { default: false } }
//! rules:
//!   - { tier: '"gold"', amount: "> 50000", review: true }
//!   - { amount: "> 10000", review: true }
//! ```

use super::model::*;
use crate::diagnostics::Diagnostic;
use crate::model::Span;
use crate::yaml::locator::{SourceMap, YamlPath};
use crate::yaml::vocabulary::{self as vocab, suggestion};
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// Top-level keys of a file with one decision.
pub const FILE_KEYS: &[&str] = &[
    "decision",
    "name",
    "hit_policy",
    "aggregation",
    "requires",
    "inputs",
    "outputs",
    "rules",
    "expression",
];

/// Keys of one decision under `decisions:`.
pub const DECISION_KEYS: &[&str] = &[
    "name",
    "hit_policy",
    "aggregation",
    "requires",
    "inputs",
    "outputs",
    "rules",
    "expression",
];

/// Keys of an input column written as a mapping.
pub const INPUT_KEYS: &[&str] = &["expression", "type", "values"];
/// Keys of an output column written as a mapping.
pub const OUTPUT_KEYS: &[&str] = &["type", "values", "default"];
/// Hit policies as YAML writes them.
pub const HIT_POLICIES: &[&str] = &[
    "unique",
    "first",
    "priority",
    "any",
    "collect",
    "rule_order",
    "output_order",
];
/// Aggregations of a `collect` table.
pub const AGGREGATIONS: &[&str] = &["sum", "min", "max", "count"];

/// Whether a YAML text is a decision file (its top level has `decision:` or `decisions:`), as
/// opposed to a process file.
pub fn is_decision_yaml(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        line.starts_with("decision:") || line.starts_with("decisions:")
    })
}

/// Reads a YAML decision file. Returns the decisions when the text is a YAML mapping at all, and
/// every diagnostic found.
pub fn parse_decision_yaml(path: &Path, text: &str) -> (Option<DecisionFile>, Vec<Diagnostic>) {
    let empty = "the file is empty: a decision file starts with `decision: <id>`";
    let read = match crate::yaml::read_document(path, text, empty) {
        Ok(read) => read,
        Err(problem) => return (None, vec![problem]),
    };
    let mut reader = Reader {
        file: path,
        map: read.map,
        lines: read.text.lines().collect(),
        diagnostics: read.lenient.into_iter().collect(),
    };
    let file = reader.file(&read.value);
    (file, reader.diagnostics)
}

struct Reader<'t> {
    file: &'t Path,
    map: SourceMap,
    lines: Vec<&'t str>,
    diagnostics: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn error(&mut self, path: &YamlPath, message: impl Into<String>) {
        let span = self.map.nearest(path);
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message));
    }

    fn error_at_value(&mut self, path: &YamlPath, message: impl Into<String>) {
        let span = self.map.nearest_value(path);
        self.diagnostics
            .push(Diagnostic::error(self.file, span, message));
    }

    fn check_keys(&mut self, mapping: &Mapping, path: &YamlPath, allowed: &[&str], what: &str) {
        for key in mapping.keys() {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => {
                    let hint = suggestion(k, allowed.iter().copied());
                    self.error(&path.key(k), format!("unknown key `{k}` in {what}{hint}"));
                }
                None => self.error(path, format!("keys in {what} must be text")),
            }
        }
    }

    /// FEEL text from a scalar: text as written, numbers and booleans as FEEL literals. Its span
    /// is where the FEEL text starts (inside the quotes of a quoted scalar).
    fn feel(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<Text> {
        let source = match value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => "null".to_string(),
            _ => {
                self.error_at_value(
                    path,
                    format!("{what} must be FEEL text (a string, number or boolean)"),
                );
                return None;
            }
        };
        if source.is_empty() {
            self.error_at_value(path, format!("{what} must not be empty"));
            return None;
        }
        let mut span = self.map.nearest_value(path);
        let quoted = self
            .lines
            .get(span.line as usize - 1)
            .and_then(|line| line.chars().nth(span.col as usize - 1))
            .is_some_and(|c| c == '"' || c == '\'');
        if quoted && matches!(value, Value::String(_)) {
            span.col += 1;
        }
        Some(Text::new(source, span))
    }

    fn id(&mut self, value: &Value, path: &YamlPath, what: &str) -> Option<String> {
        match value.as_str() {
            Some(text) if vocab::is_valid_id(text) => Some(text.to_string()),
            Some(text) => {
                self.error_at_value(
                    path,
                    format!("{what} `{text}` is not a valid id: use letters, digits, `_`, `-`, `.`, starting with a letter or `_`"),
                );
                None
            }
            None => {
                self.error_at_value(path, format!("{what} must be text"));
                None
            }
        }
    }

    fn file(&mut self, document: &Value) -> Option<DecisionFile> {
        let root = YamlPath::root();
        let Some(top) = document.as_mapping() else {
            self.error(&root, "expected a decision file (a mapping starting with `decision: <id>` or `decisions:`)");
            return None;
        };
        let mut file = DecisionFile {
            source: self.file.to_path_buf(),
            ..DecisionFile::default()
        };
        match (top.get("decision"), top.get("decisions")) {
            (Some(id), None) => {
                self.check_keys(top, &root, FILE_KEYS, "a decision file");
                let id_path = root.key("decision");
                let span = self.map.key(&id_path).unwrap_or(Span::new(1, 1));
                if let Some(id) = self.id(id, &id_path, "the decision id") {
                    file.decisions.push(self.decision(id, top, &root, span));
                }
            }
            (None, Some(list)) => {
                self.check_keys(top, &root, &["decisions"], "a decision file");
                let list_path = root.key("decisions");
                let Some(list) = list.as_mapping() else {
                    self.error_at_value(&list_path, "`decisions` maps decision ids to decisions");
                    return Some(file);
                };
                for (key, body) in list {
                    let Some(id) = key.as_str() else {
                        self.error(&list_path, "decision ids must be text");
                        continue;
                    };
                    let path = list_path.key(id);
                    let span = self.map.key(&path).unwrap_or(Span::new(1, 1));
                    let Some(body) = body.as_mapping() else {
                        self.error_at_value(&path, format!("decision `{id}` must be a mapping"));
                        continue;
                    };
                    if self.id(key, &path, "a decision id").is_none() {
                        continue;
                    }
                    self.check_keys(body, &path, DECISION_KEYS, &format!("decision `{id}`"));
                    file.decisions
                        .push(self.decision(id.to_string(), body, &path, span));
                }
            }
            (Some(_), Some(_)) => {
                self.error(&root, "a decision file has either `decision:` (one decision) or `decisions:` (several), not both");
                return None;
            }
            (None, None) => {
                self.error(
                    &root,
                    "missing `decision: <id>` (or `decisions:` for several)",
                );
                return None;
            }
        }
        Some(file)
    }

    fn decision(&mut self, id: String, body: &Mapping, path: &YamlPath, span: Span) -> Decision {
        let name = match body.get("name") {
            Some(Value::String(name)) => name.clone(),
            Some(_) => {
                self.error_at_value(&path.key("name"), "`name` must be text");
                id.clone()
            }
            None => id.clone(),
        };
        let mut required_decisions = Vec::new();
        match body.get("requires") {
            None => {}
            Some(Value::Sequence(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let item_path = path.key("requires").index(index);
                    if let Some(required) = self.id(item, &item_path, "a required decision") {
                        required_decisions.push(Requirement {
                            id: required,
                            span: self.map.nearest_value(&item_path),
                        });
                    }
                }
            }
            Some(_) => self.error_at_value(
                &path.key("requires"),
                "`requires` lists the ids of the decisions whose results this one reads",
            ),
        }
        let logic = match (body.get("expression"), body.get("rules")) {
            (Some(expression), None) => {
                for key in ["inputs", "outputs", "hit_policy", "aggregation"] {
                    if body.contains_key(key) {
                        self.error(&path.key(key), format!("`{key}` belongs to a decision table; this decision is an `expression`"));
                    }
                }
                self.feel(expression, &path.key("expression"), "`expression`")
                    .map(DecisionLogic::Literal)
            }
            (None, Some(rules)) => self.table(&id, body, rules, path).map(DecisionLogic::Table),
            (Some(_), Some(_)) => {
                self.error(path, format!("decision `{id}` has both `expression:` and `rules:`; it is one or the other"));
                None
            }
            (None, None) => {
                self.error(
                    path,
                    format!(
                        "decision `{id}` needs `rules:` (a decision table) or `expression:` (FEEL)"
                    ),
                );
                None
            }
        };
        Decision {
            id,
            name,
            required_decisions,
            required_inputs: Vec::new(),
            logic,
            span,
        }
    }

    fn table(
        &mut self,
        id: &str,
        body: &Mapping,
        rules: &Value,
        path: &YamlPath,
    ) -> Option<DecisionTable> {
        let span = self.map.key(&path.key("rules")).unwrap_or(Span::new(1, 1));
        let hit_policy = match body.get("hit_policy") {
            None => HitPolicy::Unique,
            Some(value) => {
                let word = value.as_str().unwrap_or_default();
                match HIT_POLICIES
                    .contains(&word)
                    .then(|| HitPolicy::parse(word))
                    .flatten()
                {
                    Some(policy) => policy,
                    None => {
                        let hint = suggestion(word, HIT_POLICIES.iter().copied());
                        self.error_at_value(
                            &path.key("hit_policy"),
                            format!("unknown hit policy `{word}`{hint}"),
                        );
                        return None;
                    }
                }
            }
        };
        let aggregation = match body.get("aggregation") {
            None => None,
            Some(value) => {
                let word = value.as_str().unwrap_or_default();
                match AGGREGATIONS
                    .contains(&word)
                    .then(|| Aggregation::parse(word))
                    .flatten()
                {
                    Some(aggregation) => Some(aggregation),
                    None => {
                        let hint = suggestion(word, AGGREGATIONS.iter().copied());
                        self.error_at_value(
                            &path.key("aggregation"),
                            format!("unknown aggregation `{word}`{hint}"),
                        );
                        return None;
                    }
                }
            }
        };
        let inputs = self.inputs(id, body.get("inputs"), &path.key("inputs"));
        let outputs = self.outputs(id, body.get("outputs"), &path.key("outputs"));
        let input_names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        let output_names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        let rules_path = path.key("rules");
        let Value::Sequence(items) = rules else {
            self.error_at_value(
                &rules_path,
                "`rules` is a list of rules, one mapping per rule",
            );
            return None;
        };
        let mut table_rules = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let rule_path = rules_path.index(index);
            let rule_span = self.map.key(&rule_path).unwrap_or(span);
            let Some(rule) = item.as_mapping() else {
                self.error_at_value(&rule_path, "a rule is a mapping of column names to entries");
                continue;
            };
            for key in rule.keys() {
                let Some(key) = key.as_str() else { continue };
                if !input_names.contains(&key) && !output_names.contains(&key) {
                    let columns = input_names.iter().chain(&output_names).copied();
                    let hint = suggestion(key, columns);
                    self.error(
                        &rule_path.key(key),
                        format!(
                            "rule {} of `{id}` names unknown column `{key}`{hint}",
                            index + 1
                        ),
                    );
                }
            }
            let mut rule_inputs = Vec::new();
            for name in &input_names {
                let text = match rule.get(*name) {
                    Some(value) => self.feel(value, &rule_path.key(name), "an input entry"),
                    None => Some(Text::new("-", rule_span)),
                };
                rule_inputs.extend(text);
            }
            let mut rule_outputs = Vec::new();
            for name in &output_names {
                match rule.get(*name) {
                    Some(value) => rule_outputs.extend(self.feel(
                        value,
                        &rule_path.key(name),
                        "an output entry",
                    )),
                    None => self.error(
                        &rule_path,
                        format!(
                            "rule {} of `{id}` gives no value for output `{name}`",
                            index + 1
                        ),
                    ),
                }
            }
            if rule_inputs.len() == input_names.len() && rule_outputs.len() == output_names.len() {
                table_rules.push(Rule {
                    id: None,
                    inputs: rule_inputs,
                    outputs: rule_outputs,
                    span: rule_span,
                });
            }
        }
        Some(DecisionTable {
            hit_policy,
            aggregation,
            inputs: inputs.into_iter().map(|(_, input)| input).collect(),
            outputs: outputs.into_iter().map(|(_, output)| output).collect(),
            rules: table_rules,
            span,
        })
    }

    fn inputs(
        &mut self,
        id: &str,
        value: Option<&Value>,
        path: &YamlPath,
    ) -> Vec<(String, TableInput)> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Some(columns) = value.as_mapping() else {
            self.error_at_value(
                path,
                format!("`inputs` of `{id}` maps column names to FEEL expressions"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, column) in columns {
            let Some(name) = self.id(key, path, "an input column name") else {
                continue;
            };
            let column_path = path.key(&name);
            let span = self.map.key(&column_path).unwrap_or(Span::new(1, 1));
            let (expression, type_ref, allowed) = match column {
                Value::Mapping(m) => {
                    self.check_keys(m, &column_path, INPUT_KEYS, &format!("input `{name}`"));
                    let expression = match m.get("expression") {
                        Some(e) => {
                            self.feel(e, &column_path.key("expression"), "an input expression")
                        }
                        None => Some(Text::new(name.clone(), span)),
                    };
                    let type_ref = m.get("type").and_then(Value::as_str).map(str::to_owned);
                    let allowed = match m.get("values") {
                        Some(v) => self.feel(v, &column_path.key("values"), "input values"),
                        None => None,
                    };
                    (expression, type_ref, allowed)
                }
                Value::Null => (Some(Text::new(name.clone(), span)), None, None),
                other => (
                    self.feel(other, &column_path, "an input expression"),
                    None,
                    None,
                ),
            };
            let Some(expression) = expression else {
                continue;
            };
            out.push((
                name.clone(),
                TableInput {
                    label: Some(name),
                    expression,
                    type_ref,
                    allowed,
                    variable: None,
                    span,
                },
            ));
        }
        out
    }

    fn outputs(
        &mut self,
        id: &str,
        value: Option<&Value>,
        path: &YamlPath,
    ) -> Vec<(String, TableOutput)> {
        let Some(value) = value else {
            self.error(
                path,
                format!("decision table `{id}` needs `outputs:`, the columns it decides"),
            );
            return Vec::new();
        };
        let Some(columns) = value.as_mapping() else {
            self.error_at_value(path, format!("`outputs` of `{id}` maps column names to nothing or `{{ type, values, default }}`"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, column) in columns {
            let Some(name) = self.id(key, path, "an output column name") else {
                continue;
            };
            let column_path = path.key(&name);
            let span = self.map.key(&column_path).unwrap_or(Span::new(1, 1));
            let mut output = TableOutput {
                name: Some(name.clone()),
                label: None,
                type_ref: None,
                allowed: None,
                default: None,
                span,
            };
            match column {
                Value::Null => {}
                Value::Mapping(m) => {
                    self.check_keys(m, &column_path, OUTPUT_KEYS, &format!("output `{name}`"));
                    output.type_ref = m.get("type").and_then(Value::as_str).map(str::to_owned);
                    if let Some(v) = m.get("values") {
                        output.allowed = self.feel(v, &column_path.key("values"), "output values");
                    }
                    if let Some(v) = m.get("default") {
                        output.default =
                            self.feel(v, &column_path.key("default"), "a default output");
                    }
                }
                _ => {
                    self.error_at_value(
                        &column_path,
                        format!("output `{name}` takes nothing or `{{ type, values, default }}`"),
                    );
                    continue;
                }
            }
            out.push((name, output));
        }
        out
    }
}

/// The JSON Schema (draft 2020-12) of a YAML decision file, for editors and `flowbot schema
/// --decision`; its keys are the lists the reader accepts.
pub fn json_schema() -> serde_json::Value {
    use serde_json::json;
    let feel = json!({
        "type": ["string", "number", "boolean"],
        "description": "FEEL text (a number or boolean may be written bare)."
    });
    let keys =
        |list: &[&str]| -> Vec<serde_json::Value> { list.iter().map(|k| json!(k)).collect() };
    let body_properties = json!({
        "name": { "type": "string", "description": "The name other decisions' expressions use for its result." },
        "hit_policy": { "enum": keys(HIT_POLICIES), "description": "How the result is picked from the matching rules (default unique)." },
        "aggregation": { "enum": keys(AGGREGATIONS), "description": "With hit_policy collect: how the outputs are combined." },
        "requires": { "type": "array", "items": { "$ref": "#/$defs/id" }, "description": "Decisions of this file whose results this one reads, by name." },
        "inputs": {
            "type": "object",
            "description": "Input columns: column name → FEEL expression (or { expression, type, values }).",
            "propertyNames": { "$ref": "#/$defs/id" },
            "additionalProperties": {
                "oneOf": [
                    { "type": "null" },
                    feel,
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "expression": feel,
                            "type": { "type": "string", "description": "number, string, boolean, date, time, dateTime, duration: text is read as this type." },
                            "values": { "type": "string", "description": "Allowed values (FEEL unary tests)." }
                        }
                    }
                ]
            }
        },
        "outputs": {
            "type": "object",
            "description": "Output columns: column name → nothing or { type, values, default }.",
            "propertyNames": { "$ref": "#/$defs/id" },
            "additionalProperties": {
                "oneOf": [
                    { "type": "null" },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                            "type": { "type": "string" },
                            "values": { "type": "string", "description": "Output values in priority order (PRIORITY, OUTPUT ORDER)." },
                            "default": feel
                        }
                    }
                ]
            }
        },
        "rules": {
            "type": "array",
            "description": "Rules: column name → entry (input entries are FEEL unary tests, `-` or absent matches anything; output entries are FEEL expressions).",
            "items": { "type": "object", "additionalProperties": feel }
        },
        "expression": { "type": "string", "description": "A literal-expression decision (FEEL) instead of a table." }
    });
    let mut file_properties = body_properties.clone();
    file_properties["decision"] =
        json!({ "$ref": "#/$defs/id", "description": "The decision id." });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:flowbot:schema:decision",
        "title": "Flowbot decision",
        "description": "Decisions written in YAML (see docs/yaml-dsl.md, Decisions).",
        "type": "object",
        "oneOf": [
            { "required": ["decision"], "additionalProperties": false, "properties": file_properties },
            {
                "required": ["decisions"],
                "additionalProperties": false,
                "properties": {
                    "decisions": {
                        "type": "object",
                        "propertyNames": { "$ref": "#/$defs/id" },
                        "additionalProperties": { "type": "object", "additionalProperties": false, "properties": body_properties }
                    }
                }
            }
        ],
        "$defs": {
            "id": { "type": "string", "pattern": vocab::ID_PATTERN }
        }
    })
}
