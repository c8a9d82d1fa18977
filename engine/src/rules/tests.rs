//! Tests of the rules module: standard library, sandbox limits, errors, attachment points, the
//! seven order rules (from the repository's `rules/` folder) and hot reload.

use super::*;
use crate::model::{AttachPoint, RuleAttachment, RuleSource, Span};
use chrono::{TimeZone, Utc};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 2026-11-29 10:00 UTC = 11:00 in Berlin.
fn config() -> RulesConfig {
    let stdlib = StdlibConfig {
        time_zone: chrono_tz::Europe::Berlin,
        ..StdlibConfig::default()
    }
    .with_fixed_now(Utc.with_ymd_and_hms(2026, 11, 29, 10, 0, 0).unwrap());
    RulesConfig {
        stdlib,
        ..RulesConfig::default()
    }
}

fn vars(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn engine(dir: &Path) -> RuleEngine {
    RuleEngine::load(dir, &config()).unwrap()
}

fn attach(point: AttachPoint, file: &str) -> RuleAttachment {
    RuleAttachment {
        point,
        rule: RuleSource::File(file.into()),
        span: Span::new(1, 1),
    }
}

fn inline(point: AttachPoint, source: &str) -> RuleAttachment {
    RuleAttachment {
        point,
        rule: RuleSource::Inline(source.into()),
        span: Span::new(10, 5),
    }
}

/// Evaluates `source` as an inline rule with no variables and returns its value.
fn eval(source: &str) -> Result<Value, RuleError> {
    let dir = folder(&[]);
    let rules = engine(dir.path());
    rules
        .snapshot()
        .evaluate(&RuleSource::Inline(source.into()), &Map::new())
        .map(|(value, _)| value)
}

// ------------------------------------------------------------------ standard library

#[test]
fn dates_use_the_configured_time_zone_and_clock() {
    assert_eq!(eval("today()").unwrap(), json!("2026-11-29"));
    assert_eq!(eval("now()").unwrap(), json!("2026-11-29T11:00:00+01:00"));
    assert_eq!(eval("time_zone()").unwrap(), json!("Europe/Berlin"));
    assert_eq!(
        eval(r#"start_of_day("2026-11-29")"#).unwrap(),
        json!("2026-11-29T00:00:00+01:00")
    );
    assert_eq!(
        eval(r#"end_of_day("2026-11-29T23:30:00Z")"#).unwrap(),
        json!("2026-11-30T23:59:59+01:00")
    );
    assert_eq!(
        eval(r#"date_of("2026-11-29T23:30:00Z")"#).unwrap(),
        json!("2026-11-30")
    );
    assert_eq!(
        eval(r#"parse_date("2026-03-01 08:15")"#).unwrap(),
        json!("2026-03-01T08:15:00+01:00")
    );
}

#[test]
fn add_days_keeps_wall_clock_time_across_daylight_saving() {
    // Berlin switches to summer time on 2026-03-29.
    assert_eq!(
        eval(r#"add_days("2026-03-28T09:00:00+01:00", 1)"#).unwrap(),
        json!("2026-03-29T09:00:00+02:00")
    );
    assert_eq!(
        eval(r#"add_days("2026-12-30", 3)"#).unwrap(),
        json!("2027-01-02")
    );
    assert_eq!(
        eval(r#"days_between("2026-11-01", "2026-11-29")"#).unwrap(),
        json!(28)
    );
}

#[test]
fn dates_compare_across_formats() {
    assert_eq!(
        eval(r#"compare_dates("2026-11-29", "2026-11-28T23:00:00Z")"#).unwrap(),
        json!(0)
    );
    assert_eq!(
        eval(r#"is_before("2026-11-28", "2026-11-29T00:00:01+01:00")"#).unwrap(),
        json!(true)
    );
    assert_eq!(
        eval(r#"is_after("2026-11-28", "2026-11-29")"#).unwrap(),
        json!(false)
    );
    assert_eq!(
        eval(r#"timestamp("1970-01-01T00:00:10Z")"#).unwrap(),
        json!(10)
    );
}

#[test]
fn bad_date_says_what_is_expected() {
    let err = eval(r#"add_days("29.11.2026", 1)"#).unwrap_err();
    assert!(
        err.to_string().contains("`29.11.2026` is not a date"),
        "{err}"
    );
}

#[test]
fn money_rounds_half_even_or_half_up() {
    assert_eq!(eval(r#"round_half_even("0.125")"#).unwrap(), json!("0.12"));
    assert_eq!(eval(r#"round_half_up("0.125")"#).unwrap(), json!("0.13"));
    assert_eq!(eval(r#"round_half_even(2.675)"#).unwrap(), json!("2.68"));
    assert_eq!(eval("money(7)").unwrap(), json!("7.00"));
    assert_eq!(
        eval(r#"round_half_up("1.23456", 3)"#).unwrap(),
        json!("1.235")
    );
}

#[test]
fn money_sums_without_float_drift() {
    assert_eq!(eval("money_sum([0.1, 0.2])").unwrap(), json!("0.3"));
    let many = format!("money(money_sum([{}]))", vec!["0.01"; 1000].join(", "));
    assert_eq!(eval(&many).unwrap(), json!("10.00"));
    assert_eq!(
        eval(r#"money(money_mul("19.99", 3))"#).unwrap(),
        json!("59.97")
    );
    assert_eq!(eval(r#"money_sub("10", "0.01")"#).unwrap(), json!("9.99"));
    assert_eq!(eval(r#"money_cmp("1.50", 1.5)"#).unwrap(), json!(0));
}

#[test]
fn money_refuses_non_amounts() {
    let err = eval(r#"money("twelve")"#).unwrap_err();
    assert!(
        err.to_string().contains("`twelve` is not a money amount"),
        "{err}"
    );
    assert!(eval("money(())").is_err());
}

#[test]
fn text_helpers() {
    assert_eq!(
        eval(r#"is_blank("  ") && is_blank(()) && !is_blank("x")"#).unwrap(),
        json!(true)
    );
    assert_eq!(eval(r#"or_default("", "n/a")"#).unwrap(), json!("n/a"));
    assert_eq!(eval(r#"join([1, "b", 3], "-")"#).unwrap(), json!("1-b-3"));
    assert_eq!(eval(r#"pad_left("42", 5, '0')"#).unwrap(), json!("00042"));
    assert_eq!(
        eval(r#"truncate_text("abcdef", 4)"#).unwrap(),
        json!("abc…")
    );
    assert_eq!(
        eval(r#"normalize_space("  a   b ")"#).unwrap(),
        json!("a b")
    );
    assert_eq!(
        eval(r#"fill_template("Order {id} is {status} {x}", #{ id: 7, status: "open" })"#).unwrap(),
        json!("Order 7 is open {x}")
    );
}

#[test]
fn effects_outside_a_rule_run_are_refused() {
    // A module's top-level code runs while it is loaded, not during a rule evaluation.
    let dir = folder(&[
        ("lib/noisy.rhai", r#"notify("x", "y");"#),
        ("uses.rhai", "import \"lib/noisy\" as n;\ntrue"),
    ]);
    let rules = engine(dir.path());
    let errors = rules.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .contains("`notify` can only be called while a rule runs"),
        "{errors:?}"
    );
}

// ------------------------------------------------------------------ sandbox limits

#[test]
fn infinite_loop_ends_with_an_operations_error() {
    let err = eval("loop { }").unwrap_err();
    assert!(matches!(err, RuleError::Runtime { .. }), "{err}");
    assert!(err.to_string().contains("operations"), "{err}");
}

#[test]
fn deep_recursion_ends_with_a_stack_error() {
    let err = eval("fn down(n) { down(n + 1) }\ndown(0)").unwrap_err();
    assert!(err.to_string().to_lowercase().contains("stack"), "{err}");
}

#[test]
fn huge_string_ends_with_a_size_error() {
    let err = eval(r#"let s = "x"; loop { s += s; }"#).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("length"), "{err}");
}

#[test]
fn text_helpers_refuse_results_over_the_string_limit_before_building_them() {
    for script in [
        r#"pad_left("x", 9223372036854775807, 'y')"#,
        r#"let big = "x"; big.pad(60000, 'x'); fill_template("{a}{a}{a}", #{ a: big })"#,
        r#"let big = "x"; big.pad(30000, 'x'); join([big, big], big)"#,
    ] {
        let err = eval(script).unwrap_err();
        assert!(
            err.to_string().contains("more than the limit of 65536"),
            "{script}: {err}"
        );
    }
}

#[test]
fn date_arithmetic_out_of_range_is_an_error_not_a_panic() {
    for script in [
        r#"add_days("2026-01-01", 9223372036854775807)"#,
        r#"add_days("2026-01-01T00:00:00Z", -9223372036854775807)"#,
        r#"end_of_day("+262142-12-31")"#,
    ] {
        assert!(eval(script).is_err(), "{script}");
    }
}

#[test]
fn no_file_process_or_eval_access() {
    for script in [
        r#"open_file("/etc/passwd")"#,
        r#"read_string("/etc/passwd")"#,
        r#"system("ls")"#,
    ] {
        let err = eval(script).unwrap_err();
        assert!(
            err.to_string().contains("Function not found"),
            "{script}: {err}"
        );
    }
    assert!(matches!(
        eval(r#"eval("1")"#).unwrap_err(),
        RuleError::Compile { .. }
    ));
}

#[test]
fn imports_cannot_escape_the_rules_folder() {
    let outside = folder(&[("secret.rhai", "fn pin() { 1234 }")]);
    let escape = format!(
        "import \"../{}/secret\" as s;\ns::pin()",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let absolute = format!(
        "import \"{}\" as s;\ns::pin()",
        outside.path().join("secret").display()
    );
    let dir = folder(&[("escape.rhai", &escape), ("absolute.rhai", &absolute)]);
    let rules = engine(dir.path());
    let errors = rules.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("absolute.rhai:1:1") && e.contains("is absolute")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|e| e.contains("escape.rhai:1:1") && e.contains("leaves the rules folder")),
        "{text:?}"
    );
    assert_eq!(rules.snapshot().names().count(), 0);
}

#[cfg(unix)]
#[test]
fn links_out_of_the_rules_folder_are_refused() {
    let outside = folder(&[("secret.rhai", "fn pin() { 1234 }")]);
    let dir = folder(&[("uses.rhai", "import \"linked\" as s;\ns::pin()")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.rhai"),
        dir.path().join("linked.rhai"),
    )
    .unwrap();
    let rules = engine(dir.path());
    let errors: Vec<String> = rules.errors().iter().map(|e| e.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("uses.rhai:1:1") && e.contains("outside the rules folder")),
        "{errors:?}"
    );
}

#[test]
fn imports_inside_the_folder_work() {
    let dir = folder(&[
        ("lib/math.rhai", "fn twice(x) { x * 2 }"),
        ("main.rhai", "import \"lib/math\" as m;\nm::twice(21)"),
    ]);
    let rules = engine(dir.path());
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    let (value, _) = rules
        .snapshot()
        .evaluate(&RuleSource::File("main.rhai".into()), &Map::new())
        .unwrap();
    assert_eq!(value, json!(42));
}

#[test]
fn import_cycles_end_with_an_error_instead_of_a_stack_overflow() {
    let dir = folder(&[
        ("a.rhai", "import \"b\" as b;\nfn x() { 1 }"),
        ("b.rhai", "import \"a\" as a;\nfn y() { 2 }"),
        ("main.rhai", "import \"a\" as a;\na::x()"),
    ]);
    let rules = engine(dir.path());
    let errors: Vec<String> = rules.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("imports nest more than 8 deep")),
        "{errors:?}"
    );
}

#[test]
fn oversized_rule_files_are_refused_before_compiling() {
    let big = format!(
        "let a = 1;\n//{}\n",
        "x".repeat(crate::script::MAX_SCRIPT_BYTES)
    );
    let dir = folder(&[("big.rhai", &big), ("small.rhai", "1")]);
    let rules = engine(dir.path());
    assert_eq!(rules.snapshot().names().collect::<Vec<_>>(), ["small"]);
    let checked = check_rules_path(dir.path());
    assert_eq!(checked.len(), 1, "{checked:?}");
    assert!(
        checked[0].message.contains("larger than 65536 bytes"),
        "{checked:?}"
    );
    let inline = eval(&format!(
        "1 //{}",
        "x".repeat(crate::script::MAX_SCRIPT_BYTES)
    ))
    .unwrap_err()
    .to_string();
    assert!(inline.contains("limited to 65536 bytes"), "{inline}");
}

// ------------------------------------------------------------------ errors

#[test]
fn compile_errors_name_file_line_column_and_rule() {
    let dir = folder(&[("broken.rhai", "let a = 1;\nlet b = ;\n")]);
    let rules = engine(dir.path());
    let errors = rules.errors();
    assert_eq!(errors.len(), 1);
    let text = errors[0].to_string();
    let expected = format!(
        "{}:2:9: error: rule `broken` does not compile",
        dir.path().join("broken.rhai").display()
    );
    assert!(text.starts_with(&expected), "{text}");
}

#[test]
fn runtime_errors_name_file_line_column_and_rule() {
    let dir = folder(&[("fails.rhai", "let a = 1;\nlet b = a + missing;\n")]);
    let rules = engine(dir.path());
    let err = rules
        .snapshot()
        .evaluate(&RuleSource::File("fails.rhai".into()), &Map::new())
        .unwrap_err();
    let text = err.to_string();
    let expected = format!(
        "{}:2:13: error: rule `fails` failed: Variable not found: missing",
        dir.path().join("fails.rhai").display()
    );
    assert_eq!(text, expected);
}

#[test]
fn errors_inside_an_imported_module_say_where_in_the_module() {
    let dir = folder(&[
        ("lib/bad.rhai", "let a = 1;\nlet b = a + missing;\n"),
        ("uses.rhai", "import \"lib/bad\" as bad;\ntrue"),
    ]);
    let rules = engine(dir.path());
    let errors = rules.errors();
    let expected = format!(
        "{}:1:1: error: rule `uses` does not compile: Variable not found: missing (in module `lib/bad` at 2:13)",
        dir.path().join("uses.rhai").display()
    );
    assert!(
        errors.iter().any(|e| e.to_string() == expected),
        "{errors:#?}"
    );
}

#[test]
fn inline_rule_errors_are_placed_in_the_workflow() {
    let dir = folder(&[]);
    let rules = engine(dir.path());
    let rule = inline(AttachPoint::OnStart, "let x = 1;\nundefined_fn()");
    let err = rules
        .snapshot()
        .run_policies([&rule], &RuleEvent::InstanceStarted, &Map::new())
        .unwrap_err();
    assert_eq!(err.rule(), Some("inline@10:5"));
    assert!(
        err.to_string()
            .starts_with("<inline>:11:1: error: rule `inline@10:5` failed"),
        "{err}"
    );
}

#[test]
fn missing_rule_file_is_reported_by_name() {
    let dir = folder(&[]);
    let rules = engine(dir.path());
    let err = rules
        .snapshot()
        .check_guards(
            [&attach(AttachPoint::GuardComplete, "nope.rhai")],
            &complete("t"),
            &Map::new(),
        )
        .unwrap_err();
    assert_eq!(
        err,
        RuleError::NotFound {
            rule: "nope".into(),
            file: "nope.rhai".into()
        }
    );
}

#[test]
fn check_reports_compile_errors_as_diagnostics() {
    let dir = folder(&[
        ("good.rhai", "true"),
        ("bad.rhai", "if x {\n  1\n"),
        ("lib/uses.rhai", "import \"../../x\" as x;"),
    ]);
    let diagnostics = check_rules_path(dir.path());
    assert_eq!(diagnostics.len(), 2, "{diagnostics:?}");
    let bad = diagnostics
        .iter()
        .find(|d| d.file.ends_with("bad.rhai"))
        .unwrap();
    assert!(
        bad.to_string().starts_with(&format!(
            "{}:3:1: error: ",
            dir.path().join("bad.rhai").display()
        )),
        "{bad}"
    );
    assert!(check_rule_file(&dir.path().join("good.rhai")).is_empty());
    let missing = check_rule_file(&dir.path().join("absent.rhai"));
    assert!(missing[0].message.contains("cannot read rule file"));
}

#[test]
fn workflow_attachments_are_checked_against_the_rules_folder() {
    let dir = folder(&[("present.rhai", "true")]);
    let yaml = "process: p\nrules:\n  - { on: variable_change, variable: status, file: missing.rhai }\nnodes:\n  s: { start: ~, next: t }\n  t:\n    user: ~\n    rules:\n      - { on: guard_complete, file: rules/present.rhai }\n      - { on: leave, script: 'let x = ;' }\n    next: e\n  e: { end: ~ }\n";
    let (defs, diagnostics) = crate::yaml::parse_yaml(Path::new("w.yaml"), yaml);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let found: Vec<String> = check_attachments(&defs.unwrap(), Some(dir.path()))
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0]
            .starts_with("w.yaml:3:3: error: rule file `missing.rhai` is not in the rules folder"),
        "{found:?}"
    );
    assert_eq!(found[1], "w.yaml:10:7: error: inline rule does not compile (1:9 inside the rule): Unexpected ';' [t]");
}

// ------------------------------------------------------------------ attachment points

fn complete(node: &str) -> RuleEvent {
    RuleEvent::CompleteTask {
        node: node.into(),
        output: Map::new(),
    }
}

#[test]
fn attachment_point_names_round_trip() {
    for name in AttachPoint::NAMES {
        let variable = name.contains("variable").then_some("status");
        let point = AttachPoint::parse(name, variable).unwrap();
        assert_eq!(point.name(), name);
    }
    assert!(AttachPoint::parse("guard_variable", None)
        .unwrap_err()
        .contains("needs a `variable`"));
    assert!(AttachPoint::parse("on_leave", Some("x"))
        .unwrap_err()
        .contains("takes no `variable`"));
    assert!(AttachPoint::parse("on_fire", None)
        .unwrap_err()
        .contains("expected one of"));
}

#[test]
fn guard_on_task_completion_rejects_with_the_rules_message() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let guard = inline(
        AttachPoint::GuardComplete,
        r#"if event.output.approved != true { reject("approval missing") }"#,
    );
    let event = RuleEvent::CompleteTask {
        node: "approve".into(),
        output: vars(json!({"approved": false})),
    };
    let err = set.check_guards([&guard], &event, &Map::new()).unwrap_err();
    assert_eq!(
        err,
        RuleError::Rejected {
            rule: "inline@10:5".into(),
            message: "approval missing".into()
        }
    );
    let event = RuleEvent::CompleteTask {
        node: "approve".into(),
        output: vars(json!({"approved": true})),
    };
    assert_eq!(
        set.check_guards([&guard], &event, &Map::new()).unwrap(),
        vec![]
    );
}

#[test]
fn guard_returning_false_rejects_and_try_catch_cannot_swallow_a_rejection() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let falsy = inline(AttachPoint::GuardMessage, "event.payload.amount > 0");
    let event = RuleEvent::CorrelateMessage {
        node: "wait_payment".into(),
        message: "paid".into(),
        payload: json!({"amount": 0}),
    };
    assert!(set
        .check_guards([&falsy], &event, &Map::new())
        .unwrap_err()
        .is_rejection());
    let event = RuleEvent::CorrelateMessage {
        node: "wait_payment".into(),
        message: "paid".into(),
        payload: json!({"amount": 5}),
    };
    assert!(set.check_guards([&falsy], &event, &Map::new()).is_ok());
    let sneaky = inline(
        AttachPoint::GuardMessage,
        r#"try { reject("no") } catch { }; true"#,
    );
    assert!(set
        .check_guards([&sneaky], &event, &Map::new())
        .unwrap_err()
        .is_rejection());
}

#[test]
fn guard_on_variable_change_matches_names_and_prefixes() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let guard = inline(
        AttachPoint::GuardVariable("limit*".into()),
        r#"if event.value > 100 { reject(`${event.name} too high`) }"#,
    );
    let change = |name: &str, new: i64| RuleEvent::ChangeVariable {
        name: name.into(),
        old: Value::Null,
        new: json!(new),
    };
    let err = set
        .check_guards([&guard], &change("limit_eur", 500), &Map::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule `inline@10:5` rejected the action: limit_eur too high"
    );
    assert!(set
        .check_guards([&guard], &change("limit_eur", 50), &Map::new())
        .is_ok());
    assert!(
        set.check_guards([&guard], &change("other", 500), &Map::new())
            .is_ok(),
        "a guard on limit* ignores `other`"
    );
}

#[test]
fn guards_do_not_run_for_policy_events_and_policies_not_for_guard_events() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let guard = inline(AttachPoint::GuardComplete, r#"reject("always")"#);
    assert!(set
        .run_policies([&guard], &complete("t"), &Map::new())
        .unwrap()
        .effects
        .is_empty());
    let policy = inline(AttachPoint::OnLeave, r#"reject("always")"#);
    assert!(set
        .check_guards([&policy], &complete("t"), &Map::new())
        .is_ok());
}

#[test]
fn each_event_policy_point_runs_for_its_event_only() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let cases = [
        (AttachPoint::OnStart, RuleEvent::InstanceStarted),
        (
            AttachPoint::OnEnter,
            RuleEvent::NodeEntered { node: "a".into() },
        ),
        (
            AttachPoint::OnLeave,
            RuleEvent::NodeLeft { node: "a".into() },
        ),
        (
            AttachPoint::OnVariableChange("status".into()),
            RuleEvent::VariableChanged {
                name: "status".into(),
                old: json!("new"),
                new: json!("confirmed"),
            },
        ),
        (
            AttachPoint::OnStatusChange,
            RuleEvent::StatusChanged {
                old: "running".into(),
                new: "completed".into(),
            },
        ),
    ];
    let attachments: Vec<RuleAttachment> = cases
        .iter()
        .map(|(point, _)| inline(point.clone(), r#"emit(event.kind, event)"#))
        .collect();
    for (_, event) in &cases {
        let outcome = set.run_policies(&attachments, event, &Map::new()).unwrap();
        assert_eq!(outcome.effects.len(), 1, "{event:?}: {:?}", outcome.effects);
        let Effect::Emit {
            event: name,
            payload,
            ..
        } = &outcome.effects[0]
        else {
            panic!("{:?}", outcome.effects)
        };
        assert_eq!(name, event.kind());
        assert_eq!(payload, &event.to_json());
    }
}

#[test]
fn policies_change_variables_only_through_set_and_see_earlier_changes() {
    let dir = folder(&[]);
    let set = engine(dir.path()).snapshot();
    let first = inline(
        AttachPoint::OnEnter,
        r#"let local = 1; set("count", count + 1);"#,
    );
    let second = inline(AttachPoint::OnEnter, r#"set("double", count * 2);"#);
    let outcome = set
        .run_policies(
            [&first, &second],
            &RuleEvent::NodeEntered { node: "n".into() },
            &vars(json!({"count": 1})),
        )
        .unwrap();
    assert_eq!(
        Value::Object(outcome.updates),
        json!({"count": 2, "double": 4})
    );
}

// ------------------------------------------------------------------ the seven order rules

fn order_rules() -> RuleEngine {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rules");
    let rules = RuleEngine::load(dir, &config()).unwrap();
    assert!(rules.errors().is_empty(), "{:?}", rules.errors());
    rules
}

fn order(status: &str) -> Map<String, Value> {
    vars(json!({
        "order_id": "SO-1001",
        "customer_email": "ana@example.com",
        "status": status,
        "customer": "ACME",
        "amount": 119.9,
        "currency": "EUR",
        "shipment": {"carrier": "DHL", "weight_kg": 2.5},
    }))
}

#[test]
fn rule1_shipment_info_only_while_awaiting_shipment() {
    let set = order_rules().snapshot();
    let on_field = attach(
        AttachPoint::GuardVariable("shipment*".into()),
        "shipment_window.rhai",
    );
    let on_ship = attach(AttachPoint::GuardComplete, "rules/shipment_window.rhai");
    let change = RuleEvent::ChangeVariable {
        name: "shipment_tracking".into(),
        old: Value::Null,
        new: json!("1Z999"),
    };
    assert!(set
        .check_guards([&on_field], &change, &order("awaiting_shipment"))
        .is_ok());
    let err = set
        .check_guards([&on_field], &change, &order("awaiting_payment"))
        .unwrap_err();
    assert_eq!(
        err,
        RuleError::Rejected {
            rule: "shipment_window".into(),
            message: "shipment information can only be filled in while the order is awaiting shipment; order SO-1001 is \"awaiting_payment\"".into()
        }
    );
    assert!(set
        .check_guards(
            [&on_ship],
            &complete("ship_order"),
            &order("awaiting_shipment")
        )
        .is_ok());
    assert!(set
        .check_guards([&on_ship], &complete("ship_order"), &Map::new())
        .unwrap_err()
        .to_string()
        .contains("has no status"));
}

fn imported() -> Vec<Value> {
    vec![
        json!({"order_id": "A", "created_at": "2026-11-29T09:00:00Z", "updated_at": "2026-11-29T12:00:00Z", "paid_at": null}),
        json!({"order_id": "B", "created_at": "2026-11-28T09:00:00Z", "updated_at": "2026-11-29T13:00:00Z", "paid_at": "2026-11-29T08:00:00Z"}),
        json!({"order_id": "C", "created_at": "2026-11-29 08:00", "updated_at": "2026-11-29T11:00:00Z", "paid_at": "2026-11-29T07:00:00Z"}),
    ]
}

fn ids(orders: &[Value]) -> Vec<&str> {
    orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect()
}

#[test]
fn rule2_imported_orders_sorted_by_the_configured_time() {
    let set = order_rules().snapshot();
    let rule = RuleSource::File("import_order.rhai".into());
    let by = |field: &str| vars(json!({ "import_sort_by": field }));
    assert_eq!(
        ids(&set.sort_by_rule(&rule, imported(), &Map::new()).unwrap()),
        ["B", "C", "A"]
    );
    assert_eq!(
        ids(&set.sort_by_rule(&rule, imported(), &by("created")).unwrap()),
        ["B", "C", "A"]
    );
    assert_eq!(
        ids(&set.sort_by_rule(&rule, imported(), &by("updated")).unwrap()),
        ["C", "A", "B"]
    );
    assert_eq!(
        ids(&set.sort_by_rule(&rule, imported(), &by("paid")).unwrap()),
        ["C", "B", "A"],
        "unpaid last"
    );
    let err = set
        .sort_by_rule(&rule, imported(), &by("shipped"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(r#"import_sort_by must be "created", "updated" or "paid", not "shipped""#),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("import_order.rhai:11:12: error: rule `import_order` failed: import_sort_by"),
        "{err}"
    );
}

#[test]
fn rule3_every_status_change_notifies_the_customer() {
    let set = order_rules().snapshot();
    let policy = attach(
        AttachPoint::OnVariableChange("status".into()),
        "notify_customer_status.rhai",
    );
    let event = RuleEvent::VariableChanged {
        name: "status".into(),
        old: json!("confirmed"),
        new: json!("awaiting_shipment"),
    };
    let outcome = set
        .run_policies([&policy], &event, &order("awaiting_shipment"))
        .unwrap();
    assert_eq!(
        outcome.effects,
        vec![Effect::Notify {
            receiver: "ana@example.com".into(),
            message: "Your order SO-1001 is now awaiting shipment.".into(),
            rule: "notify_customer_status".into()
        }]
    );
    let other = RuleEvent::VariableChanged {
        name: "total".into(),
        old: json!(1),
        new: json!(2),
    };
    assert!(set
        .run_policies([&policy], &other, &order("x"))
        .unwrap()
        .effects
        .is_empty());
}

#[test]
fn rule4_shipment_changes_notify_the_warehouse() {
    let set = order_rules().snapshot();
    let policy = attach(
        AttachPoint::OnVariableChange("shipment*".into()),
        "notify_warehouse_shipment.rhai",
    );
    let event = RuleEvent::VariableChanged {
        name: "shipment_address".into(),
        old: Value::Null,
        new: json!("Main St 1"),
    };
    let outcome = set
        .run_policies([&policy], &event, &order("awaiting_shipment"))
        .unwrap();
    assert_eq!(outcome.effects.len(), 2);
    assert_eq!(
        outcome.effects[0],
        Effect::Notify {
            receiver: "warehouse".into(),
            message:
                "Shipment information of order SO-1001 changed: shipment_address is now Main St 1."
                    .into(),
            rule: "notify_warehouse_shipment".into()
        }
    );
    assert!(
        matches!(&outcome.effects[1], Effect::Emit { event, payload, .. }
        if event == "shipment_info_changed" && payload["field"] == "shipment_address")
    );
}

#[test]
fn rule5_confirming_an_order_sends_the_invoice() {
    let set = order_rules().snapshot();
    let policy = attach(AttachPoint::OnLeave, "send_invoice.rhai");
    let outcome = set
        .run_policies(
            [&policy],
            &RuleEvent::NodeLeft {
                node: "confirm_order".into(),
            },
            &order("confirmed"),
        )
        .unwrap();
    assert_eq!(
        outcome.effects[0],
        Effect::Emit {
            event: "send_invoice".into(),
            payload: json!({"order_id": "SO-1001", "invoice_number": "INV-20261129-SO-1001", "amount": "119.90", "currency": "EUR", "receiver": "ana@example.com"}),
            rule: "send_invoice".into()
        }
    );
    assert!(
        matches!(&outcome.effects[1], Effect::Notify { message, .. } if message == "Invoice INV-20261129-SO-1001 for order SO-1001: 119.90 EUR.")
    );
    assert_eq!(
        Value::Object(outcome.updates),
        json!({"invoice_number": "INV-20261129-SO-1001", "invoice_sent_on": "2026-11-29"})
    );
}

#[test]
fn rule6_completing_shipment_updates_the_freight_charge() {
    let set = order_rules().snapshot();
    let policy = attach(AttachPoint::OnLeave, "freight_charge.rhai");
    let left = RuleEvent::NodeLeft {
        node: "ship_order".into(),
    };
    // DHL: 4.90 + 3 started kg x 1.10 = 8.20
    let outcome = set
        .run_policies([&policy], &left, &order("shipped"))
        .unwrap();
    assert_eq!(
        Value::Object(outcome.updates.clone()),
        json!({"freight_charge": "8.20"})
    );
    assert!(
        matches!(&outcome.effects[0], Effect::Emit { event, payload, .. }
        if event == "freight_charge_updated" && payload["freight_charge"] == "8.20" && payload["previous"].is_null())
    );
    let mut heavier = order("shipped");
    heavier.insert(
        "shipment".into(),
        json!({"carrier": "unknown-co", "weight_kg": 10}),
    );
    heavier.insert("freight_charge".into(), json!("8.20"));
    let outcome = set.run_policies([&policy], &left, &heavier).unwrap();
    // standard rate: 3.90 + 10 x 1.25 = 16.40
    assert_eq!(outcome.updates["freight_charge"], json!("16.40"));
    let mut broken = order("shipped");
    broken.insert(
        "shipment".into(),
        json!({"carrier": "DHL", "weight_kg": -1}),
    );
    let err = set.run_policies([&policy], &left, &broken).unwrap_err();
    assert!(
        err.to_string()
            .contains("shipment weight must be a number of kilograms >= 0"),
        "{err}"
    );
}

#[test]
fn rule7_unpaid_orders_are_settled_at_the_end_of_the_day() {
    let set = order_rules().snapshot();
    let rule = RuleSource::File("settle_unpaid.rhai".into());
    let open = vec![
        json!({"order_id": "P", "payment_status": "paid", "created_at": "2026-11-29T08:00:00Z", "amount": 10}),
        json!({"order_id": "U", "payment_status": "open", "created_at": "2026-11-29T08:00:00Z", "amount": 20.5}),
        json!({"order_id": "T", "paid": false, "created_at": "2026-11-30T00:30:00+01:00", "amount": 5}),
        json!({"order_id": "N", "created_at": "2026-11-28", "amount": "7.125"}),
        json!({"order_id": "Q", "paid": true, "created_at": "2026-11-28", "amount": 1}),
    ];
    let selection = set
        .select_by_rule(&rule, open.clone(), &Map::new())
        .unwrap();
    assert_eq!(ids(&selection.selected), ["U", "N"]);
    assert_eq!(
        selection.effects,
        vec![
            Effect::Emit {
                event: "settle_order".into(),
                payload: json!({"order_id": "U", "amount": "20.50", "settled_on": "2026-11-29"}),
                rule: "settle_unpaid".into()
            },
            Effect::Emit {
                event: "settle_order".into(),
                payload: json!({"order_id": "N", "amount": "7.12", "settled_on": "2026-11-29"}),
                rule: "settle_unpaid".into()
            },
        ]
    );
    let next_day = set
        .select_by_rule(&rule, open, &vars(json!({"settlement_date": "2026-11-30"})))
        .unwrap();
    assert_eq!(ids(&next_day.selected), ["U", "T", "N"]);
}

// ------------------------------------------------------------------ hot reload

#[test]
fn reload_swaps_changed_rules_and_keeps_old_snapshots_intact() {
    let dir = folder(&[("limit.rhai", "event.value <= 100"), ("other.rhai", "true")]);
    let rules = engine(dir.path());
    let guard = attach(AttachPoint::GuardVariable("amount".into()), "limit.rhai");
    let change = RuleEvent::ChangeVariable {
        name: "amount".into(),
        old: json!(0),
        new: json!(150),
    };
    let before = rules.snapshot();
    assert!(before.check_guards([&guard], &change, &Map::new()).is_err());

    std::fs::write(dir.path().join("limit.rhai"), "event.value <= 1000").unwrap();
    let report = rules.reload().unwrap();
    assert_eq!(
        report.compiled,
        vec!["limit".to_string()],
        "unchanged files are not recompiled"
    );
    let after = rules.snapshot();
    assert_eq!(after.generation(), 1);
    assert!(after.check_guards([&guard], &change, &Map::new()).is_ok());
    // A step that took its snapshot before the reload still sees the old rule.
    assert!(before.check_guards([&guard], &change, &Map::new()).is_err());
    assert_eq!(Arc::as_ptr(&rules.snapshot()), Arc::as_ptr(&after));
}

#[test]
fn reload_rejects_a_broken_file_and_keeps_the_old_version_serving() {
    let dir = folder(&[("limit.rhai", "event.value <= 100")]);
    let rules = engine(dir.path());
    let guard = attach(AttachPoint::GuardVariable("amount".into()), "limit.rhai");
    let change = RuleEvent::ChangeVariable {
        name: "amount".into(),
        old: json!(0),
        new: json!(150),
    };
    let old_hash = rules.snapshot().hash_of("limit");

    std::fs::write(dir.path().join("limit.rhai"), "event.value <= ").unwrap();
    let report = rules.reload().unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert!(
        report.rejected[0].to_string().contains("limit.rhai:1:"),
        "{}",
        report.rejected[0]
    );
    assert_eq!(
        rules.errors(),
        report.rejected,
        "the error stays listed for the admin API"
    );
    assert_eq!(rules.snapshot().hash_of("limit"), old_hash);
    assert!(
        rules
            .snapshot()
            .check_guards([&guard], &change, &Map::new())
            .is_err(),
        "old rule still serving"
    );

    std::fs::write(dir.path().join("limit.rhai"), "event.value <= 1000").unwrap();
    let report = rules.reload().unwrap();
    assert!(report.rejected.is_empty() && rules.errors().is_empty());
    assert!(rules
        .snapshot()
        .check_guards([&guard], &change, &Map::new())
        .is_ok());
}

#[test]
fn reload_recompiles_rules_whose_imported_module_changed_and_drops_deleted_files() {
    let dir = folder(&[
        ("lib/limits.rhai", "fn max() { 100 }"),
        (
            "limit.rhai",
            "import \"lib/limits\" as l;\nevent.value <= l::max()",
        ),
        ("gone.rhai", "true"),
    ]);
    let rules = engine(dir.path());
    let guard = attach(AttachPoint::GuardVariable("amount".into()), "limit.rhai");
    let change = RuleEvent::ChangeVariable {
        name: "amount".into(),
        old: json!(0),
        new: json!(150),
    };
    assert!(rules
        .snapshot()
        .check_guards([&guard], &change, &Map::new())
        .is_err());
    std::fs::write(dir.path().join("lib/limits.rhai"), "fn max() { 1000 }").unwrap();
    std::fs::remove_file(dir.path().join("gone.rhai")).unwrap();
    let report = rules.reload().unwrap();
    assert_eq!(
        report.compiled,
        vec!["lib/limits".to_string(), "limit".to_string()]
    );
    assert_eq!(report.removed, vec!["gone".to_string()]);
    assert!(rules
        .snapshot()
        .check_guards([&guard], &change, &Map::new())
        .is_ok());
}
