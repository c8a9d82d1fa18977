//! FEEL text → syntax tree: simple expressions (literals, names, paths, arithmetic, comparison,
//! `and`/`or`, `between`, `in`, `if`, lists, contexts, ranges, function calls, filters) and unary
//! tests (`-`, `< 10`, `[1..10]`, `"a","b"`, `not(...)`, expressions over `?`).

use super::lexer::{tokenize, Tok, Token};
use super::value::Value;
use super::{temporal, FeelError};

/// Deepest nesting of parentheses, lists and operators accepted (keeps the parser's recursion
/// bounded on any input).
pub const MAX_NESTING: usize = 64;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `**`
    Pow,
}

/// A FEEL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    /// A literal value.
    Literal(Value),
    /// A variable (or decision, or context entry) by name.
    Name(String),
    /// `?`: the value a unary test is tested against.
    Input,
    /// `a.b`
    Path(Box<Ast>, String),
    /// `list[index]` or `list[condition]`.
    Filter(Box<Ast>, Box<Ast>),
    /// A function call by name.
    Call(String, Vec<Ast>),
    /// `-x`
    Neg(Box<Ast>),
    /// Arithmetic.
    Arith(ArithOp, Box<Ast>, Box<Ast>),
    /// Comparison.
    Compare(CmpOp, Box<Ast>, Box<Ast>),
    /// `a and b`
    And(Box<Ast>, Box<Ast>),
    /// `a or b`
    Or(Box<Ast>, Box<Ast>),
    /// `x between a and b`
    Between(Box<Ast>, Box<Ast>, Box<Ast>),
    /// `x in tests`
    In(Box<Ast>, Vec<UnaryTest>),
    /// `if c then a else b`
    If(Box<Ast>, Box<Ast>, Box<Ast>),
    /// `[a, b]`
    List(Vec<Ast>),
    /// `{a: 1, "b c": 2}`
    Context(Vec<(String, Ast)>),
    /// `[a..b)` and friends; `None` ends are unbounded.
    Range {
        /// Low end.
        start: Option<Box<Ast>>,
        /// Whether the low end is included.
        start_closed: bool,
        /// High end.
        end: Option<Box<Ast>>,
        /// Whether the high end is included.
        end_closed: bool,
    },
}

/// One unary test of an input entry or of `in`.
#[derive(Debug, Clone, PartialEq)]
pub enum UnaryTest {
    /// `-`: anything matches.
    Any,
    /// `not(tests)`: matches when none of `tests` does.
    Not(Vec<UnaryTest>),
    /// `a, b, c`: matches when one of the tests does.
    AnyOf(Vec<UnaryTest>),
    /// `< 10`, `= "a"`, ...: a comparison with the input.
    Compare(CmpOp, Ast),
    /// `[1..10]` and friends.
    Range {
        /// Low end.
        start: Ast,
        /// Whether the low end is included.
        start_closed: bool,
        /// High end.
        end: Ast,
        /// Whether the high end is included.
        end_closed: bool,
    },
    /// An expression: the input equals its value (or is in it, when it is a list or a range);
    /// an expression using `?` must be true.
    Expr {
        /// The expression.
        expr: Ast,
        /// Whether it mentions `?`.
        uses_input: bool,
    },
}

/// Parses an expression.
pub fn parse_expression(text: &str, names: &[&str]) -> Result<Ast, FeelError> {
    let mut parser = Parser::new(text, names)?;
    let ast = parser.expression()?;
    parser.expect_end()?;
    Ok(ast)
}

/// Parses unary tests (an input entry).
pub fn parse_unary_tests(text: &str, names: &[&str]) -> Result<UnaryTest, FeelError> {
    let mut parser = Parser::new(text, names)?;
    if matches!(parser.peek(), Tok::End) {
        return Err(FeelError::at(
            0,
            "empty unary test: write `-` to match anything",
        ));
    }
    if parser.peek() == &Tok::Sym("-") && parser.peek_at(1) == &Tok::End {
        return Ok(UnaryTest::Any);
    }
    if parser.peek() == &Tok::Name("not".into()) && parser.peek_at(1) == &Tok::Sym("(") {
        let save = parser.pos;
        parser.pos += 2;
        let tests = parser.positive_unary_tests()?;
        if parser.eat(")") && matches!(parser.peek(), Tok::End) {
            return Ok(UnaryTest::Not(tests));
        }
        parser.pos = save;
    }
    let mut tests = parser.positive_unary_tests()?;
    parser.expect_end()?;
    Ok(if tests.len() == 1 {
        tests.remove(0)
    } else {
        UnaryTest::AnyOf(tests)
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Parsing the high end of a range, where `[` closes the range.
    range_end: bool,
}

impl Parser {
    fn new(text: &str, names: &[&str]) -> Result<Self, FeelError> {
        Ok(Self {
            tokens: tokenize(text, names)?,
            pos: 0,
            depth: 0,
            range_end: false,
        })
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + ahead).min(last)].kind
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos.min(self.tokens.len() - 1)].offset
    }

    fn next(&mut self) -> Tok {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn is(&self, symbol: &str) -> bool {
        matches!(self.peek(), Tok::Sym(s) if *s == symbol)
    }

    fn eat(&mut self, symbol: &str) -> bool {
        if self.is(symbol) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, symbol: &str) -> Result<(), FeelError> {
        if self.eat(symbol) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{symbol}`")))
        }
    }

    fn expect_end(&mut self) -> Result<(), FeelError> {
        match self.peek() {
            Tok::End => Ok(()),
            _ => Err(self.unexpected("the end of the expression")),
        }
    }

    fn unexpected(&self, wanted: &str) -> FeelError {
        let found = match self.peek() {
            Tok::End => "the end".to_string(),
            Tok::Number(n) => format!("`{n}`"),
            Tok::String(s) => format!("\"{s}\""),
            Tok::Name(n) => format!("`{n}`"),
            Tok::Sym(s) => format!("`{s}`"),
        };
        FeelError::at(self.offset(), format!("expected {wanted}, found {found}"))
    }

    fn nested<T>(
        &mut self,
        parse: impl FnOnce(&mut Self) -> Result<T, FeelError>,
    ) -> Result<T, FeelError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(FeelError::at(
                self.offset(),
                format!("expression is nested more than {MAX_NESTING} levels deep"),
            ));
        }
        let result = parse(self);
        self.depth -= 1;
        result
    }

    // ---- expressions -------------------------------------------------------------------------

    fn expression(&mut self) -> Result<Ast, FeelError> {
        self.nested(|p| {
            if p.eat("if") {
                let condition = p.expression()?;
                p.expect("then")?;
                let then = p.expression()?;
                p.expect("else")?;
                let otherwise = p.expression()?;
                return Ok(Ast::If(
                    Box::new(condition),
                    Box::new(then),
                    Box::new(otherwise),
                ));
            }
            for word in ["for", "some", "every"] {
                if p.is(word) {
                    return Err(FeelError::at(
                        p.offset(),
                        format!("`{word}` expressions are not supported"),
                    ));
                }
            }
            p.disjunction()
        })
    }

    fn disjunction(&mut self) -> Result<Ast, FeelError> {
        let mut left = self.conjunction()?;
        while self.eat("or") {
            let right = self.conjunction()?;
            left = Ast::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn conjunction(&mut self) -> Result<Ast, FeelError> {
        let mut left = self.comparison()?;
        while self.eat("and") {
            let right = self.comparison()?;
            left = Ast::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn comparison_op(&self) -> Option<CmpOp> {
        match self.peek() {
            Tok::Sym("=") => Some(CmpOp::Eq),
            Tok::Sym("!=") => Some(CmpOp::Ne),
            Tok::Sym("<") => Some(CmpOp::Lt),
            Tok::Sym("<=") => Some(CmpOp::Le),
            Tok::Sym(">") => Some(CmpOp::Gt),
            Tok::Sym(">=") => Some(CmpOp::Ge),
            _ => None,
        }
    }

    fn comparison(&mut self) -> Result<Ast, FeelError> {
        let left = self.additive()?;
        if let Some(op) = self.comparison_op() {
            self.pos += 1;
            let right = self.additive()?;
            return Ok(Ast::Compare(op, Box::new(left), Box::new(right)));
        }
        if self.eat("between") {
            let low = self.additive()?;
            self.expect("and")?;
            let high = self.additive()?;
            return Ok(Ast::Between(Box::new(left), Box::new(low), Box::new(high)));
        }
        if self.eat("in") {
            let tests = self.in_tests()?;
            return Ok(Ast::In(Box::new(left), tests));
        }
        if self.is("instance") {
            return Err(FeelError::at(
                self.offset(),
                "`instance of` is not supported",
            ));
        }
        Ok(left)
    }

    /// The right side of `in`: `(tests)` or one positive unary test.
    fn in_tests(&mut self) -> Result<Vec<UnaryTest>, FeelError> {
        if self.is("(") {
            let save = self.pos;
            if let Ok(range) = self.interval_test() {
                return Ok(vec![range]);
            }
            self.pos = save;
            self.pos += 1;
            let tests = self.positive_unary_tests()?;
            self.expect(")")?;
            return Ok(tests);
        }
        Ok(vec![self.positive_unary_test()?])
    }

    fn additive(&mut self) -> Result<Ast, FeelError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat("+") {
                ArithOp::Add
            } else if self.eat("-") {
                ArithOp::Sub
            } else {
                return Ok(left);
            };
            let right = self.multiplicative()?;
            left = Ast::Arith(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Ast, FeelError> {
        let mut left = self.power()?;
        loop {
            let op = if self.eat("*") {
                ArithOp::Mul
            } else if self.eat("/") {
                ArithOp::Div
            } else {
                return Ok(left);
            };
            let right = self.power()?;
            left = Ast::Arith(op, Box::new(left), Box::new(right));
        }
    }

    /// `**` binds tighter than `*` and groups to the left, as FEEL's grammar says.
    fn power(&mut self) -> Result<Ast, FeelError> {
        let mut left = self.unary()?;
        while self.eat("**") {
            let right = self.unary()?;
            left = Ast::Arith(ArithOp::Pow, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast, FeelError> {
        if self.eat("-") {
            let operand = self.nested(|p| p.unary())?;
            return Ok(match operand {
                Ast::Literal(Value::Number(n)) => Ast::Literal(Value::Number(-n)),
                other => Ast::Neg(Box::new(other)),
            });
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Ast, FeelError> {
        let mut ast = self.primary()?;
        loop {
            if self.eat(".") {
                let save = self.pos;
                match self.next() {
                    Tok::Name(name) => ast = Ast::Path(Box::new(ast), name),
                    Tok::Sym(word) if word.chars().all(char::is_alphabetic) => {
                        ast = Ast::Path(Box::new(ast), word.to_string())
                    }
                    _ => {
                        self.pos = save;
                        return Err(self.unexpected("a name after `.`"));
                    }
                }
            } else if self.is("[") && !self.range_end {
                self.pos += 1;
                let filter = self.nested(|p| p.expression())?;
                self.expect("]")?;
                ast = Ast::Filter(Box::new(ast), Box::new(filter));
            } else if self.is("(") {
                let Ast::Name(name) = ast else {
                    return Err(FeelError::at(
                        self.offset(),
                        "only named functions can be called",
                    ));
                };
                self.pos += 1;
                let arguments = self.nested(|p| p.arguments())?;
                ast = Ast::Call(name, arguments);
            } else {
                return Ok(ast);
            }
        }
    }

    fn arguments(&mut self) -> Result<Vec<Ast>, FeelError> {
        let mut arguments = Vec::new();
        if self.eat(")") {
            return Ok(arguments);
        }
        loop {
            if matches!(self.peek(), Tok::Name(_)) && self.peek_at(1) == &Tok::Sym(":") {
                return Err(FeelError::at(
                    self.offset(),
                    "named arguments are not supported",
                ));
            }
            arguments.push(self.expression()?);
            if self.eat(")") {
                return Ok(arguments);
            }
            self.expect(",")?;
        }
    }

    fn primary(&mut self) -> Result<Ast, FeelError> {
        let offset = self.offset();
        let save = self.pos;
        match self.next() {
            Tok::Number(text) => match super::value::number_from_text(&text) {
                Value::Null => Err(FeelError::at(offset, format!("`{text}` is not a number"))),
                number => Ok(Ast::Literal(number)),
            },
            Tok::String(text) => Ok(Ast::Literal(Value::String(text))),
            Tok::Sym("null") => Ok(Ast::Literal(Value::Null)),
            Tok::Sym("true") => Ok(Ast::Literal(Value::Bool(true))),
            Tok::Sym("false") => Ok(Ast::Literal(Value::Bool(false))),
            Tok::Sym("?") => Ok(Ast::Input),
            Tok::Name(name) => Ok(Ast::Name(name)),
            Tok::Sym("@") => match self.next() {
                Tok::String(text) => match temporal::parse_at_literal(&text) {
                    Some(value) => Ok(Ast::Literal(value)),
                    None => Err(FeelError::at(
                        offset,
                        format!("@\"{text}\" is not a date, time or duration"),
                    )),
                },
                _ => Err(FeelError::at(offset, "`@` must be followed by a string")),
            },
            Tok::Sym("(") => {
                if let Some(op) = self.comparison_op() {
                    // `(< 10)`: a range written as a unary comparison (`=` and `!=` make none).
                    if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                        return Err(FeelError::at(
                            self.offset(),
                            "`(= x)` and `(!= x)` are unary tests, not values",
                        ));
                    }
                    self.pos += 1;
                    let endpoint = self.nested(|p| p.additive())?;
                    self.expect(")")?;
                    return Ok(unary_range(op, endpoint));
                }
                let first = self.nested(|p| p.expression())?;
                if self.eat("..") {
                    return self.range_rest(Some(first), false);
                }
                self.expect(")")?;
                Ok(first)
            }
            Tok::Sym("]") => {
                let first = self.nested(|p| p.expression())?;
                self.expect("..")?;
                self.range_rest(Some(first), false)
            }
            Tok::Sym("[") => {
                if self.eat("]") {
                    return Ok(Ast::List(Vec::new()));
                }
                let first = self.nested(|p| p.expression())?;
                if self.eat("..") {
                    return self.range_rest(Some(first), true);
                }
                let mut items = vec![first];
                while self.eat(",") {
                    items.push(self.nested(|p| p.expression())?);
                }
                self.expect("]")?;
                Ok(Ast::List(items))
            }
            Tok::Sym("{") => self.nested(|p| p.context()),
            _ => {
                self.pos = save;
                Err(self.unexpected("a value"))
            }
        }
    }

    /// After `start..`: the high end and its bracket (a `[` after the end closes the range, it
    /// does not filter the end).
    fn range_rest(&mut self, start: Option<Ast>, start_closed: bool) -> Result<Ast, FeelError> {
        self.range_end = true;
        let end = self.nested(|p| p.additive());
        self.range_end = false;
        let end = end?;
        let end_closed = if self.eat("]") {
            true
        } else if self.eat(")") || self.eat("[") {
            false
        } else {
            return Err(self.unexpected("`]`, `)` or `[` closing the range"));
        };
        Ok(Ast::Range {
            start: start.map(Box::new),
            start_closed,
            end: Some(Box::new(end)),
            end_closed,
        })
    }

    fn context(&mut self) -> Result<Ast, FeelError> {
        let mut entries = Vec::new();
        if self.eat("}") {
            return Ok(Ast::Context(entries));
        }
        loop {
            let save = self.pos;
            let key = match self.next() {
                Tok::Name(name) => name,
                Tok::String(text) => text,
                _ => {
                    self.pos = save;
                    return Err(self.unexpected("a context key"));
                }
            };
            self.expect(":")?;
            entries.push((key, self.expression()?));
            if self.eat("}") {
                return Ok(Ast::Context(entries));
            }
            self.expect(",")?;
        }
    }

    // ---- unary tests -------------------------------------------------------------------------

    fn positive_unary_tests(&mut self) -> Result<Vec<UnaryTest>, FeelError> {
        let mut tests = vec![self.positive_unary_test()?];
        while self.eat(",") {
            tests.push(self.positive_unary_test()?);
        }
        Ok(tests)
    }

    fn positive_unary_test(&mut self) -> Result<UnaryTest, FeelError> {
        self.nested(|p| {
            if let Some(op) = p.comparison_op() {
                p.pos += 1;
                let endpoint = p.additive()?;
                return Ok(UnaryTest::Compare(op, endpoint));
            }
            if p.is("(") || p.is("[") || p.is("]") {
                let save = p.pos;
                match p.interval_test() {
                    Ok(test) => return Ok(test),
                    Err(err) if p.is("..") || p.tokens[save].kind == Tok::Sym("]") => {
                        return Err(err)
                    }
                    Err(_) => p.pos = save,
                }
            }
            let expr = p.expression()?;
            let uses_input = mentions_input(&expr);
            Ok(UnaryTest::Expr { expr, uses_input })
        })
    }

    fn interval_test(&mut self) -> Result<UnaryTest, FeelError> {
        let start_closed = match self.next() {
            Tok::Sym("[") => true,
            Tok::Sym("(") | Tok::Sym("]") => false,
            _ => return Err(self.unexpected("a range")),
        };
        let start = self.additive()?;
        self.expect("..")?;
        self.range_end = true;
        let end = self.additive();
        self.range_end = false;
        let end = end?;
        let end_closed = if self.eat("]") {
            true
        } else if self.eat(")") || self.eat("[") {
            false
        } else {
            return Err(self.unexpected("`]`, `)` or `[` closing the range"));
        };
        Ok(UnaryTest::Range {
            start,
            start_closed,
            end,
            end_closed,
        })
    }
}

fn unary_range(op: CmpOp, endpoint: Ast) -> Ast {
    let endpoint = Some(Box::new(endpoint));
    let (start, start_closed, end, end_closed) = match op {
        CmpOp::Lt => (None, false, endpoint, false),
        CmpOp::Le => (None, false, endpoint, true),
        CmpOp::Gt => (endpoint, false, None, false),
        // `>=`; `=` and `!=` are refused before they get here.
        _ => (endpoint, true, None, false),
    };
    Ast::Range {
        start,
        start_closed,
        end,
        end_closed,
    }
}

/// Whether an expression mentions `?`.
pub fn mentions_input(ast: &Ast) -> bool {
    match ast {
        Ast::Input => true,
        Ast::Literal(_) | Ast::Name(_) => false,
        Ast::Path(a, _) | Ast::Neg(a) => mentions_input(a),
        Ast::Filter(a, b)
        | Ast::Arith(_, a, b)
        | Ast::Compare(_, a, b)
        | Ast::And(a, b)
        | Ast::Or(a, b) => mentions_input(a) || mentions_input(b),
        Ast::Between(a, b, c) | Ast::If(a, b, c) => {
            mentions_input(a) || mentions_input(b) || mentions_input(c)
        }
        Ast::In(a, tests) => mentions_input(a) || tests.iter().any(test_mentions_input),
        Ast::Call(_, args) | Ast::List(args) => args.iter().any(mentions_input),
        Ast::Context(entries) => entries.iter().any(|(_, v)| mentions_input(v)),
        Ast::Range { start, end, .. } => {
            start.as_deref().is_some_and(mentions_input)
                || end.as_deref().is_some_and(mentions_input)
        }
    }
}

fn test_mentions_input(test: &UnaryTest) -> bool {
    match test {
        UnaryTest::Any => false,
        UnaryTest::Not(tests) | UnaryTest::AnyOf(tests) => tests.iter().any(test_mentions_input),
        UnaryTest::Compare(_, ast) => mentions_input(ast),
        UnaryTest::Range { start, end, .. } => mentions_input(start) || mentions_input(end),
        UnaryTest::Expr { uses_input, .. } => *uses_input,
    }
}

/// The names an expression reads (not function names, not context keys it defines).
pub fn names_in(ast: &Ast, out: &mut Vec<String>) {
    match ast {
        Ast::Name(name) => out.push(name.clone()),
        Ast::Input | Ast::Literal(_) => {}
        Ast::Path(a, _) | Ast::Neg(a) => names_in(a, out),
        Ast::Filter(a, _) => names_in(a, out),
        Ast::Arith(_, a, b) | Ast::Compare(_, a, b) | Ast::And(a, b) | Ast::Or(a, b) => {
            names_in(a, out);
            names_in(b, out);
        }
        Ast::Between(a, b, c) | Ast::If(a, b, c) => {
            names_in(a, out);
            names_in(b, out);
            names_in(c, out);
        }
        Ast::In(a, tests) => {
            names_in(a, out);
            for test in tests {
                test_names(test, out);
            }
        }
        Ast::Call(_, args) | Ast::List(args) => args.iter().for_each(|a| names_in(a, out)),
        Ast::Context(entries) => entries.iter().for_each(|(_, v)| names_in(v, out)),
        Ast::Range { start, end, .. } => {
            if let Some(s) = start {
                names_in(s, out);
            }
            if let Some(e) = end {
                names_in(e, out);
            }
        }
    }
}

/// The names a unary test reads.
pub fn test_names(test: &UnaryTest, out: &mut Vec<String>) {
    match test {
        UnaryTest::Any => {}
        UnaryTest::Not(tests) | UnaryTest::AnyOf(tests) => {
            tests.iter().for_each(|t| test_names(t, out))
        }
        UnaryTest::Compare(_, ast) | UnaryTest::Expr { expr: ast, .. } => names_in(ast, out),
        UnaryTest::Range { start, end, .. } => {
            names_in(start, out);
            names_in(end, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_grouping() {
        let ast = parse_expression("5+2**5+3", &[]).unwrap();
        let Ast::Arith(ArithOp::Add, left, _) = ast else {
            panic!("{ast:?}")
        };
        assert!(matches!(*left, Ast::Arith(ArithOp::Add, _, _)));
        assert!(parse_expression("a and b or c", &[]).is_ok());
        assert!(parse_expression("if a > 1 then \"x\" else \"y\"", &[]).is_ok());
        assert!(parse_expression("(1 + ", &[]).is_err());
    }

    #[test]
    fn unary_tests_of_every_form() {
        assert_eq!(parse_unary_tests("-", &[]).unwrap(), UnaryTest::Any);
        assert!(matches!(
            parse_unary_tests("< 10", &[]).unwrap(),
            UnaryTest::Compare(CmpOp::Lt, _)
        ));
        assert!(matches!(
            parse_unary_tests("]0..5)", &[]).unwrap(),
            UnaryTest::Range {
                start_closed: false,
                end_closed: false,
                ..
            }
        ));
        assert!(matches!(
            parse_unary_tests("not(\"x\")", &[]).unwrap(),
            UnaryTest::Not(_)
        ));
        assert!(matches!(
            parse_unary_tests("? > 5", &[]).unwrap(),
            UnaryTest::Expr {
                uses_input: true,
                ..
            }
        ));
        assert!(parse_unary_tests("\"a\",\"b\"", &[]).is_ok());
        assert!(parse_unary_tests("-5", &[]).is_ok());
        assert!(parse_unary_tests("", &[]).is_err());
        assert!(parse_unary_tests("[1..", &[]).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        let err = parse_expression(&deep, &[]).unwrap_err();
        assert!(err.message.contains("nested"), "{err:?}");
    }
}
