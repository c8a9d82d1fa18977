//! DMN decisions: decision tables (hit policies UNIQUE, FIRST, PRIORITY, ANY, COLLECT with SUM,
//! MIN, MAX, COUNT, RULE ORDER, OUTPUT ORDER) and literal expressions in FEEL, decision
//! requirement graphs, read from DMN 1.1–1.5 XML ([`parse_dmn`]) or the YAML decision language
//! ([`parse_decision_yaml`], see `docs/yaml-dsl.md`), compiled into [`Decisions`] and evaluated
//! over instance variables.
//!
//! Invariants:
//! - Every FEEL text is parsed once, when the set is built; evaluation is pure and deterministic
//!   (the executor evaluates business-rule tasks inside its own step).
//! - [`Decisions::build`] reports every problem of every file in one pass, positioned at the
//!   FEEL text itself (a bad unary test points at its character); decisions with errors are left
//!   out of the set, and a reference to one says why.
//! - Requirement cycles are refused when the set is built, so evaluation always ends.

mod compile;
mod evaluate;
pub mod model;
mod overlap;
mod xml;
mod yaml;

/// The keys and words of the YAML decision language (the reader's and the schema's).
pub mod yaml_vocabulary {
    pub use super::yaml::{
        AGGREGATIONS, DECISION_KEYS, FILE_KEYS, HIT_POLICIES, INPUT_KEYS, OUTPUT_KEYS,
    };
}

pub use model::*;
pub use xml::{parse_dmn, parse_dmn_file};
pub use yaml::{is_decision_yaml, json_schema as decision_json_schema, parse_decision_yaml};

use crate::diagnostics::Diagnostic;
use crate::feel::{Lookup, Value};
use compile::Compiled;
use std::collections::HashMap;

/// A compiled set of decisions, by id, ready to evaluate.
#[derive(Debug, Default)]
pub struct Decisions {
    decisions: Vec<Compiled>,
    by_id: HashMap<String, usize>,
    /// Decisions that were defined but cannot be evaluated, with the reason.
    broken: HashMap<String, String>,
}

/// One rule that matched, for history and `flowbot decide`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MatchedRule {
    /// The decision.
    pub decision: String,
    /// The rule's 1-based position in its table.
    pub rule: usize,
    /// The rule's id, when it has one.
    pub rule_id: Option<String>,
}

/// What evaluating a decision gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The decision's result: one output's value, a context of several outputs, a list for the
    /// multiple-hit policies, an aggregate for COLLECT with an aggregation, `null` when no rule
    /// matched and there is no default.
    pub value: Value,
    /// The selected rules' outputs (name, value), in result order (for Camunda's result
    /// mappings).
    pub rows: Vec<Vec<(String, Value)>>,
    /// Every rule that matched, required decisions' first.
    pub matched: Vec<MatchedRule>,
}

/// Why a decision could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    /// No decision has this id.
    #[error("no decision `{id}` is deployed{}", known_list(.known))]
    Unknown {
        /// The id asked for.
        id: String,
        /// The ids there are.
        known: Vec<String>,
    },
    /// The decision exists but cannot be evaluated.
    #[error("decision `{id}` cannot be evaluated: {reason}")]
    Unavailable {
        /// The decision.
        id: String,
        /// Why.
        reason: String,
    },
    /// Several rules matched under UNIQUE.
    #[error("{} of decision `{decision}` matched; hit policy UNIQUE allows one", .rules.join(", "))]
    NotUnique {
        /// The decision.
        decision: String,
        /// The matching rules.
        rules: Vec<String>,
        /// `file:line:col` of the second matching rule.
        at: String,
    },
    /// Rules with different outputs matched under ANY.
    #[error("{} of decision `{decision}` matched with different outputs; hit policy ANY needs equal ones", .rules.join(", "))]
    AnyConflict {
        /// The decision.
        decision: String,
        /// The matching rules.
        rules: Vec<String>,
        /// `file:line:col` of the first rule that disagrees.
        at: String,
    },
    /// An input value is not among the column's input values.
    #[error(
        "input `{input}` of decision `{decision}` is {value}, which its input values do not allow"
    )]
    NotAllowed {
        /// The decision.
        decision: String,
        /// The input column.
        input: String,
        /// The value.
        value: String,
        /// `file:line:col` of the column.
        at: String,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (decisions: {})", known.join(", "))
    }
}

impl DecisionError {
    /// `file:line:col` of the cause, when it is in a decision file.
    pub fn location(&self) -> Option<&str> {
        match self {
            DecisionError::NotUnique { at, .. }
            | DecisionError::AnyConflict { at, .. }
            | DecisionError::NotAllowed { at, .. } => Some(at),
            _ => None,
        }
    }
}

impl Decisions {
    /// Compiles decision files into one set, with every problem found (ids are unique across
    /// the files).
    pub fn build(files: &[DecisionFile]) -> (Decisions, Vec<Diagnostic>) {
        compile::compile(files)
    }

    fn from_parts(
        decisions: Vec<Compiled>,
        mut broken: HashMap<String, String>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Decisions {
        // Requirement cycles: a decision on a cycle cannot be evaluated.
        let n = decisions.len();
        let mut state = vec![0u8; n]; // 0 new, 1 on the path, 2 done
        for root in 0..n {
            if state[root] != 0 {
                continue;
            }
            let mut stack = vec![(root, 0usize)];
            state[root] = 1;
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                if let Some(&child) = decisions[node].requires.get(top.1) {
                    top.1 += 1;
                    match state[child] {
                        0 => {
                            state[child] = 1;
                            stack.push((child, 0));
                        }
                        1 => {
                            let decision = &decisions[child];
                            diagnostics.push(
                                Diagnostic::error(
                                    &decision.source,
                                    decision.span,
                                    format!(
                                        "decision `{}` requires itself through `{}`: requirements must not form a cycle",
                                        decision.id, decisions[node].id
                                    ),
                                )
                                .with_id(decision.id.clone()),
                            );
                            broken.insert(
                                decision.id.clone(),
                                "its requirements form a cycle".into(),
                            );
                        }
                        _ => {}
                    }
                } else {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
        // A decision that requires one that cannot be evaluated cannot be evaluated either.
        loop {
            let more: Vec<(String, String)> = decisions
                .iter()
                .filter(|d| !broken.contains_key(&d.id))
                .filter_map(|d| {
                    d.requires
                        .iter()
                        .find(|&&r| broken.contains_key(&decisions[r].id))
                        .map(|&r| {
                            (
                                d.id.clone(),
                                format!(
                                    "it requires `{}`, which cannot be evaluated",
                                    decisions[r].id
                                ),
                            )
                        })
                })
                .collect();
            if more.is_empty() {
                break;
            }
            broken.extend(more);
        }
        let by_id = decisions
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        Decisions {
            decisions,
            by_id,
            broken,
        }
    }

    /// The ids of the decisions that can be evaluated, in file order.
    pub fn ids(&self) -> Vec<&str> {
        self.decisions
            .iter()
            .map(|d| d.id.as_str())
            .filter(|id| !self.broken.contains_key(*id))
            .collect()
    }

    /// Whether the set has no evaluable decision.
    pub fn is_empty(&self) -> bool {
        self.ids().is_empty()
    }

    /// The name of decision `id`.
    pub fn name(&self, id: &str) -> Option<&str> {
        self.by_id.get(id).map(|&i| self.decisions[i].name.as_str())
    }

    /// `Ok` when decision `id` can be evaluated, else why not.
    pub fn check(&self, id: &str) -> Result<(), DecisionError> {
        if let Some(reason) = self.broken.get(id) {
            return Err(DecisionError::Unavailable {
                id: id.to_string(),
                reason: reason.clone(),
            });
        }
        if self.by_id.contains_key(id) {
            return Ok(());
        }
        Err(DecisionError::Unknown {
            id: id.to_string(),
            known: self.ids().iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Evaluates decision `id` over `variables` (instance variables, or any other names).
    pub fn evaluate(&self, id: &str, variables: &dyn Lookup) -> Result<Evaluation, DecisionError> {
        self.check(id)?;
        let index = self.by_id[id];
        let mut matched = Vec::new();
        let (value, rows) = self.evaluate_index(index, variables, &mut matched, 0)?;
        Ok(Evaluation {
            value,
            rows,
            matched,
        })
    }
}

#[cfg(test)]
mod tests;
