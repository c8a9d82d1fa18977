//! The decision model both decision front ends (DMN XML and YAML) produce: decisions with their
//! requirements and logic (decision tables or literal expressions), FEEL kept as source text with
//! its position.

use crate::model::Span;
use std::path::PathBuf;

/// Everything one decision file defines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionFile {
    /// The file (used in every diagnostic).
    pub source: PathBuf,
    /// Decisions, in document order.
    pub decisions: Vec<Decision>,
    /// Input data (DMN `inputData`): named values the decisions read.
    pub inputs: Vec<InputData>,
}

/// A DMN `inputData`: a named input of the decisions, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct InputData {
    /// Element id.
    pub id: String,
    /// The name decisions use.
    pub name: String,
    /// Its type (`number`, `string`, `date`, ...), when declared.
    pub type_ref: Option<String>,
    /// Where it is defined.
    pub span: Span,
}

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Id (what a business-rule task and `flowbot decide --decision` name).
    pub id: String,
    /// Name (what other decisions' expressions call its result).
    pub name: String,
    /// Decisions this one reads (by id), in document order.
    pub required_decisions: Vec<Requirement>,
    /// Input data this one reads (by id).
    pub required_inputs: Vec<Requirement>,
    /// How it decides; `None` when the file gives no logic (reported).
    pub logic: Option<DecisionLogic>,
    /// Where it is defined.
    pub span: Span,
}

/// A reference to another decision or an input data element.
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    /// The referenced id.
    pub id: String,
    /// Where the reference is written.
    pub span: Span,
}

/// A decision's logic.
#[derive(Debug, Clone, PartialEq)]
pub enum DecisionLogic {
    /// A decision table.
    Table(DecisionTable),
    /// A FEEL literal expression.
    Literal(Text),
}

/// FEEL source text and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// The text.
    pub source: String,
    /// Where the text starts.
    pub span: Span,
    /// The text as written in the file, when it differs from `source` by XML entity references
    /// (`&lt;= 8` for `<= 8`): positions inside the text are counted on it.
    pub raw: Option<String>,
}

impl Text {
    /// FEEL text at `span`, written as it reads.
    pub fn new(source: impl Into<String>, span: Span) -> Self {
        Self {
            source: source.into(),
            span,
            raw: None,
        }
    }

    /// The file position of byte `offset` of `source`.
    pub fn span_at(&self, offset: usize) -> Span {
        let written = match &self.raw {
            None => self
                .source
                .get(..offset.min(self.source.len()))
                .unwrap_or(&self.source),
            Some(raw) => {
                // Walk the written text; an entity reference stands for one character.
                let mut read = 0;
                let mut at = 0;
                let mut chars = raw.char_indices().peekable();
                while read < offset {
                    let Some((i, c)) = chars.next() else { break };
                    at = i + c.len_utf8();
                    if c == '&' {
                        if let Some(end) = raw[i..].find(';') {
                            while chars.peek().is_some_and(|(j, _)| *j <= i + end) {
                                chars.next();
                            }
                            at = i + end + 1;
                            let entity = &raw[i..at];
                            read += unescaped_len(entity);
                            continue;
                        }
                    }
                    read += c.len_utf8();
                }
                &raw[..at]
            }
        };
        let line = written.matches('\n').count() as u32;
        match written.rfind('\n') {
            Some(last) => Span::new(
                self.span.line + line,
                written[last + 1..].chars().count() as u32 + 1,
            ),
            None => Span::new(
                self.span.line,
                self.span.col + written.chars().count() as u32,
            ),
        }
    }
}

/// The length in bytes of what an XML entity or character reference stands for.
fn unescaped_len(entity: &str) -> usize {
    let code = entity
        .strip_prefix("&#x")
        .and_then(|hex| u32::from_str_radix(hex.trim_end_matches(';'), 16).ok())
        .or_else(|| {
            entity
                .strip_prefix("&#")
                .and_then(|dec| dec.trim_end_matches(';').parse().ok())
        });
    match code.and_then(char::from_u32) {
        Some(c) => c.len_utf8(),
        None => 1,
    }
}

/// How a table picks its result from the rules that match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitPolicy {
    /// At most one rule may match.
    Unique,
    /// The first matching rule in rule order.
    First,
    /// The matching rule whose outputs come first in the output values.
    Priority,
    /// Several rules may match if their outputs are equal.
    Any,
    /// All matching rules, in rule order, optionally aggregated.
    Collect,
    /// All matching rules, in rule order.
    RuleOrder,
    /// All matching rules, ordered by their outputs' priority.
    OutputOrder,
}

impl HitPolicy {
    /// The names front ends accept (DMN XML spelling; YAML takes them in lowercase with `_`).
    pub const NAMES: [&'static str; 7] = [
        "UNIQUE",
        "FIRST",
        "PRIORITY",
        "ANY",
        "COLLECT",
        "RULE ORDER",
        "OUTPUT ORDER",
    ];

    /// Reads a hit policy written as `UNIQUE`, `RULE ORDER`, `rule_order`, `U`, `R`, ...
    pub fn parse(text: &str) -> Option<HitPolicy> {
        let normal = text.trim().to_ascii_uppercase().replace(['_', '-'], " ");
        Some(match normal.as_str() {
            "UNIQUE" | "U" => HitPolicy::Unique,
            "FIRST" | "F" => HitPolicy::First,
            "PRIORITY" | "P" => HitPolicy::Priority,
            "ANY" | "A" => HitPolicy::Any,
            "COLLECT" | "C" => HitPolicy::Collect,
            "RULE ORDER" | "R" => HitPolicy::RuleOrder,
            "OUTPUT ORDER" | "O" => HitPolicy::OutputOrder,
            _ => return None,
        })
    }

    /// The DMN spelling (`RULE ORDER`).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the result is a list of every matching rule's outputs.
    pub fn is_multiple(self) -> bool {
        matches!(
            self,
            HitPolicy::Collect | HitPolicy::RuleOrder | HitPolicy::OutputOrder
        )
    }
}

/// How a COLLECT table aggregates its single output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// The sum of the outputs.
    Sum,
    /// The smallest output.
    Min,
    /// The largest output.
    Max,
    /// How many rules matched.
    Count,
}

impl Aggregation {
    /// Reads `SUM`, `MIN`, `MAX`, `COUNT` (any case).
    pub fn parse(text: &str) -> Option<Aggregation> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "SUM" | "+" => Aggregation::Sum,
            "MIN" | "<" => Aggregation::Min,
            "MAX" | ">" => Aggregation::Max,
            "COUNT" | "#" => Aggregation::Count,
            _ => return None,
        })
    }
}

/// A decision table.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTable {
    /// The hit policy.
    pub hit_policy: HitPolicy,
    /// The aggregation of a COLLECT table.
    pub aggregation: Option<Aggregation>,
    /// Input columns.
    pub inputs: Vec<TableInput>,
    /// Output columns.
    pub outputs: Vec<TableOutput>,
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Where the table is defined.
    pub span: Span,
}

/// An input column.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInput {
    /// Column label (or name).
    pub label: Option<String>,
    /// The FEEL expression giving the input value.
    pub expression: Text,
    /// Its type (`number`, `date`, ...), when declared: text is read as that type.
    pub type_ref: Option<String>,
    /// The allowed values (unary tests), when declared.
    pub allowed: Option<Text>,
    /// The name the input value has inside the column's entries besides `?`
    /// (`camunda:inputVariable`, Camunda's `cellInput` by default).
    pub variable: Option<String>,
    /// Where the column is defined.
    pub span: Span,
}

/// An output column.
#[derive(Debug, Clone, PartialEq)]
pub struct TableOutput {
    /// Output name (the key of the result when the table has several outputs).
    pub name: Option<String>,
    /// Column label.
    pub label: Option<String>,
    /// Its type, when declared.
    pub type_ref: Option<String>,
    /// The output values in priority order (PRIORITY, OUTPUT ORDER), as FEEL unary tests text.
    pub allowed: Option<Text>,
    /// The value when no rule matches.
    pub default: Option<Text>,
    /// Where the column is defined.
    pub span: Span,
}

/// One rule (row).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Rule id, when given.
    pub id: Option<String>,
    /// One input entry (FEEL unary tests) per input column.
    pub inputs: Vec<Text>,
    /// One output entry (FEEL expression) per output column.
    pub outputs: Vec<Text>,
    /// Where the rule is defined.
    pub span: Span,
}
