//! Evaluating a decision: its required decisions first, then its table (inputs, matching rules,
//! the hit policy) or its literal expression.

use super::compile::{Compiled, CompiledRule, Logic, Table};
use super::model::{Aggregation, HitPolicy};
use super::{DecisionError, Decisions, Evaluation, MatchedRule};
use crate::feel::{compare, equal, Lookup, Value};
use rust_decimal::Decimal;
use std::cmp::Ordering;

/// The selected rules' outputs, each as (output name, value) pairs.
type Rows = Vec<Vec<(String, Value)>>;

/// The names a decision reads: results of required decisions, then the caller's variables
/// (text read as the declared type of an input data element).
struct Scope<'a> {
    variables: &'a dyn Lookup,
    results: Vec<(String, Value)>,
    types: &'a [(String, Option<String>)],
}

impl Lookup for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        if let Some((_, value)) = self.results.iter().find(|(k, _)| k == name) {
            return Some(value.clone());
        }
        let value = self.variables.lookup(name)?;
        match self.types.iter().find(|(k, _)| k == name) {
            Some((_, type_ref)) => Some(value.coerce(type_ref.as_deref())),
            None => Some(value),
        }
    }
}

/// A scope plus the value of the input column being tested, under its input variable name.
struct WithCell<'a> {
    base: &'a dyn Lookup,
    name: &'a str,
    value: &'a Value,
}

impl Lookup for WithCell<'_> {
    fn lookup(&self, name: &str) -> Option<Value> {
        if name == self.name {
            return Some(self.value.clone());
        }
        self.base.lookup(name)
    }
}

impl Decisions {
    /// Evaluates decision `index` with its required decisions; matched rules are appended to
    /// `matched`. `depth` guards against requirement chains longer than the set (cycles are
    /// refused when the set is built).
    pub(super) fn evaluate_index(
        &self,
        index: usize,
        variables: &dyn Lookup,
        matched: &mut Vec<MatchedRule>,
        depth: usize,
    ) -> Result<(Value, Rows), DecisionError> {
        let decision = &self.decisions[index];
        if depth > self.decisions.len() {
            return Err(DecisionError::Unavailable {
                id: decision.id.clone(),
                reason: "its requirements form a cycle".into(),
            });
        }
        let mut results = Vec::new();
        for &required in &decision.requires {
            let (value, _) = self.evaluate_index(required, variables, matched, depth + 1)?;
            results.push((self.decisions[required].name.clone(), value));
        }
        let scope = Scope {
            variables,
            results,
            types: &decision.input_types,
        };
        match &decision.logic {
            Logic::Literal(expression) => Ok((expression.eval(&scope), Vec::new())),
            Logic::Table(table) => evaluate_table(decision, table, &scope, matched),
        }
    }
}

fn evaluate_table(
    decision: &Compiled,
    table: &Table,
    scope: &dyn Lookup,
    matched: &mut Vec<MatchedRule>,
) -> Result<(Value, Rows), DecisionError> {
    let mut inputs = Vec::with_capacity(table.inputs.len());
    for input in &table.inputs {
        let value = input
            .expression
            .eval(scope)
            .coerce(input.type_ref.as_deref());
        if let Some(allowed) = &input.allowed {
            if !matches!(value, Value::Null) && allowed.matches(&value, scope) != Some(true) {
                return Err(DecisionError::NotAllowed {
                    decision: decision.id.clone(),
                    input: input.label.clone(),
                    value: match &value {
                        Value::String(text) => format!("{text:?}"),
                        other => other.to_string(),
                    },
                    at: location(decision, input.span),
                });
            }
        }
        inputs.push(value);
    }
    let mut hits: Vec<(&CompiledRule, Vec<Value>)> = Vec::new();
    for rule in &table.rules {
        let passes = rule.tests.iter().enumerate().all(|(column, test)| {
            let input = &inputs[column];
            let cell = WithCell {
                base: scope,
                name: &table.inputs[column].variable,
                value: input,
            };
            test.matches(input, &cell) == Some(true)
        });
        if passes {
            let outputs = rule.outputs.iter().map(|o| o.eval(scope)).collect();
            hits.push((rule, outputs));
            if table.hit_policy == HitPolicy::First {
                break;
            }
        }
    }
    let names: Vec<&str> = table.outputs.iter().map(|o| o.name.as_str()).collect();
    let row = |values: &[Value]| -> Vec<(String, Value)> {
        names
            .iter()
            .zip(values)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    };
    let single = |values: &[Value]| -> Value {
        if values.len() == 1 {
            values[0].clone()
        } else {
            Value::Context(row(values))
        }
    };
    if hits.is_empty() {
        if table.outputs.iter().all(|o| o.default.is_none()) {
            return Ok((Value::Null, Vec::new()));
        }
        let defaults: Vec<Value> = table
            .outputs
            .iter()
            .map(|o| o.default.as_ref().map_or(Value::Null, |d| d.eval(scope)))
            .collect();
        return Ok((single(&defaults), vec![row(&defaults)]));
    }
    let rules_text = |hits: &[(&CompiledRule, Vec<Value>)]| -> Vec<String> {
        hits.iter().map(|(rule, _)| rule.label()).collect()
    };
    let selected: Vec<(&CompiledRule, Vec<Value>)> = match table.hit_policy {
        HitPolicy::Unique if hits.len() > 1 => {
            return Err(DecisionError::NotUnique {
                decision: decision.id.clone(),
                rules: rules_text(&hits),
                at: location(decision, hits[1].0.span),
            })
        }
        HitPolicy::Any => {
            let first = &hits[0].1;
            let conflict = hits.iter().find(|(_, outputs)| {
                outputs
                    .iter()
                    .zip(first)
                    .any(|(a, b)| equal(a, b) != Some(true))
            });
            if let Some((rule, _)) = conflict {
                return Err(DecisionError::AnyConflict {
                    decision: decision.id.clone(),
                    rules: rules_text(&hits),
                    at: location(decision, rule.span),
                });
            }
            hits.truncate(1);
            hits
        }
        HitPolicy::Priority => {
            let best = (0..hits.len())
                .min_by(|&a, &b| priority_order(table, &hits[a].1, &hits[b].1))
                .unwrap_or(0);
            vec![hits.swap_remove(best)]
        }
        HitPolicy::OutputOrder => {
            hits.sort_by(|a, b| priority_order(table, &a.1, &b.1));
            hits
        }
        _ => hits,
    };
    for (rule, _) in &selected {
        matched.push(MatchedRule {
            decision: decision.id.clone(),
            rule: rule.number,
            rule_id: rule.id.clone(),
        });
    }
    let rows: Vec<Vec<(String, Value)>> = selected.iter().map(|(_, v)| row(v)).collect();
    let value = if table.hit_policy.is_multiple() {
        match table.aggregation {
            None => Value::List(selected.iter().map(|(_, v)| single(v)).collect()),
            Some(aggregation) => aggregate(
                aggregation,
                selected.iter().map(|(_, v)| single(v)).collect(),
            ),
        }
    } else {
        single(&selected[0].1)
    };
    Ok((value, rows))
}

/// Orders two rules' outputs by the output values lists (earlier in the list = higher priority),
/// column by column; values not in a list come last.
fn priority_order(table: &Table, a: &[Value], b: &[Value]) -> Ordering {
    for (column, output) in table.outputs.iter().enumerate() {
        if output.priorities.is_empty() {
            continue;
        }
        let rank = |v: &Value| {
            output
                .priorities
                .iter()
                .position(|p| equal(p, v) == Some(true))
                .unwrap_or(usize::MAX)
        };
        match rank(&a[column]).cmp(&rank(&b[column])) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

fn aggregate(aggregation: Aggregation, values: Vec<Value>) -> Value {
    match aggregation {
        Aggregation::Count => Value::int(values.len() as i64),
        Aggregation::Sum => {
            let mut total = Decimal::ZERO;
            for value in &values {
                let Value::Number(n) = value else {
                    return Value::Null;
                };
                match total.checked_add(*n) {
                    Some(sum) => total = sum,
                    None => return Value::Null,
                }
            }
            Value::Number(total)
        }
        Aggregation::Min | Aggregation::Max => {
            let wanted = if aggregation == Aggregation::Min {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let mut values = values.into_iter();
            let Some(mut best) = values.next() else {
                return Value::Null;
            };
            for value in values {
                match compare(&value, &best) {
                    Some(order) if order == wanted => best = value,
                    Some(_) => {}
                    None => return Value::Null,
                }
            }
            best
        }
    }
}

fn location(decision: &Compiled, span: crate::model::Span) -> String {
    format!("{}:{}:{}", decision.source.display(), span.line, span.col)
}

impl Evaluation {
    /// The result mappings of a business-rule task (`camunda:mapDecisionResult`, Spiff's merge).
    pub fn mapped(&self, mapping: crate::model::DecisionResultMapping) -> Result<Value, String> {
        use crate::model::DecisionResultMapping as M;
        let entry = |row: &Vec<(String, Value)>| -> Result<Value, String> {
            match row.as_slice() {
                [(_, value)] => Ok(value.clone()),
                _ => Err(format!(
                    "a rule result has {} outputs; this mapping needs exactly one",
                    row.len()
                )),
            }
        };
        let context = |row: &Vec<(String, Value)>| Value::Context(row.clone());
        match mapping {
            M::Value => Ok(self.value.clone()),
            M::ResultList => Ok(Value::List(self.rows.iter().map(context).collect())),
            M::SingleResult => match self.rows.as_slice() {
                [] => Ok(Value::Null),
                [row] => Ok(context(row)),
                rows => Err(format!(
                    "{} rules matched; `singleResult` needs at most one",
                    rows.len()
                )),
            },
            M::SingleEntry => match self.rows.as_slice() {
                [] => Ok(Value::Null),
                [row] => entry(row),
                rows => Err(format!(
                    "{} rules matched; `singleEntry` needs at most one",
                    rows.len()
                )),
            },
            M::CollectEntries => Ok(Value::List(
                self.rows.iter().map(entry).collect::<Result<_, _>>()?,
            )),
            M::MergeOutputs => match self.rows.as_slice() {
                [] => Ok(Value::Context(Vec::new())),
                [row] => Ok(context(row)),
                rows => {
                    let mut columns: Vec<(String, Value)> = Vec::new();
                    for (name, value) in rows.iter().flatten() {
                        match columns.iter_mut().find(|(column, _)| column == name) {
                            Some((_, Value::List(values))) => values.push(value.clone()),
                            _ => columns.push((name.clone(), Value::List(vec![value.clone()]))),
                        }
                    }
                    Ok(Value::Context(columns))
                }
            },
        }
    }
}
