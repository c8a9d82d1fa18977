//! The DMN XML front end: DMN 1.1 to 1.5 files (as Camunda Modeler and the DMN TCK write them)
//! into the decision model. It shares the BPMN front end's XML reader: no entity expansion,
//! bounded size and depth, no recursion on input depth, positions for every element.

use super::model::*;
use crate::bpmn::namespaces::Ns;
use crate::bpmn::xml_tree::{read_tree, ElementId, XmlTree};
use crate::diagnostics::Diagnostic;
use crate::model::Span;
use std::io::Read;
use std::path::Path;

/// Decision logic kinds DMN has that this engine does not evaluate.
const UNSUPPORTED_LOGIC: &[&str] = &[
    "context",
    "invocation",
    "functionDefinition",
    "relation",
    "list",
    "conditional",
    "filter",
    "iterator",
    "for",
    "some",
    "every",
];

/// Parses the DMN XML `text` of the file at `path` (used in diagnostics only). Returns the
/// decisions (or `None` when the text is not DMN at all) and every problem found.
pub fn parse_dmn(path: &Path, text: &[u8]) -> (Option<DecisionFile>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let Some(text) = crate::bpmn::checked_text(path, text, "DMN", &mut diagnostics) else {
        return (None, diagnostics);
    };
    let Some(tree) = read_tree(path, text, &mut diagnostics) else {
        return (None, diagnostics);
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let mut line_starts = Vec::with_capacity(lines.len());
    let mut offset = 0;
    for line in &lines {
        line_starts.push(offset);
        offset += line.len() + 1;
    }
    let mut reader = Reader {
        tree: &tree,
        file: path,
        diagnostics: &mut diagnostics,
        input: text,
        lines,
        line_starts,
    };
    let file = reader.definitions();
    (file, diagnostics)
}

/// Reads and parses the DMN file at `path`; at most [`crate::bpmn::MAX_FILE_BYTES`] + 1 bytes are
/// read.
pub fn parse_dmn_file(path: &Path) -> (Option<DecisionFile>, Vec<Diagnostic>) {
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|file| {
        file.take(crate::bpmn::MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => parse_dmn(path, &bytes),
        Err(error) => (
            None,
            vec![Diagnostic::error(
                path,
                Span::new(1, 1),
                format!("cannot read the file: {error}"),
            )],
        ),
    }
}

struct Reader<'t, 'i> {
    tree: &'t XmlTree<'i>,
    file: &'t Path,
    diagnostics: &'t mut Vec<Diagnostic>,
    /// The file's text, its lines and where each line starts (to find texts as written).
    input: &'i str,
    lines: Vec<&'i str>,
    line_starts: Vec<usize>,
}

impl<'t, 'i> Reader<'t, 'i> {
    fn is(&self, at: ElementId, name: &str) -> bool {
        let element = self.tree.element(at);
        element.name == name && matches!(element.ns, Ns::Dmn | Ns::NoNamespace)
    }

    fn child(&self, at: ElementId, name: &str) -> Option<ElementId> {
        self.tree.children(at).find(|&c| self.is(c, name))
    }

    fn children(&self, at: ElementId, name: &'t str) -> impl Iterator<Item = ElementId> + '_ {
        self.tree.children(at).filter(move |&c| self.is(c, name))
    }

    fn span(&self, at: ElementId) -> Span {
        self.tree.element(at).span
    }

    fn attr(&self, at: ElementId, name: &str) -> Option<String> {
        self.tree.attr(at, name).map(str::to_owned)
    }

    fn error(&mut self, at: ElementId, message: impl Into<String>) {
        let mut diagnostic = Diagnostic::error(self.file, self.span(at), message);
        if let Some(id) = self.tree.attr(at, "id") {
            diagnostic = diagnostic.with_id(id);
        }
        self.diagnostics.push(diagnostic);
    }

    fn warning(&mut self, at: ElementId, message: impl Into<String>) {
        let mut diagnostic = Diagnostic::warning(self.file, self.span(at), message);
        if let Some(id) = self.tree.attr(at, "id") {
            diagnostic = diagnostic.with_id(id);
        }
        self.diagnostics.push(diagnostic);
    }

    /// The `<text>` inside `at`, with the position of its first character (and the text as
    /// written when entity references make it differ).
    fn text_of(&self, at: ElementId) -> Option<Text> {
        let text = self.child(at, "text")?;
        let (source, span) = self.tree.trimmed_text(text)?;
        let mut text = Text::new(source, span);
        let written = self.lines.get(span.line as usize - 1).and_then(|line| {
            let start = line.char_indices().nth(span.col as usize - 1)?.0;
            Some(&line[start..])
        });
        if let Some(first_line) = written.filter(|w| w.contains('&')) {
            // The written text runs up to the closing tag, possibly over several lines.
            let line_start = self.line_starts[span.line as usize - 1];
            let start = line_start + (self.lines[span.line as usize - 1].len() - first_line.len());
            let rest = &self.input[start..];
            let end = rest.find('<').unwrap_or(rest.len());
            let raw = rest[..end].trim_end();
            if raw != source {
                text.raw = Some(raw.to_owned());
            }
        }
        Some(text)
    }

    fn definitions(&mut self) -> Option<DecisionFile> {
        let Some(root) = self.tree.root() else {
            self.diagnostics.push(Diagnostic::error(
                self.file,
                Span::new(1, 1),
                "not a DMN file: no `definitions` element in a DMN namespace",
            ));
            return None;
        };
        if !(self.is(root, "definitions") && self.tree.element(root).ns == Ns::Dmn) {
            let element = self.tree.element(root);
            let message = format!(
                "not a DMN file: the root element is `{}`, expected `definitions` in a DMN 1.1–1.5 namespace",
                element.name
            );
            self.diagnostics
                .push(Diagnostic::error(self.file, element.span, message));
            return None;
        }
        let mut file = DecisionFile {
            source: self.file.to_path_buf(),
            ..DecisionFile::default()
        };
        for child in self.tree.children(root) {
            let element = self.tree.element(child);
            if !matches!(element.ns, Ns::Dmn | Ns::NoNamespace) {
                continue;
            }
            match element.name {
                "decision" => {
                    if let Some(decision) = self.decision(child) {
                        file.decisions.push(decision);
                    }
                }
                "inputData" => {
                    let (Some(id), Some(name)) = (self.attr(child, "id"), self.attr(child, "name"))
                    else {
                        self.error(child, "`inputData` needs an `id` and a `name`");
                        continue;
                    };
                    let type_ref = self
                        .child(child, "variable")
                        .and_then(|v| self.attr(v, "typeRef"));
                    file.inputs.push(InputData {
                        id,
                        name,
                        type_ref,
                        span: self.span(child),
                    });
                }
                "businessKnowledgeModel" | "decisionService" => {
                    let message = format!(
                        "`{}` is not supported: decisions that call it cannot be evaluated",
                        element.name
                    );
                    self.warning(child, message);
                }
                _ => {}
            }
        }
        if file.decisions.is_empty() {
            self.error(root, "the file defines no `decision`");
        }
        Some(file)
    }

    fn decision(&mut self, at: ElementId) -> Option<Decision> {
        let Some(id) = self.attr(at, "id") else {
            self.error(at, "`decision` has no `id` attribute");
            return None;
        };
        let name = self.attr(at, "name").unwrap_or_else(|| id.clone());
        let mut required_decisions = Vec::new();
        let mut required_inputs = Vec::new();
        for requirement in self
            .children(at, "informationRequirement")
            .collect::<Vec<_>>()
        {
            for reference in self.tree.children(requirement).collect::<Vec<_>>() {
                let list = if self.is(reference, "requiredDecision") {
                    &mut required_decisions
                } else if self.is(reference, "requiredInput") {
                    &mut required_inputs
                } else {
                    continue;
                };
                match self.tree.attr(reference, "href") {
                    Some(href) => list.push(Requirement {
                        id: href.rsplit('#').next().unwrap_or(href).to_owned(),
                        span: self.span(reference),
                    }),
                    None => self.error(reference, "requirement without `href`"),
                }
            }
        }
        if let Some(knowledge) = self.child(at, "knowledgeRequirement") {
            self.error(
                knowledge,
                format!(
                    "decision `{id}` requires a business knowledge model, which is not supported"
                ),
            );
        }
        let logic = if let Some(table) = self.child(at, "decisionTable") {
            self.table(table).map(DecisionLogic::Table)
        } else if let Some(literal) = self.child(at, "literalExpression") {
            match self.text_of(literal) {
                Some(text) => Some(DecisionLogic::Literal(text)),
                None => {
                    self.error(literal, format!("literal expression of `{id}` is empty"));
                    None
                }
            }
        } else {
            let other = self
                .tree
                .children(at)
                .find(|&c| UNSUPPORTED_LOGIC.iter().any(|kind| self.is(c, kind)));
            match other {
                Some(kind) => {
                    let message = format!(
                        "decision `{id}` is a boxed `{}`; only decision tables and literal expressions are supported",
                        self.tree.element(kind).name
                    );
                    self.error(kind, message);
                }
                None => self.error(
                    at,
                    format!("decision `{id}` has no decision table or literal expression"),
                ),
            }
            None
        };
        Some(Decision {
            id,
            name,
            required_decisions,
            required_inputs,
            logic,
            span: self.span(at),
        })
    }

    fn table(&mut self, at: ElementId) -> Option<DecisionTable> {
        let hit_policy = match self.tree.attr(at, "hitPolicy") {
            None => HitPolicy::Unique,
            Some(text) => match HitPolicy::parse(text) {
                Some(policy) => policy,
                None => {
                    let message = format!(
                        "unknown hit policy `{text}` (expected one of {})",
                        HitPolicy::NAMES.join(", ")
                    );
                    self.error(at, message);
                    return None;
                }
            },
        };
        let aggregation = match self.tree.attr(at, "aggregation") {
            None => None,
            Some(text) => match Aggregation::parse(text) {
                Some(aggregation) => Some(aggregation),
                None => {
                    let message =
                        format!("unknown aggregation `{text}` (expected SUM, MIN, MAX or COUNT)");
                    self.error(at, message);
                    return None;
                }
            },
        };
        let mut inputs = Vec::new();
        for input in self.children(at, "input").collect::<Vec<_>>() {
            let expression_element = self.child(input, "inputExpression");
            let expression = expression_element.and_then(|e| self.text_of(e));
            let Some(expression) = expression else {
                self.error(input, "input column without an input expression");
                continue;
            };
            inputs.push(TableInput {
                label: self.attr(input, "label"),
                expression,
                type_ref: expression_element.and_then(|e| self.attr(e, "typeRef")),
                allowed: self
                    .child(input, "inputValues")
                    .and_then(|v| self.text_of(v)),
                variable: self
                    .tree
                    .ns_attr(input, Ns::Camunda, "inputVariable")
                    .map(str::to_owned),
                span: self.span(input),
            });
        }
        let mut outputs = Vec::new();
        for output in self.children(at, "output").collect::<Vec<_>>() {
            outputs.push(TableOutput {
                name: self.attr(output, "name"),
                label: self.attr(output, "label"),
                type_ref: self.attr(output, "typeRef"),
                allowed: self
                    .child(output, "outputValues")
                    .and_then(|v| self.text_of(v)),
                default: self
                    .child(output, "defaultOutputEntry")
                    .and_then(|v| self.text_of(v)),
                span: self.span(output),
            });
        }
        let mut rules = Vec::new();
        for rule in self.children(at, "rule").collect::<Vec<_>>() {
            let entry = |reader: &Self, entry: ElementId, empty: &str| {
                reader
                    .text_of(entry)
                    .unwrap_or_else(|| Text::new(empty, reader.span(entry)))
            };
            let rule_inputs = self
                .children(rule, "inputEntry")
                .map(|e| entry(self, e, "-"))
                .collect();
            let rule_outputs = self
                .children(rule, "outputEntry")
                .map(|e| entry(self, e, "null"))
                .collect();
            rules.push(Rule {
                id: self.attr(rule, "id"),
                inputs: rule_inputs,
                outputs: rule_outputs,
                span: self.span(rule),
            });
        }
        Some(DecisionTable {
            hit_policy,
            aggregation,
            inputs,
            outputs,
            rules,
            span: self.span(at),
        })
    }
}
