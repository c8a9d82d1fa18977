use super::*;
use crate::feel::Value;
use crate::model::DecisionResultMapping;
use serde_json::json;
use std::path::Path;

fn yaml(text: &str) -> (Decisions, Vec<String>) {
    let (file, mut diagnostics) = parse_decision_yaml(Path::new("d.yaml"), text);
    let (set, more) = Decisions::build(&[file.unwrap_or_default()]);
    diagnostics.extend(more);
    (set, diagnostics.iter().map(|d| d.to_string()).collect())
}

fn xml(text: &str) -> (Decisions, Vec<String>) {
    let (file, mut diagnostics) = parse_dmn(Path::new("d.dmn"), text.as_bytes());
    let (set, more) = Decisions::build(&[file.unwrap_or_default()]);
    diagnostics.extend(more);
    (set, diagnostics.iter().map(|d| d.to_string()).collect())
}

fn decide(set: &Decisions, id: &str, variables: serde_json::Value) -> Value {
    let variables = variables.as_object().cloned().unwrap_or_default();
    set.evaluate(id, &variables).expect("evaluates").value
}

const REVIEW: &str = r#"
decision: order_review
name: Order review
hit_policy: first
inputs:
  tier: customer_tier
  amount: { expression: amount, type: number }
outputs:
  review: { default: false }
  reviewer: { default: '"nobody"' }
rules:
  - { tier: '"gold"', amount: "> 50000", review: true, reviewer: '"head of sales"' }
  - { tier: '"gold"', review: false, reviewer: '"nobody"' }
  - { amount: "> 10000", review: true, reviewer: '"clerk"' }
"#;

#[test]
fn yaml_tables_pick_the_first_match_or_the_defaults() {
    let (set, problems) = yaml(REVIEW);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        decide(
            &set,
            "order_review",
            json!({"customer_tier": "gold", "amount": 60000})
        )
        .to_string(),
        r#"{review: true, reviewer: "head of sales"}"#
    );
    assert_eq!(
        decide(
            &set,
            "order_review",
            json!({"customer_tier": "gold", "amount": 20000})
        )
        .to_string(),
        r#"{review: false, reviewer: "nobody"}"#
    );
    assert_eq!(
        decide(
            &set,
            "order_review",
            json!({"customer_tier": "silver", "amount": 20000})
        )
        .to_string(),
        r#"{review: true, reviewer: "clerk"}"#
    );
    let evaluation = set
        .evaluate(
            "order_review",
            &json!({"customer_tier": "silver", "amount": 5})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        evaluation.value.to_string(),
        r#"{review: false, reviewer: "nobody"}"#
    );
    assert!(evaluation.matched.is_empty());
    assert_eq!(
        evaluation
            .mapped(DecisionResultMapping::SingleResult)
            .unwrap()
            .to_string(),
        r#"{review: false, reviewer: "nobody"}"#
    );
}

#[test]
fn yaml_problems_are_positioned() {
    let (_, problems) = yaml(
        r#"decision: d
inputs: { amount: amount }
outputs: { ok: ~ }
rules:
  - { amount: "> 10 +", ok: true }
  - { amuont: "1", ok: false }
"#,
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("d.yaml:5:22: error: input entry is not a valid unary test:")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("d.yaml:6:7: error: rule 2 of `d` names unknown column `amuont`; did you mean `amount`?")),
        "{problems:?}"
    );
}

#[test]
fn unique_tables_with_overlapping_rules_are_refused() {
    let (set, problems) = yaml(
        r#"decision: rate
inputs: { weight: weight }
outputs: { rate: ~ }
rules:
  - { weight: "< 10", rate: 5 }
  - { weight: "[10..20]", rate: 8 }
  - { weight: ">= 20", rate: 12 }
"#,
    );
    assert_eq!(
        problems,
        ["d.yaml:7:3: error: rule 2 and rule 3 of `rate` can both match the same input, which hit policy UNIQUE forbids (use FIRST, PRIORITY or ANY, or make them exclusive) [rate]"]
    );
    assert!(set.check("rate").is_err());
}

#[test]
fn hit_policies_collect_order_and_aggregate() {
    let table = |policy: &str, aggregation: &str| {
        format!(
            r#"decision: d
hit_policy: {policy}
{aggregation}
inputs: {{ n: n }}
outputs: {{ out: {{ values: '"low", "mid", "high"' }} }}
rules:
  - {{ n: "> 1", out: '"low"' }}
  - {{ n: "> 2", out: '"high"' }}
  - {{ n: "> 3", out: '"mid"' }}
"#
        )
    };
    let run = |policy: &str, aggregation: &str| {
        let (set, problems) = yaml(&table(policy, aggregation));
        assert!(problems.is_empty(), "{policy}: {problems:?}");
        decide(&set, "d", json!({"n": 5})).to_string()
    };
    assert_eq!(run("rule_order", ""), r#"["low", "high", "mid"]"#);
    assert_eq!(run("output_order", ""), r#"["low", "mid", "high"]"#);
    assert_eq!(run("collect", ""), r#"["low", "high", "mid"]"#);
    assert_eq!(run("priority", ""), "low");
    assert_eq!(run("first", ""), "low");
    assert_eq!(run("collect", "aggregation: count"), "3");
    let (set, _) = yaml(&table("any", ""));
    let err = set
        .evaluate("d", &json!({"n": 5}).as_object().cloned().unwrap())
        .unwrap_err();
    assert!(matches!(err, DecisionError::AnyConflict { .. }), "{err}");
    assert_eq!(err.location(), Some("d.yaml:8:3"));
    let (set, _) = yaml(
        r#"decision: total
hit_policy: collect
aggregation: sum
inputs: { items: items }
outputs: { price: ~ }
rules:
  - { items: "list contains(?, \"a\")", price: 10 }
  - { items: "list contains(?, \"b\")", price: 2.5 }
"#,
    );
    assert_eq!(
        decide(&set, "total", json!({"items": ["a", "b"]})).to_string(),
        "12.5"
    );
    assert_eq!(decide(&set, "total", json!({"items": []})), Value::Null);
}

#[test]
fn spiff_merge_gives_one_rule_s_outputs_or_a_list_per_output() {
    let (set, problems) = yaml(
        r#"decision: d
hit_policy: rule_order
inputs: { n: n }
outputs: { label: ~, rank: ~ }
rules:
  - { n: "> 1", label: '"low"', rank: 1 }
  - { n: "> 2", label: '"high"', rank: 2 }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let merged = |n: i64| {
        set.evaluate("d", json!({ "n": n }).as_object().unwrap())
            .unwrap()
            .mapped(DecisionResultMapping::MergeOutputs)
            .unwrap()
            .to_json()
    };
    assert_eq!(merged(0), json!({}));
    assert_eq!(merged(2), json!({"label": "low", "rank": 1}));
    assert_eq!(merged(3), json!({"label": ["low", "high"], "rank": [1, 2]}));
}

#[test]
fn unique_violations_at_run_time_name_the_rules() {
    let (set, problems) = yaml(
        r#"decision: d
inputs: { a: a, b: b }
outputs: { out: ~ }
rules:
  - { a: "> limit", out: 1 }
  - { b: "true", out: 2 }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let err = set
        .evaluate(
            "d",
            &json!({"a": 5, "limit": 1, "b": true})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "rule 1, rule 2 of decision `d` matched; hit policy UNIQUE allows one"
    );
}

#[test]
fn requirement_graphs_pass_results_by_name_and_refuse_cycles() {
    let (set, problems) = yaml(
        r#"decisions:
  base:
    name: Base days
    expression: "if age < 18 then 27 else 22"
  total:
    requires: [base, extra]
    expression: "Base days + extra"
  extra:
    hit_policy: collect
    aggregation: max
    inputs: { age: age }
    outputs: { days: { default: 0 } }
    rules:
      - { age: ">= 60", days: 5 }
      - { age: ">= 45", days: 2 }
"#,
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(decide(&set, "total", json!({"age": 61})).to_string(), "27");
    assert_eq!(decide(&set, "total", json!({"age": 30})).to_string(), "22");
    let (set, problems) = yaml(
        r#"decisions:
  a: { requires: [b], expression: "b" }
  b: { requires: [a], expression: "a" }
"#,
    );
    assert!(
        problems.iter().any(|p| p.contains("requires itself")),
        "{problems:?}"
    );
    assert!(set.check("a").is_err() && set.check("b").is_err());
}

const CAMUNDA_DMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" xmlns:dmndi="https://www.omg.org/spec/DMN/20191111/DMNDI/" xmlns:dc="http://www.omg.org/spec/DMN/20180521/DC/" xmlns:camunda="http://camunda.org/schema/1.0/dmn" id="dish" name="Dish" namespace="http://camunda.org/schema/1.0/dmn" exporter="Camunda Modeler" exporterVersion="5.20.0">
  <decision id="dish-decision" name="Dish Decision">
    <decisionTable id="DecisionTable_1" hitPolicy="UNIQUE">
      <input id="Input_1" label="Season" camunda:inputVariable="season">
        <inputExpression id="InputExpression_1" typeRef="string">
          <text>season</text>
        </inputExpression>
      </input>
      <input id="Input_2" label="How many guests">
        <inputExpression id="InputExpression_2" typeRef="integer">
          <text>guestCount</text>
        </inputExpression>
      </input>
      <output id="Output_1" label="Dish" name="desiredDish" typeRef="string" />
      <rule id="Rule_1">
        <inputEntry id="UnaryTests_1"><text>"Fall"</text></inputEntry>
        <inputEntry id="UnaryTests_2"><text>&lt;= 8</text></inputEntry>
        <outputEntry id="LiteralExpression_1"><text>"Spareribs"</text></outputEntry>
      </rule>
      <rule id="Rule_2">
        <inputEntry id="UnaryTests_3"><text>"Winter"</text></inputEntry>
        <inputEntry id="UnaryTests_4"><text></text></inputEntry>
        <outputEntry id="LiteralExpression_2"><text>"Roastbeef"</text></outputEntry>
      </rule>
      <rule id="Rule_3">
        <inputEntry id="UnaryTests_5"><text>"Spring","Summer"</text></inputEntry>
        <inputEntry id="UnaryTests_6"><text>&gt; 8</text></inputEntry>
        <outputEntry id="LiteralExpression_3"><text>"Salad"</text></outputEntry>
      </rule>
    </decisionTable>
  </decision>
  <dmndi:DMNDI>
    <dmndi:DMNDiagram id="DMNDiagram_1">
      <dmndi:DMNShape id="DMNShape_1" dmnElementRef="dish-decision">
        <dc:Bounds height="80" width="180" x="150" y="80" />
      </dmndi:DMNShape>
    </dmndi:DMNDiagram>
  </dmndi:DMNDI>
</definitions>
"#;

#[test]
fn camunda_modeler_files_evaluate_with_camunda_result_mappings() {
    let (set, problems) = xml(CAMUNDA_DMN);
    assert!(problems.is_empty(), "{problems:?}");
    let variables = json!({"season": "Winter", "guestCount": 12});
    let evaluation = set
        .evaluate("dish-decision", variables.as_object().unwrap())
        .unwrap();
    assert_eq!(evaluation.value, Value::String("Roastbeef".into()));
    assert_eq!(evaluation.matched[0].rule_id.as_deref(), Some("Rule_2"));
    assert_eq!(
        evaluation
            .mapped(DecisionResultMapping::ResultList)
            .unwrap()
            .to_json(),
        json!([{"desiredDish": "Roastbeef"}])
    );
    assert_eq!(
        evaluation
            .mapped(DecisionResultMapping::SingleEntry)
            .unwrap()
            .to_json(),
        json!("Roastbeef")
    );
    assert_eq!(
        evaluation
            .mapped(DecisionResultMapping::CollectEntries)
            .unwrap()
            .to_json(),
        json!(["Roastbeef"])
    );
    assert_eq!(
        decide(
            &set,
            "dish-decision",
            json!({"season": "Summer", "guestCount": 4})
        ),
        Value::Null
    );
}

#[test]
fn dmn_problems_point_into_the_text() {
    let broken = CAMUNDA_DMN.replace("<text>&lt;= 8</text>", "<text>&lt;= 8 +</text>");
    let (set, problems) = xml(&broken);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("d.dmn:18:54: error: input entry is not a valid unary test: `<= 8 +`"),
        "{problems:?}"
    );
    assert!(matches!(
        set.check("dish-decision"),
        Err(DecisionError::Unavailable { .. })
    ));
    assert!(matches!(
        set.check("nope"),
        Err(DecisionError::Unknown { .. })
    ));
    let (_, problems) = xml("<definitions xmlns=\"http://www.omg.org/spec/BPMN/20100524/MODEL\"/>");
    assert!(problems[0].contains("not a DMN file"), "{problems:?}");
}
