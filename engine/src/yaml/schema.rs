//! The JSON Schema (draft 2020-12) of the YAML DSL, for editors (yaml-language-server) and for
//! `flowbot schema`.
//!
//! The key lists come from [`super::vocabulary`], the same lists the reader accepts; the tests in
//! `engine/tests/yaml_schema.rs` check every shipped and documented YAML file against this schema
//! and that the schema's keys are exactly the reader's.

use super::vocabulary as vocab;
use serde_json::{json, Map, Value};

/// The `$id` of the schema.
pub const SCHEMA_ID: &str = "urn:flowbot:schema:workflow";

/// The JSON Schema of a YAML process file.
pub fn json_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Flowbot process",
        "description": "A Flowbot process written in the YAML DSL (see docs/yaml-dsl.md).",
        "type": "object",
        "required": ["process", "nodes"],
        "additionalProperties": false,
        "properties": {
            "process": { "$ref": "#/$defs/id", "description": "The process id (the same id as in BPMN)." },
            "name": { "type": "string", "description": "Human-readable process name." },
            "lanes": {
                "type": "object",
                "description": "Lanes (metadata only): lane id → its name and node ids.",
                "propertyNames": { "$ref": "#/$defs/id" },
                "additionalProperties": { "$ref": "#/$defs/lane" }
            },
            "rules": {
                "type": "array",
                "description": "Business rules for the whole process (guards and event policies for every node).",
                "items": { "$ref": "#/$defs/rule" }
            },
            "nodes": { "$ref": "#/$defs/nodes" }
        },
        "$defs": defs()
    })
}

fn defs() -> Value {
    let mut defs = Map::new();
    defs.insert(
        "id".into(),
        json!({
            "type": "string",
            "pattern": vocab::ID_PATTERN,
            "description": "An id: letters, digits, `_`, `-`, `.`, starting with a letter or `_`."
        }),
    );
    defs.insert(
        "nodes".into(),
        json!({
            "type": "object",
            "description": "The nodes of a scope: node id → node.",
            "minProperties": 1,
            "propertyNames": { "$ref": "#/$defs/id" },
            "additionalProperties": { "$ref": "#/$defs/node" }
        }),
    );
    defs.insert(
        "lane".into(),
        json!({
            "oneOf": [
                { "type": "array", "items": { "$ref": "#/$defs/id" } },
                {
                    "type": "object",
                    "required": ["nodes"],
                    "additionalProperties": false,
                    "properties": {
                        "name": { "type": "string" },
                        "nodes": { "type": "array", "items": { "$ref": "#/$defs/id" } }
                    }
                }
            ]
        }),
    );
    defs.insert("node".into(), node());
    defs.insert(
        "expression".into(),
        json!({
            "type": ["string", "number", "boolean"],
            "description": "A Rhai expression over the instance variables."
        }),
    );
    defs.insert(
        "message".into(),
        json!({
            "description": "A message: its name, or `{ name, correlation_key }`.",
            "oneOf": [
                { "type": "string", "minLength": 1 },
                object(&[
                    ("name", json!({ "type": "string", "minLength": 1 })),
                    ("correlation_key", json!({ "$ref": "#/$defs/expression" })),
                ], &["name"])
            ]
        }),
    );
    let timer_forms: Vec<Value> = vocab::TIMER_KEYS
        .iter()
        .map(|k| json!({ "required": [k] }))
        .collect();
    let mut timer = object(
        &[
            (
                "duration",
                json!({ "type": "string", "description": "ISO 8601 duration, e.g. PT10M." }),
            ),
            (
                "date",
                json!({ "type": "string", "description": "ISO 8601 date-time, e.g. 2026-12-01T08:00:00Z." }),
            ),
            (
                "cycle",
                json!({ "type": "string", "description": "ISO 8601 repeating interval (R5/PT10M) or cron." }),
            ),
            (
                "time_zone",
                json!({ "type": "string", "minLength": 1, "description": "IANA time zone of a cron cycle or of a date without offset, e.g. Asia/Shanghai (default UTC)." }),
            ),
        ],
        &[],
    );
    timer["oneOf"] = Value::Array(timer_forms);
    defs.insert("timer".into(), timer);
    defs.insert(
        "code".into(),
        json!({
            "type": ["string", "number", "null"],
            "description": "A code; nothing (`~`) means any."
        }),
    );
    defs.insert("flag".into(), json!({ "enum": [true, null] }));
    defs.insert(
        "script".into(),
        json!({
            "description": "Rhai source, or `{ source, language }`.",
            "oneOf": [
                { "type": "string", "minLength": 1 },
                object(&[
                    ("source", json!({ "type": "string", "minLength": 1 })),
                    ("language", json!({ "type": "string" })),
                ], &["source"])
            ]
        }),
    );
    for (name, triggers, extra) in [
        (
            "start_event",
            vocab::START_TRIGGERS,
            vocab::START_EXTRA_KEYS,
        ),
        ("end_event", vocab::END_TRIGGERS, &[][..]),
        (
            "catch_event",
            vocab::CATCH_TRIGGERS,
            vocab::CATCH_EXTRA_KEYS,
        ),
        ("throw_event", vocab::THROW_TRIGGERS, &[][..]),
        (
            "boundary_event",
            vocab::BOUNDARY_TRIGGERS,
            vocab::BOUNDARY_EXTRA_KEYS,
        ),
    ] {
        defs.insert(name.into(), event(name, triggers, extra));
    }
    defs.insert("branch".into(), branch_object(true));
    defs.insert("plain_branch".into(), branch_object(false));
    defs.insert("next".into(), json!({
        "description": "The node(s) that follow: a node id, a branch, or a list of them.",
        "oneOf": [
            { "$ref": "#/$defs/id" },
            { "$ref": "#/$defs/branch" },
            { "type": "array", "minItems": 1, "items": { "oneOf": [{ "$ref": "#/$defs/id" }, { "$ref": "#/$defs/branch" }] } }
        ]
    }));
    defs.insert("conditional_branches".into(), json!({
        "description": "Branches with `when:`, and at most one `otherwise:`; or `merge` (or nothing) for a gateway that only merges.",
        "oneOf": [
            { "type": "null" },
            { "enum": vocab::GATEWAY_MERGE_WORDS },
            {
                "type": "array",
                "minItems": 1,
                "items": {
                    "allOf": [
                        { "$ref": "#/$defs/branch" },
                        { "anyOf": [{ "required": ["when"] }, { "required": ["otherwise"] }] }
                    ]
                }
            }
        ]
    }));
    defs.insert(
        "plain_branches".into(),
        json!({
            "description": "The targets, all taken; or `join` (or nothing) for a gateway that only joins.",
            "oneOf": [
                { "type": "null" },
                { "enum": vocab::GATEWAY_MERGE_WORDS },
                {
                    "type": "array",
                    "minItems": 1,
                    "items": { "oneOf": [{ "$ref": "#/$defs/id" }, { "$ref": "#/$defs/plain_branch" }] }
                }
            ]
        }),
    );
    defs.insert(
        "no_settings".into(),
        json!({
            "oneOf": [{ "type": "null" }, { "type": "object", "maxProperties": 0 }]
        }),
    );
    defs.insert("llm".into(), llm());
    defs.insert("rule".into(), rule());
    let duration = json!({
        "oneOf": [
            { "type": "integer", "minimum": 0, "description": "Milliseconds." },
            { "type": "string", "pattern": "^[0-9]+ *(ms|s|m|min|h)?$", "description": "e.g. 500ms, 2s, 5m, 1h." }
        ]
    });
    defs.insert(
        "retry".into(),
        json!({
            "description": "Retries of a failing service handler: a count, or `{ retries, delay, max_delay }`.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                object(&[
                    ("retries", json!({ "type": "integer", "minimum": 0 })),
                    ("delay", duration.clone()),
                    ("max_delay", duration),
                ], &["retries"])
            ]
        }),
    );
    let mut for_each = object(
        &[
            (
                "over",
                json!({ "$ref": "#/$defs/expression", "description": "The list to run once per item." }),
            ),
            (
                "as",
                json!({ "$ref": "#/$defs/id", "description": "The variable holding the current item." }),
            ),
            (
                "sequential",
                json!({ "type": "boolean", "description": "One after another (default: in parallel)." }),
            ),
            (
                "count",
                json!({ "$ref": "#/$defs/expression", "description": "How many times to run." }),
            ),
            (
                "until",
                json!({ "$ref": "#/$defs/expression", "description": "Ends the runs early once true." }),
            ),
            (
                "collect",
                json!({ "$ref": "#/$defs/id", "description": "The variable each run produces." }),
            ),
            (
                "into",
                json!({ "$ref": "#/$defs/id", "description": "The list that gathers `collect` from every run." }),
            ),
        ],
        &[],
    );
    for_each["anyOf"] = json!([{ "required": ["over"] }, { "required": ["count"] }]);
    for_each["dependentRequired"] =
        json!({ "collect": ["into"], "into": ["collect"], "as": ["over"] });
    defs.insert("for_each".into(), for_each);
    Value::Object(defs)
}

/// A closed object schema with the given properties and required keys.
fn object(properties: &[(&str, Value)], required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    json!({ "type": "object", "additionalProperties": false, "properties": properties, "required": required })
}

fn trigger_schema(key: &str) -> Value {
    match key {
        "message" => json!({ "$ref": "#/$defs/message" }),
        "timer" => json!({ "$ref": "#/$defs/timer" }),
        "signal" | "link" => json!({ "type": "string", "minLength": 1 }),
        "error" | "escalation" => json!({ "$ref": "#/$defs/code" }),
        "condition" => json!({ "$ref": "#/$defs/expression" }),
        _ => json!({ "$ref": "#/$defs/flag" }),
    }
}

fn event(name: &str, triggers: &[&str], extra: &[&str]) -> Value {
    let mut properties: Vec<(&str, Value)> =
        triggers.iter().map(|t| (*t, trigger_schema(t))).collect();
    for key in extra {
        let schema = match *key {
            "attached_to" => {
                json!({ "$ref": "#/$defs/id", "description": "The activity the event is attached to." })
            }
            "parallel" => {
                json!({ "type": "boolean", "description": "With several triggers: wait for all of them (parallel multiple), not the first." })
            }
            _ => {
                json!({ "type": "boolean", "description": "Whether the event cancels what it interrupts (default true)." })
            }
        };
        properties.push((key, schema));
    }
    let required: &[&str] = if name == "boundary_event" {
        &["attached_to"]
    } else {
        &[]
    };
    let mut schema = object(&properties, required);
    if matches!(name, "catch_event" | "boundary_event") {
        let any: Vec<Value> = triggers
            .iter()
            .map(|t| json!({ "required": [t] }))
            .collect();
        schema["anyOf"] = Value::Array(any);
        schema
    } else {
        json!({ "oneOf": [{ "type": "null" }, schema] })
    }
}

fn branch_object(conditional: bool) -> Value {
    let mut properties = vec![
        (
            "to",
            json!({ "$ref": "#/$defs/id", "description": "The node this flow goes to." }),
        ),
        (
            "id",
            json!({ "$ref": "#/$defs/id", "description": "Flow id (default `<source>_to_<target>`)." }),
        ),
        ("name", json!({ "type": "string" })),
    ];
    if !conditional {
        return object(&properties, &["to"]);
    }
    properties.push((
        "when",
        json!({ "$ref": "#/$defs/expression", "description": "Taken when this holds." }),
    ));
    properties.push((
        "otherwise",
        json!({ "$ref": "#/$defs/id", "description": "The default flow's target." }),
    ));
    let mut schema = object(&properties, &[]);
    schema["oneOf"] = json!([
        { "required": ["to"] },
        { "required": ["otherwise"], "not": { "required": ["when"] } }
    ]);
    schema
}

fn llm() -> Value {
    let mut schema = object(
        &[
            (
                "mode",
                json!({ "enum": vocab::LLM_MODES, "description": "generate (default), extract or classify." }),
            ),
            (
                "prompt",
                json!({ "type": "string", "minLength": 1, "description": "Prompt template; `{name}` inserts a variable." }),
            ),
            ("system", json!({ "type": "string" })),
            (
                "output",
                json!({ "$ref": "#/$defs/id", "description": "The variable that receives the result." }),
            ),
            (
                "schema",
                json!({ "type": "object", "description": "JSON Schema of the fields to extract." }),
            ),
            (
                "labels",
                json!({ "type": "array", "items": { "type": "string", "minLength": 1 } }),
            ),
            (
                "options",
                json!({ "type": "object", "description": "Generation options: max_tokens, temperature, seed, ..." }),
            ),
        ],
        &["prompt"],
    );
    schema["allOf"] = json!([
        {
            "if": { "properties": { "mode": { "const": "classify" } }, "required": ["mode"] },
            "then": { "required": ["labels", "output"] },
            "else": { "properties": { "labels": false } }
        },
        {
            "if": { "properties": { "mode": { "const": "extract" } }, "required": ["mode"] },
            "then": { "required": ["schema"] }
        },
        {
            "if": { "anyOf": [
                { "not": { "required": ["mode"] } },
                { "properties": { "mode": { "const": "generate" } } }
            ] },
            "then": { "required": ["output"] }
        }
    ]);
    schema
}

fn rule() -> Value {
    let mut schema = object(
        &[
            (
                "on",
                json!({ "enum": vocab::RULE_POINTS, "description": "When the rule runs." }),
            ),
            (
                "file",
                json!({ "type": "string", "minLength": 1, "description": "A Rhai file under rules/." }),
            ),
            (
                "script",
                json!({ "type": "string", "minLength": 1, "description": "Inline Rhai." }),
            ),
            (
                "variable",
                json!({
                    "type": "string",
                    "pattern": vocab::RULE_VARIABLE_PATTERN,
                    "description": "The variable watched (guard_variable, variable_change), or a name prefix ending in `*`."
                }),
            ),
        ],
        &["on"],
    );
    schema["oneOf"] = json!([{ "required": ["file"] }, { "required": ["script"] }]);
    schema["if"] = json!({ "properties": { "on": { "enum": vocab::RULE_POINTS_WITH_VARIABLE } } });
    schema["then"] = json!({ "required": ["variable"] });
    schema["else"] = json!({ "properties": { "variable": false } });
    schema
}

fn kind_schema(kind: &str) -> Value {
    match kind {
        "start" => json!({ "$ref": "#/$defs/start_event", "description": "Start event." }),
        "end" => json!({ "$ref": "#/$defs/end_event", "description": "End event." }),
        "catch" => {
            json!({ "$ref": "#/$defs/catch_event", "description": "Intermediate catch event." })
        }
        "throw" => {
            json!({ "$ref": "#/$defs/throw_event", "description": "Intermediate throw event." })
        }
        "boundary" => {
            json!({ "$ref": "#/$defs/boundary_event", "description": "Boundary event on an activity." })
        }
        "task" => json!({ "$ref": "#/$defs/no_settings" }),
        "user" | "manual" => json!({
            "description": "Waits for a person; `form` lists the variables they fill in (shown with their current values).",
            "oneOf": [
                { "type": "null" },
                object(&[("form", json!({
                    "type": "array",
                    "items": { "type": "string", "minLength": 1 }
                }))], &[])
            ]
        }),
        "service" => json!({
            "description": "Service task: the handler name.",
            "oneOf": [
                { "type": "null" },
                { "type": "string", "minLength": 1 },
                object(&[("handler", json!({ "type": "string", "minLength": 1 }))], &[])
            ]
        }),
        "script" => json!({ "$ref": "#/$defs/script" }),
        "receive" => json!({ "oneOf": [{ "type": "null" }, { "$ref": "#/$defs/message" }] }),
        "send" => json!({
            "oneOf": [
                { "type": "null" },
                { "type": "string", "minLength": 1 },
                object(&[
                    ("message", json!({ "type": "string", "minLength": 1 })),
                    ("handler", json!({ "type": "string", "minLength": 1 })),
                ], &[])
            ]
        }),
        "business_rule" => {
            let mut mapping = object(
                &[
                    ("script", json!({ "$ref": "#/$defs/script" })),
                    (
                        "decision",
                        json!({ "$ref": "#/$defs/id", "description": "The id of a deployed decision (DMN or YAML decision file)." }),
                    ),
                    (
                        "result",
                        json!({ "$ref": "#/$defs/id", "description": "The variable that receives the decision's result (default: the decision id)." }),
                    ),
                ],
                &[],
            );
            mapping["anyOf"] = json!([{ "required": ["script"] }, { "required": ["decision"] }]);
            json!({ "oneOf": [{ "type": "string", "minLength": 1 }, mapping] })
        }
        "llm" => json!({ "$ref": "#/$defs/llm" }),
        "exclusive" | "inclusive" | "complex" => json!({ "$ref": "#/$defs/conditional_branches" }),
        "parallel" | "event_based" => json!({ "$ref": "#/$defs/plain_branches" }),
        "subprocess" => object(
            &[
                ("nodes", json!({ "$ref": "#/$defs/nodes" })),
                (
                    "event",
                    json!({ "type": "boolean", "description": "An event subprocess." }),
                ),
                ("transaction", json!({ "type": "boolean" })),
            ],
            &["nodes"],
        ),
        _ => json!({
            "description": "Call activity: the id of the process it calls (a child instance of its latest deployed version), or `{ process, binding | version }`.",
            "oneOf": [
                { "$ref": "#/$defs/id" },
                object(
                    &[
                        ("process", json!({ "$ref": "#/$defs/id" })),
                        ("binding", json!({ "enum": ["latest", "deployment"], "description": "`latest` (the default): the latest version when the call starts; `deployment`: the version that was the latest when the caller was deployed." })),
                        ("version", json!({ "type": "integer", "minimum": 1, "description": "A fixed deployed version." })),
                    ],
                    &["process"],
                )
            ]
        }),
    }
}

fn node() -> Value {
    let mut properties = Map::new();
    for kind in vocab::NODE_KIND_KEYS {
        properties.insert(kind.to_string(), kind_schema(kind));
    }
    properties.insert(
        "name".into(),
        json!({ "type": "string", "description": "Human-readable name." }),
    );
    properties.insert("next".into(), json!({ "$ref": "#/$defs/next" }));
    properties.insert(
        "rules".into(),
        json!({ "type": "array", "items": { "$ref": "#/$defs/rule" } }),
    );
    properties.insert("retry".into(), json!({ "$ref": "#/$defs/retry" }));
    properties.insert("for_each".into(), json!({ "$ref": "#/$defs/for_each" }));
    properties.insert(
        "loop".into(),
        json!({
            "description": "Standard loop: run again while `while` holds (checked first when `test_before`), at most `max` times; `true` runs `max` times.",
            "oneOf": [
                { "type": "boolean" },
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "while": { "$ref": "#/$defs/expression" },
                        "test_before": { "type": "boolean" },
                        "max": { "type": "integer", "minimum": 0 }
                    }
                }
            ]
        }),
    );
    for (key, what) in [
        ("inputs", "Local variables of the activity: name → expression over the enclosing scope, evaluated when it starts."),
        ("outputs", "Variables set when the activity completes: name → expression over its variables (without any, the variables it created are kept)."),
    ] {
        properties.insert(
            key.into(),
            json!({
                "type": "object",
                "description": what,
                "propertyNames": { "$ref": "#/$defs/id" },
                "additionalProperties": { "$ref": "#/$defs/expression" }
            }),
        );
    }
    properties.insert(
        "activation".into(),
        json!({ "$ref": "#/$defs/expression", "description": "Complex gateway: the activation condition of its join (`activationCount` is the number of tokens arrived)." }),
    );

    let exactly_one_kind: Vec<Value> = vocab::NODE_KIND_KEYS
        .iter()
        .map(|k| json!({ "required": [k] }))
        .collect();
    let not_activities: Vec<Value> = vocab::NODE_KIND_KEYS
        .iter()
        .filter(|k| !vocab::ACTIVITY_KINDS.contains(k))
        .map(|k| json!({ "required": [k] }))
        .collect();
    let mut rules = vec![
        json!({ "oneOf": exactly_one_kind }),
        json!({
            "if": { "anyOf": not_activities },
            "then": { "properties": { "retry": false, "for_each": false, "loop": false, "inputs": false, "outputs": false } }
        }),
        json!({ "if": { "required": ["end"] }, "then": { "properties": { "next": false } } }),
        json!({ "if": { "not": { "required": ["complex"] } }, "then": { "properties": { "activation": false } } }),
    ];
    for gateway in [
        "exclusive",
        "inclusive",
        "complex",
        "parallel",
        "event_based",
    ] {
        rules.push(json!({
            "if": { "required": [gateway], "properties": { gateway: { "type": "array" } } },
            "then": { "properties": { "next": false } }
        }));
    }
    json!({
        "type": "object",
        "description": "A node: exactly one kind key (start, service, exclusive, ...) plus name, next, rules.",
        "additionalProperties": false,
        "properties": properties,
        "allOf": rules
    })
}
