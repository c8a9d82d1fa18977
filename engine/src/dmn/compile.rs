//! Decision files → [`Decisions`], the evaluable set: every FEEL text parsed once, requirements
//! resolved, and every problem reported with its position (bad unary tests, unknown functions
//! and inputs, rules of the wrong width, overlapping rules under UNIQUE, requirement cycles).

use super::model::*;
use super::overlap;
use super::Decisions;
use crate::diagnostics::Diagnostic;
use crate::feel::{Expression, FeelError, UnaryTests, Value};
use crate::model::Span;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A compiled decision.
#[derive(Debug)]
pub(super) struct Compiled {
    pub id: String,
    pub name: String,
    pub source: PathBuf,
    pub span: Span,
    /// Required decisions (indexes into the set), in document order.
    pub requires: Vec<usize>,
    /// Input data of its file by name, with their types.
    pub input_types: Vec<(String, Option<String>)>,
    pub logic: Logic,
}

#[derive(Debug)]
pub(super) enum Logic {
    Table(Table),
    Literal(Expression),
}

#[derive(Debug)]
pub(super) struct Table {
    pub hit_policy: HitPolicy,
    pub aggregation: Option<Aggregation>,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    pub rules: Vec<CompiledRule>,
}

#[derive(Debug)]
pub(super) struct Input {
    pub label: String,
    pub expression: Expression,
    pub type_ref: Option<String>,
    pub allowed: Option<UnaryTests>,
    pub variable: String,
    pub span: Span,
}

#[derive(Debug)]
pub(super) struct Output {
    pub name: String,
    /// Output values in priority order (first is highest).
    pub priorities: Vec<Value>,
    pub default: Option<Expression>,
}

#[derive(Debug)]
pub(super) struct CompiledRule {
    /// 1-based position in the table.
    pub number: usize,
    pub id: Option<String>,
    pub tests: Vec<UnaryTests>,
    pub outputs: Vec<Expression>,
    pub span: Span,
}

impl CompiledRule {
    /// `rule 2 (r2)` for messages.
    pub fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("rule {} (`{id}`)", self.number),
            None => format!("rule {}", self.number),
        }
    }
}

/// Compiles decision files into one set. Decisions with errors are left out (their ids are
/// remembered, so a reference to them says why it fails).
pub(super) fn compile(files: &[DecisionFile]) -> (Decisions, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut compiled = Vec::new();
    let mut broken = HashMap::new();
    let mut seen: HashMap<&str, (&Path, Span)> = HashMap::new();
    for file in files {
        for decision in &file.decisions {
            if let Some((first_file, first)) = seen.get(decision.id.as_str()) {
                let message = format!(
                    "decision id `{}` is already defined at {}:{}:{}",
                    decision.id,
                    first_file.display(),
                    first.line,
                    first.col
                );
                diagnostics.push(
                    Diagnostic::error(&file.source, decision.span, message)
                        .with_id(decision.id.clone()),
                );
            } else {
                seen.insert(&decision.id, (&file.source, decision.span));
            }
        }
    }
    for file in files {
        let mut checker = FileCompiler::new(file, &mut diagnostics);
        let start = compiled.len();
        for decision in &file.decisions {
            let before = checker.errors();
            let logic = checker.logic(decision);
            match logic {
                Some(logic) if checker.errors() == before => compiled.push(Compiled {
                    id: decision.id.clone(),
                    name: decision.name.clone(),
                    source: file.source.clone(),
                    span: decision.span,
                    requires: Vec::new(),
                    input_types: file
                        .inputs
                        .iter()
                        .map(|i| (i.name.clone(), i.type_ref.clone()))
                        .collect(),
                    logic,
                }),
                _ => {
                    broken.insert(
                        decision.id.clone(),
                        format!(
                            "decision `{}` in {} has errors (see `flowbot check`)",
                            decision.id,
                            file.source.display()
                        ),
                    );
                }
            }
        }
        checker.requirements(&mut compiled[start..], start, &mut broken);
    }
    let set = Decisions::from_parts(compiled, broken, &mut diagnostics);
    (set, diagnostics)
}

struct FileCompiler<'f> {
    file: &'f DecisionFile,
    diagnostics: &'f mut Vec<Diagnostic>,
    /// Names with spaces the lexer must know: input data and decisions of the file.
    names: Vec<&'f str>,
}

impl<'f> FileCompiler<'f> {
    fn new(file: &'f DecisionFile, diagnostics: &'f mut Vec<Diagnostic>) -> Self {
        let names = file
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .chain(file.decisions.iter().map(|d| d.name.as_str()))
            .collect();
        Self {
            file,
            diagnostics,
            names,
        }
    }

    fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn error(&mut self, span: Span, id: &str, message: String) {
        self.diagnostics
            .push(Diagnostic::error(&self.file.source, span, message).with_id(id));
    }

    fn warning(&mut self, span: Span, id: &str, message: String) {
        self.diagnostics
            .push(Diagnostic::warning(&self.file.source, span, message).with_id(id));
    }

    fn feel_error(&mut self, text: &Text, id: &str, what: &str, err: &FeelError) {
        let span = text.span_at(err.offset);
        self.error(
            span,
            id,
            format!("{what} `{}`: {}", text.source, err.message),
        );
    }

    fn expression(&mut self, text: &Text, id: &str, what: &str) -> Option<Expression> {
        match Expression::parse(&text.source, &self.names) {
            Ok(expression) => {
                for function in expression.unknown_functions() {
                    self.error(
                        text.span,
                        id,
                        format!(
                            "{what} `{}` calls unknown function `{function}`",
                            text.source
                        ),
                    );
                }
                Some(expression)
            }
            Err(err) => {
                self.feel_error(text, id, &format!("{what} is not valid FEEL:"), &err);
                None
            }
        }
    }

    fn unary_tests(&mut self, text: &Text, id: &str, what: &str) -> Option<UnaryTests> {
        match UnaryTests::parse(&text.source, &self.names) {
            Ok(tests) => {
                for function in tests.unknown_functions() {
                    self.error(
                        text.span,
                        id,
                        format!(
                            "{what} `{}` calls unknown function `{function}`",
                            text.source
                        ),
                    );
                }
                Some(tests)
            }
            Err(err) => {
                self.feel_error(
                    text,
                    id,
                    &format!("{what} is not a valid unary test:"),
                    &err,
                );
                None
            }
        }
    }

    /// Reports names an expression reads that the decision cannot know, when the file declares
    /// its inputs (input data); files without input data read instance variables by any name.
    fn check_names(&mut self, decision: &Decision, names: &[String], extra: &[&str], span: Span) {
        if self.file.inputs.is_empty() {
            return;
        }
        for name in names {
            let known = self.file.inputs.iter().any(|i| &i.name == name)
                || self.file.decisions.iter().any(|d| &d.name == name)
                || extra.contains(&name.as_str());
            if !known {
                let inputs: Vec<&str> = self.file.inputs.iter().map(|i| i.name.as_str()).collect();
                self.error(
                    span,
                    &decision.id,
                    format!(
                        "decision `{}` reads `{name}`, which is neither an input nor a decision of this file (inputs: {})",
                        decision.id,
                        inputs.join(", ")
                    ),
                );
            }
        }
    }

    fn logic(&mut self, decision: &Decision) -> Option<Logic> {
        match decision.logic.as_ref()? {
            DecisionLogic::Literal(text) => {
                let expression = self.expression(text, &decision.id, "literal expression")?;
                self.check_names(decision, &expression.names(), &[], text.span);
                Some(Logic::Literal(expression))
            }
            DecisionLogic::Table(table) => self.table(decision, table).map(Logic::Table),
        }
    }

    fn table(&mut self, decision: &Decision, table: &DecisionTable) -> Option<Table> {
        let id = decision.id.as_str();
        if table.outputs.is_empty() {
            self.error(
                table.span,
                id,
                format!("decision table `{id}` has no output column"),
            );
        }
        if table.aggregation.is_some() && table.hit_policy != HitPolicy::Collect {
            self.error(
                table.span,
                id,
                "an aggregation (SUM, MIN, MAX, COUNT) needs the COLLECT hit policy".into(),
            );
        }
        if table.aggregation.is_some() && table.outputs.len() > 1 {
            self.error(
                table.span,
                id,
                "COLLECT with an aggregation needs exactly one output column".into(),
            );
        }
        let mut inputs = Vec::new();
        for input in &table.inputs {
            let label = input
                .label
                .clone()
                .unwrap_or_else(|| input.expression.source.clone());
            let expression = self.expression(&input.expression, id, "input expression");
            if let Some(expression) = &expression {
                self.check_names(decision, &expression.names(), &[], input.expression.span);
            }
            let allowed = input
                .allowed
                .as_ref()
                .and_then(|text| self.unary_tests(text, id, "input values"));
            if let Some(expression) = expression {
                inputs.push(Input {
                    label,
                    expression,
                    type_ref: input.type_ref.clone(),
                    allowed,
                    variable: input.variable.clone().unwrap_or_else(|| "cellInput".into()),
                    span: input.span,
                });
            }
        }
        let mut outputs = Vec::new();
        let several = table.outputs.len() > 1;
        for (index, output) in table.outputs.iter().enumerate() {
            let name = output.name.clone().or_else(|| output.label.clone());
            let name = match name {
                Some(name) => name,
                None if several => {
                    self.error(
                        output.span,
                        id,
                        format!("output column {} of `{id}` needs a name: the table has several outputs", index + 1),
                    );
                    continue;
                }
                None => decision.name.clone(),
            };
            let priorities = match &output.allowed {
                Some(text) => self.output_values(text, id),
                None => Vec::new(),
            };
            let default = output
                .default
                .as_ref()
                .and_then(|text| self.expression(text, id, "default output"));
            outputs.push(Output {
                name,
                priorities,
                default,
            });
        }
        if matches!(
            table.hit_policy,
            HitPolicy::Priority | HitPolicy::OutputOrder
        ) && outputs.iter().all(|o| o.priorities.is_empty())
        {
            self.warning(
                table.span,
                id,
                format!(
                    "hit policy {} orders rules by the output values, and `{id}` lists none: rules keep their order",
                    table.hit_policy.name()
                ),
            );
        }
        let mut rules = Vec::new();
        for (index, rule) in table.rules.iter().enumerate() {
            let number = index + 1;
            let rule_id = rule.id.clone().unwrap_or_else(|| id.to_string());
            if rule.inputs.len() != table.inputs.len() {
                self.error(
                    rule.span,
                    &rule_id,
                    format!(
                        "rule {number} of `{id}` has {} input entries; the table has {} input columns",
                        rule.inputs.len(),
                        table.inputs.len()
                    ),
                );
                continue;
            }
            if rule.outputs.len() != table.outputs.len() {
                self.error(
                    rule.span,
                    &rule_id,
                    format!(
                        "rule {number} of `{id}` has {} output entries; the table has {} output columns",
                        rule.outputs.len(),
                        table.outputs.len()
                    ),
                );
                continue;
            }
            let mut tests = Vec::new();
            for (column, text) in rule.inputs.iter().enumerate() {
                let Some(test) = self.unary_tests(text, &rule_id, "input entry") else {
                    continue;
                };
                let variable = table.inputs[column]
                    .variable
                    .clone()
                    .unwrap_or_else(|| "cellInput".into());
                self.check_names(decision, &test.names(), &[variable.as_str()], text.span);
                tests.push(test);
            }
            let mut entries = Vec::new();
            for text in &rule.outputs {
                if let Some(expression) = self.expression(text, &rule_id, "output entry") {
                    self.check_names(decision, &expression.names(), &[], text.span);
                    entries.push(expression);
                }
            }
            if tests.len() == rule.inputs.len() && entries.len() == rule.outputs.len() {
                rules.push(CompiledRule {
                    number,
                    id: rule.id.clone(),
                    tests,
                    outputs: entries,
                    span: rule.span,
                });
            }
        }
        if table.hit_policy == HitPolicy::Unique {
            for (first, second) in overlap::overlapping_pairs(&rules) {
                let (a, b) = (&rules[first], &rules[second]);
                let message = format!(
                    "{} and {} of `{id}` can both match the same input, which hit policy UNIQUE forbids (use FIRST, PRIORITY or ANY, or make them exclusive)",
                    a.label(),
                    b.label()
                );
                let rule_id = b.id.clone().unwrap_or_else(|| id.to_string());
                self.error(b.span, &rule_id, message);
            }
        }
        Some(Table {
            hit_policy: table.hit_policy,
            aggregation: table.aggregation,
            inputs,
            outputs,
            rules,
        })
    }

    /// The output values of an output column (`"high","low"`) in priority order.
    fn output_values(&mut self, text: &Text, id: &str) -> Vec<Value> {
        let list = format!("[{}]", text.source);
        match Expression::parse(&list, &self.names) {
            Ok(expression) => match expression.eval(&Vec::new()) {
                Value::List(values) => values,
                _ => Vec::new(),
            },
            Err(mut err) => {
                err.offset = err.offset.saturating_sub(1);
                self.feel_error(text, id, "output values are not valid FEEL:", &err);
                Vec::new()
            }
        }
    }

    /// Resolves the required decisions of the file's compiled decisions (`compiled` starts at
    /// index `offset` of the set) and checks required inputs.
    fn requirements(
        &mut self,
        compiled: &mut [Compiled],
        offset: usize,
        broken: &mut HashMap<String, String>,
    ) {
        let ids: HashMap<String, usize> = compiled
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), offset + i))
            .collect();
        let inputs: HashSet<&str> = self.file.inputs.iter().map(|i| i.id.as_str()).collect();
        let mut newly_broken = Vec::new();
        for decision in &self.file.decisions {
            let Some(&index) = ids.get(&decision.id) else {
                continue;
            };
            for required in &decision.required_decisions {
                match ids.get(&required.id) {
                    Some(&target) => compiled[index - offset].requires.push(target),
                    None if broken.contains_key(&required.id) => {
                        newly_broken.push(decision.id.clone());
                    }
                    None => {
                        self.error(
                            required.span,
                            &decision.id,
                            format!(
                                "decision `{}` requires decision `{}`, which this file does not define",
                                decision.id, required.id
                            ),
                        );
                        newly_broken.push(decision.id.clone());
                    }
                }
            }
            for required in &decision.required_inputs {
                if !inputs.contains(required.id.as_str()) {
                    self.error(
                        required.span,
                        &decision.id,
                        format!(
                            "decision `{}` requires input `{}`, which this file does not define",
                            decision.id, required.id
                        ),
                    );
                }
            }
        }
        for id in newly_broken {
            broken.insert(
                id.clone(),
                format!("decision `{id}` requires a decision that has errors"),
            );
        }
    }
}
