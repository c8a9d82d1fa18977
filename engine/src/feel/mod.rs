//! A subset of FEEL (DMN's Friendly Enough Expression Language): the unary tests of decision
//! table input entries (`< 10`, `[1..10]`, `]0..5)`, `"a","b"`, `not("x")`, `-`, `? > 5`) and
//! simple expressions (literals, names with spaces, paths, arithmetic, comparisons, three-valued
//! `and`/`or`, `between`, `in`, `if`, lists, contexts, ranges, filters, dates, times, durations
//! and a set of built-in functions, see [`eval::FUNCTIONS`]).
//!
//! Invariants:
//! - Parsing reports the byte offset of every problem ([`FeelError`]); callers add the text's own
//!   position in its file.
//! - Evaluation never fails and never panics: FEEL gives `null` for invalid operations (a number
//!   plus text, a division by zero, an unknown name).
//! - Evaluation is pure and deterministic: no clock, no I/O; input nesting is bounded
//!   ([`parser::MAX_NESTING`]), so recursion is too.
//! - Not supported (a parse error says so): `for`, `some`, `every`, `instance of`, function
//!   definitions, named arguments.

mod eval;
mod lexer;
mod parser;
mod temporal;
mod value;

pub use eval::{call, compare_op, Evaluator, Lookup, FUNCTIONS};
pub use parser::{Ast, CmpOp, UnaryTest, MAX_NESTING};
pub use value::{compare, equal, number_from_text, Bound, DateTime, Range, Time, Value, Zone};

/// A problem in FEEL text, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct FeelError {
    /// Byte offset in the text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl FeelError {
    pub(crate) fn at(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }

    /// The 1-based line and column of the problem in `text`.
    pub fn line_col(&self, text: &str) -> (u32, u32) {
        let before = text.get(..self.offset.min(text.len())).unwrap_or(text);
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
        (line, col)
    }
}

/// A parsed FEEL expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    ast: Ast,
}

impl Expression {
    /// Parses `text`; `names` are the names with spaces in scope (input data, decisions).
    pub fn parse(text: &str, names: &[&str]) -> Result<Self, FeelError> {
        Ok(Self {
            ast: parser::parse_expression(text, names)?,
        })
    }

    /// Evaluates it over `names`.
    pub fn eval(&self, names: &dyn Lookup) -> Value {
        Evaluator::new(names).eval(&self.ast)
    }

    /// The syntax tree.
    pub fn ast(&self) -> &Ast {
        &self.ast
    }

    /// The names it reads, in order of appearance (repeats removed).
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        parser::names_in(&self.ast, &mut out);
        dedup(out)
    }

    /// The functions it calls that are not built in.
    pub fn unknown_functions(&self) -> Vec<String> {
        let mut out = Vec::new();
        unknown_functions(&self.ast, &mut out);
        dedup(out)
    }
}

/// Parsed unary tests (a decision table input entry).
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryTests {
    test: UnaryTest,
}

impl UnaryTests {
    /// Parses `text`; `names` are the names with spaces in scope.
    pub fn parse(text: &str, names: &[&str]) -> Result<Self, FeelError> {
        Ok(Self {
            test: parser::parse_unary_tests(text, names)?,
        })
    }

    /// Whether `input` passes; `None` (FEEL `null`) when the tests cannot compare it, which a
    /// decision table takes as no match.
    pub fn matches(&self, input: &Value, names: &dyn Lookup) -> Option<bool> {
        Evaluator::new(names).test(&self.test, input)
    }

    /// The test.
    pub fn test(&self) -> &UnaryTest {
        &self.test
    }

    /// Whether it is `-` (matches anything).
    pub fn is_any(&self) -> bool {
        matches!(self.test, UnaryTest::Any)
    }

    /// The names it reads (besides `?`).
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        parser::test_names(&self.test, &mut out);
        dedup(out)
    }

    /// The functions it calls that are not built in.
    pub fn unknown_functions(&self) -> Vec<String> {
        let mut out = Vec::new();
        test_unknown_functions(&self.test, &mut out);
        dedup(out)
    }
}

fn dedup(mut names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn unknown_functions(ast: &Ast, out: &mut Vec<String>) {
    match ast {
        Ast::Call(name, args) => {
            if !FUNCTIONS.contains(&name.as_str()) {
                out.push(name.clone());
            }
            args.iter().for_each(|a| unknown_functions(a, out));
        }
        Ast::Input | Ast::Literal(_) | Ast::Name(_) => {}
        Ast::Path(a, _) | Ast::Neg(a) => unknown_functions(a, out),
        Ast::Filter(a, b)
        | Ast::Arith(_, a, b)
        | Ast::Compare(_, a, b)
        | Ast::And(a, b)
        | Ast::Or(a, b) => {
            unknown_functions(a, out);
            unknown_functions(b, out);
        }
        Ast::Between(a, b, c) | Ast::If(a, b, c) => {
            unknown_functions(a, out);
            unknown_functions(b, out);
            unknown_functions(c, out);
        }
        Ast::In(a, tests) => {
            unknown_functions(a, out);
            tests.iter().for_each(|t| test_unknown_functions(t, out));
        }
        Ast::List(items) => items.iter().for_each(|a| unknown_functions(a, out)),
        Ast::Context(entries) => entries.iter().for_each(|(_, v)| unknown_functions(v, out)),
        Ast::Range { start, end, .. } => {
            for end in [start, end].into_iter().flatten() {
                unknown_functions(end, out);
            }
        }
    }
}

fn test_unknown_functions(test: &UnaryTest, out: &mut Vec<String>) {
    match test {
        UnaryTest::Any => {}
        UnaryTest::Not(tests) | UnaryTest::AnyOf(tests) => {
            tests.iter().for_each(|t| test_unknown_functions(t, out))
        }
        UnaryTest::Compare(_, ast) | UnaryTest::Expr { expr: ast, .. } => {
            unknown_functions(ast, out)
        }
        UnaryTest::Range { start, end, .. } => {
            unknown_functions(start, out);
            unknown_functions(end, out);
        }
    }
}

#[cfg(test)]
mod tests;
