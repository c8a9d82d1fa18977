//! Evaluates FEEL syntax trees. FEEL never fails: an operation on values of the wrong type, a
//! division by zero or an unknown name gives `null`. Evaluation is pure (no clock: `now()` and
//! `today()` do not exist here), so a decision gives the same result for the same inputs.

use super::parser::{ArithOp, Ast, CmpOp, UnaryTest};
use super::temporal;
use super::value::{compare, equal, Bound, DateTime, Range, Time, Value, Zone};
use chrono::{Datelike, NaiveDateTime, NaiveTime, Timelike};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use std::cmp::Ordering;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const NANOS_PER_DAY: i128 = 86_400 * NANOS_PER_SECOND;

/// Where names come from: instance variables, decision inputs, results of required decisions.
pub trait Lookup {
    /// The value named `name`, when there is one.
    fn lookup(&self, name: &str) -> Option<Value>;
}

impl Lookup for serde_json::Map<String, serde_json::Value> {
    fn lookup(&self, name: &str) -> Option<Value> {
        self.get(name).map(Value::from_json)
    }
}

impl Lookup for Vec<(String, Value)> {
    fn lookup(&self, name: &str) -> Option<Value> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// The names built-in functions answer to.
pub const FUNCTIONS: &[&str] = &[
    "not",
    "date",
    "time",
    "date and time",
    "duration",
    "years and months duration",
    "string",
    "number",
    "string length",
    "upper case",
    "lower case",
    "contains",
    "starts with",
    "ends with",
    "substring",
    "substring before",
    "substring after",
    "abs",
    "floor",
    "ceiling",
    "decimal",
    "modulo",
    "sqrt",
    "odd",
    "even",
    "min",
    "max",
    "sum",
    "mean",
    "count",
    "list contains",
    "append",
    "concatenate",
    "is defined",
    "day of week",
    "month of year",
];

/// An evaluation: the names in scope, local bindings (`item`, context entries) and the input of
/// a unary test (`?`).
pub struct Evaluator<'a> {
    names: &'a dyn Lookup,
    locals: Vec<(String, Value)>,
    input: Option<Value>,
}

impl<'a> Evaluator<'a> {
    /// An evaluation over `names`.
    pub fn new(names: &'a dyn Lookup) -> Self {
        Self {
            names,
            locals: Vec::new(),
            input: None,
        }
    }

    fn lookup(&self, name: &str) -> Value {
        if let Some((_, value)) = self.locals.iter().rev().find(|(k, _)| k == name) {
            return value.clone();
        }
        self.names.lookup(name).unwrap_or(Value::Null)
    }

    /// Evaluates an expression.
    pub fn eval(&mut self, ast: &Ast) -> Value {
        match ast {
            Ast::Literal(value) => value.clone(),
            Ast::Name(name) => self.lookup(name),
            Ast::Input => self.input.clone().unwrap_or(Value::Null),
            Ast::Path(target, key) => {
                let target = self.eval(target);
                path(&target, key)
            }
            Ast::Filter(target, filter) => self.filter(target, filter),
            Ast::Call(name, args) => {
                let args: Vec<Value> = args.iter().map(|a| self.eval(a)).collect();
                call(name, args)
            }
            Ast::Neg(operand) => match self.eval(operand) {
                Value::Number(n) => Value::Number(-n),
                Value::DayTime(n) => Value::DayTime(-n),
                Value::YearMonth(n) => Value::YearMonth(-n),
                _ => Value::Null,
            },
            Ast::Arith(op, a, b) => {
                let (a, b) = (self.eval(a), self.eval(b));
                arith(*op, &a, &b)
            }
            Ast::Compare(op, a, b) => {
                let (a, b) = (self.eval(a), self.eval(b));
                bool_or_null(compare_op(*op, &a, &b))
            }
            Ast::And(a, b) => {
                let a = as_bool(&self.eval(a));
                if a == Some(false) {
                    return Value::Bool(false);
                }
                match (a, as_bool(&self.eval(b))) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Ast::Or(a, b) => {
                let a = as_bool(&self.eval(a));
                if a == Some(true) {
                    return Value::Bool(true);
                }
                match (a, as_bool(&self.eval(b))) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Ast::Between(x, low, high) => {
                let (x, low, high) = (self.eval(x), self.eval(low), self.eval(high));
                match (compare(&x, &low), compare(&x, &high)) {
                    (Some(l), Some(h)) => {
                        Value::Bool(l != Ordering::Less && h != Ordering::Greater)
                    }
                    _ => Value::Null,
                }
            }
            Ast::In(x, tests) => {
                let x = self.eval(x);
                bool_or_null(self.any_test(tests, &x))
            }
            Ast::If(condition, then, otherwise) => match self.eval(condition) {
                Value::Bool(true) => self.eval(then),
                _ => self.eval(otherwise),
            },
            Ast::List(items) => Value::List(items.iter().map(|i| self.eval(i)).collect()),
            Ast::Context(entries) => {
                let mark = self.locals.len();
                let mut out = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let value = self.eval(value);
                    self.locals.push((key.clone(), value.clone()));
                    out.push((key.clone(), value));
                }
                self.locals.truncate(mark);
                Value::Context(out)
            }
            Ast::Range {
                start,
                start_closed,
                end,
                end_closed,
            } => {
                // A missing end (`< 10`) is unbounded; a `null` end is kept as written, so
                // `(< 10) = (null..10)` is false, and testing against it gives null.
                let bound = |ev: &mut Self, ast: &Option<Box<Ast>>, closed: bool| match ast {
                    None => Bound::Unbounded,
                    Some(ast) => match ev.eval(ast) {
                        v if closed => Bound::Closed(v),
                        v => Bound::Open(v),
                    },
                };
                let start = bound(self, start, *start_closed);
                let end = bound(self, end, *end_closed);
                Value::Range(Box::new(Range { start, end }))
            }
        }
    }

    /// Whether `input` passes the unary test; `None` when the test cannot compare it.
    pub fn test(&mut self, test: &UnaryTest, input: &Value) -> Option<bool> {
        match test {
            UnaryTest::Any => Some(true),
            UnaryTest::Not(tests) => self.any_test(tests, input).map(|b| !b),
            UnaryTest::AnyOf(tests) => self.any_test(tests, input),
            UnaryTest::Compare(op, endpoint) => {
                let endpoint = self.with_input(input, |ev| ev.eval(endpoint));
                compare_op(*op, input, &endpoint)
            }
            UnaryTest::Range {
                start,
                start_closed,
                end,
                end_closed,
            } => {
                let (start, end) = self.with_input(input, |ev| (ev.eval(start), ev.eval(end)));
                if matches!(start, Value::Null) || matches!(end, Value::Null) {
                    return None;
                }
                let range = Range {
                    start: if *start_closed {
                        Bound::Closed(start)
                    } else {
                        Bound::Open(start)
                    },
                    end: if *end_closed {
                        Bound::Closed(end)
                    } else {
                        Bound::Open(end)
                    },
                };
                range.contains(input)
            }
            UnaryTest::Expr { expr, uses_input } => {
                let value = self.with_input(input, |ev| ev.eval(expr));
                if *uses_input {
                    return as_bool(&value);
                }
                match (&value, input) {
                    (Value::List(items), x) => {
                        let member = items.iter().any(|item| match item {
                            Value::Range(range) if !matches!(x, Value::Range(_)) => {
                                range.contains(x) == Some(true)
                            }
                            item => equal(x, item) == Some(true),
                        });
                        Some(member || equal(x, &value) == Some(true))
                    }
                    (Value::Range(range), x) => range.contains(x),
                    (v, x) => equal(x, v),
                }
            }
        }
    }

    fn any_test(&mut self, tests: &[UnaryTest], input: &Value) -> Option<bool> {
        let mut unknown = false;
        for test in tests {
            match self.test(test, input) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
        (!unknown).then_some(false)
    }

    fn with_input<T>(&mut self, input: &Value, run: impl FnOnce(&mut Self) -> T) -> T {
        let previous = self.input.replace(input.clone());
        let result = run(self);
        self.input = previous;
        result
    }

    fn filter(&mut self, target: &Ast, filter: &Ast) -> Value {
        let items = match self.eval(target) {
            Value::List(items) => items,
            Value::Null => return Value::Null,
            single => vec![single],
        };
        // A number picks one item (1-based; negative counts from the end).
        if let Ast::Literal(Value::Number(_)) | Ast::Neg(_) = filter {
            if let Value::Number(n) = self.eval(filter) {
                return index(&items, n);
            }
        }
        let mut kept = Vec::new();
        for item in items {
            let mark = self.locals.len();
            if let Value::Context(entries) = &item {
                self.locals.extend(entries.iter().cloned());
            }
            self.locals.push(("item".to_string(), item.clone()));
            let verdict = self.eval(filter);
            self.locals.truncate(mark);
            match verdict {
                Value::Bool(true) => kept.push(item),
                Value::Number(n) => return index(&kept_or(&kept, &item), n),
                _ => {}
            }
        }
        Value::List(kept)
    }
}

fn kept_or(kept: &[Value], item: &Value) -> Vec<Value> {
    if kept.is_empty() {
        vec![item.clone()]
    } else {
        kept.to_vec()
    }
}

fn index(items: &[Value], n: Decimal) -> Value {
    let Some(n) = n.to_i64() else {
        return Value::Null;
    };
    let position = match n {
        0 => return Value::Null,
        n if n > 0 => (n - 1) as usize,
        n => match items.len().checked_sub(n.unsigned_abs() as usize) {
            Some(p) => p,
            None => return Value::Null,
        },
    };
    items.get(position).cloned().unwrap_or(Value::Null)
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn bool_or_null(value: Option<bool>) -> Value {
    value.map(Value::Bool).unwrap_or(Value::Null)
}

/// `a op b` with FEEL's rules: equality is three-valued, ordering needs one ordered type.
pub fn compare_op(op: CmpOp, a: &Value, b: &Value) -> Option<bool> {
    match op {
        CmpOp::Eq => equal(a, b),
        CmpOp::Ne => equal(a, b).map(|e| !e),
        _ => {
            let ordering = compare(a, b)?;
            Some(match op {
                CmpOp::Lt => ordering == Ordering::Less,
                CmpOp::Le => ordering != Ordering::Greater,
                CmpOp::Gt => ordering == Ordering::Greater,
                _ => ordering != Ordering::Less,
            })
        }
    }
}

fn path(target: &Value, key: &str) -> Value {
    let number = |n: i64| Value::int(n);
    match target {
        Value::Context(_) => target.get(key).cloned().unwrap_or(Value::Null),
        Value::List(items) => Value::List(items.iter().map(|item| path(item, key)).collect()),
        Value::Date(d) => match key {
            "year" => number(d.year().into()),
            "month" => number(d.month().into()),
            "day" => number(d.day().into()),
            "weekday" => number(d.weekday().number_from_monday().into()),
            _ => Value::Null,
        },
        Value::DateTime(dt) => match key {
            "year" => number(dt.naive.year().into()),
            "month" => number(dt.naive.month().into()),
            "day" => number(dt.naive.day().into()),
            "weekday" => number(dt.naive.weekday().number_from_monday().into()),
            "hour" => number(dt.naive.hour().into()),
            "minute" => number(dt.naive.minute().into()),
            "second" => number(dt.naive.second().into()),
            _ => Value::Null,
        },
        Value::Time(t) => match key {
            "hour" => number(t.time.hour().into()),
            "minute" => number(t.time.minute().into()),
            "second" => number(t.time.second().into()),
            _ => Value::Null,
        },
        Value::YearMonth(m) => match key {
            "years" => number(m / 12),
            "months" => number(m % 12),
            _ => Value::Null,
        },
        Value::DayTime(n) => {
            let seconds = n / NANOS_PER_SECOND;
            let value = match key {
                "days" => seconds / 86_400,
                "hours" => (seconds % 86_400) / 3600,
                "minutes" => (seconds % 3600) / 60,
                "seconds" => seconds % 60,
                _ => return Value::Null,
            };
            number(value as i64)
        }
        Value::Range(range) => {
            let end = |bound: &Bound| match bound {
                Bound::Unbounded => Value::Null,
                Bound::Open(v) | Bound::Closed(v) => v.clone(),
            };
            match key {
                "start" => end(&range.start),
                "end" => end(&range.end),
                "start included" => Value::Bool(matches!(range.start, Bound::Closed(_))),
                "end included" => Value::Bool(matches!(range.end, Bound::Closed(_))),
                _ => Value::Null,
            }
        }
        _ => Value::Null,
    }
}

// ---- arithmetic ------------------------------------------------------------------------------

fn arith(op: ArithOp, a: &Value, b: &Value) -> Value {
    arith_checked(op, a, b).unwrap_or(Value::Null)
}

fn arith_checked(op: ArithOp, a: &Value, b: &Value) -> Option<Value> {
    use Value::*;
    match (op, a, b) {
        (_, Null, _) | (_, _, Null) => None,
        (ArithOp::Add, Number(x), Number(y)) => x.checked_add(*y).map(Number),
        (ArithOp::Sub, Number(x), Number(y)) => x.checked_sub(*y).map(Number),
        (ArithOp::Mul, Number(x), Number(y)) => x.checked_mul(*y).map(Number),
        (ArithOp::Div, Number(x), Number(y)) => x.checked_div(*y).map(Number),
        (ArithOp::Pow, Number(x), Number(y)) => power(*x, *y).map(Number),
        (ArithOp::Add, String(x), String(y)) => Some(String(format!("{x}{y}"))),
        (ArithOp::Add, DayTime(x), DayTime(y)) => x.checked_add(*y).map(DayTime),
        (ArithOp::Sub, DayTime(x), DayTime(y)) => x.checked_sub(*y).map(DayTime),
        (ArithOp::Add, YearMonth(x), YearMonth(y)) => x.checked_add(*y).map(YearMonth),
        (ArithOp::Sub, YearMonth(x), YearMonth(y)) => x.checked_sub(*y).map(YearMonth),
        (ArithOp::Mul, DayTime(x), Number(n)) | (ArithOp::Mul, Number(n), DayTime(x)) => {
            scale_nanos(*x, *n, false).map(DayTime)
        }
        (ArithOp::Div, DayTime(x), Number(n)) => scale_nanos(*x, *n, true).map(DayTime),
        (ArithOp::Mul, YearMonth(x), Number(n)) | (ArithOp::Mul, Number(n), YearMonth(x)) => {
            (Decimal::from(*x) * *n).round().to_i64().map(YearMonth)
        }
        (ArithOp::Div, YearMonth(x), Number(n)) => Decimal::from(*x)
            .checked_div(*n)
            .and_then(|d| d.round().to_i64())
            .map(YearMonth),
        (ArithOp::Div, DayTime(x), DayTime(y)) if *y != 0 => Decimal::from_i128_with_scale(*x, 0)
            .checked_div(Decimal::from_i128_with_scale(*y, 0))
            .map(Number),
        (ArithOp::Div, YearMonth(x), YearMonth(y)) if *y != 0 => {
            Decimal::from(*x).checked_div(Decimal::from(*y)).map(Number)
        }
        (ArithOp::Sub, Date(x), Date(y)) => {
            Some(DayTime(i128::from((*x - *y).num_days()) * NANOS_PER_DAY))
        }
        (ArithOp::Sub, DateTime(x), DateTime(y)) => date_time_difference(x, y),
        (ArithOp::Sub, Time(x), Time(y)) => {
            let nanos = (x.time - y.time).num_nanoseconds()?;
            Some(DayTime(nanos.into()))
        }
        (ArithOp::Add, Date(d), YearMonth(m)) | (ArithOp::Add, YearMonth(m), Date(d)) => {
            temporal::add_months(*d, *m).map(Date)
        }
        (ArithOp::Sub, Date(d), YearMonth(m)) => temporal::add_months(*d, -*m).map(Date),
        (ArithOp::Add, Date(d), DayTime(n)) | (ArithOp::Add, DayTime(n), Date(d)) => {
            shift(d.and_hms_opt(0, 0, 0)?, *n).map(|dt| Date(dt.date()))
        }
        (ArithOp::Sub, Date(d), DayTime(n)) => {
            shift(d.and_hms_opt(0, 0, 0)?, -*n).map(|dt| Date(dt.date()))
        }
        (ArithOp::Add, DateTime(dt), DayTime(n)) | (ArithOp::Add, DayTime(n), DateTime(dt)) => {
            shift(dt.naive, *n).map(|naive| {
                DateTime(super::value::DateTime {
                    naive,
                    zone: dt.zone,
                })
            })
        }
        (ArithOp::Sub, DateTime(dt), DayTime(n)) => shift(dt.naive, -*n).map(|naive| {
            DateTime(super::value::DateTime {
                naive,
                zone: dt.zone,
            })
        }),
        (ArithOp::Add, DateTime(dt), YearMonth(m)) | (ArithOp::Add, YearMonth(m), DateTime(dt)) => {
            months_of(dt, *m)
        }
        (ArithOp::Sub, DateTime(dt), YearMonth(m)) => months_of(dt, -*m),
        (ArithOp::Add, Time(t), DayTime(n)) | (ArithOp::Add, DayTime(n), Time(t)) => {
            Some(Time(shift_time(t, *n)))
        }
        (ArithOp::Sub, Time(t), DayTime(n)) => Some(Time(shift_time(t, -*n))),
        _ => None,
    }
}

fn power(base: Decimal, exponent: Decimal) -> Option<Decimal> {
    if exponent.fract().is_zero() {
        if let Some(e) = exponent.to_i64().filter(|e| e.unsigned_abs() <= 100_000) {
            let mut result = Decimal::ONE;
            let mut factor = base;
            let mut remaining = e.unsigned_abs();
            while remaining > 0 {
                if remaining & 1 == 1 {
                    result = result.checked_mul(factor)?;
                }
                remaining >>= 1;
                if remaining > 0 {
                    factor = factor.checked_mul(factor)?;
                }
            }
            return if e < 0 {
                Decimal::ONE.checked_div(result)
            } else {
                Some(result)
            };
        }
    }
    let value = base.to_f64()?.powf(exponent.to_f64()?);
    value
        .is_finite()
        .then(|| Decimal::from_f64(value))
        .flatten()
}

fn scale_nanos(nanos: i128, factor: Decimal, divide: bool) -> Option<i128> {
    let nanos = Decimal::from_i128_with_scale(nanos, 0);
    let scaled = if divide {
        nanos.checked_div(factor)?
    } else {
        nanos.checked_mul(factor)?
    };
    scaled.round().to_i128()
}

fn shift(naive: NaiveDateTime, nanos: i128) -> Option<NaiveDateTime> {
    let nanos = i64::try_from(nanos).ok()?;
    naive.checked_add_signed(chrono::Duration::nanoseconds(nanos))
}

fn shift_time(t: &Time, nanos: i128) -> Time {
    let within_day = nanos.rem_euclid(NANOS_PER_DAY) as i64;
    let (time, _) = t
        .time
        .overflowing_add_signed(chrono::Duration::nanoseconds(within_day));
    Time { time, zone: t.zone }
}

fn months_of(dt: &DateTime, months: i64) -> Option<Value> {
    let date = temporal::add_months(dt.naive.date(), months)?;
    Some(Value::DateTime(DateTime {
        naive: NaiveDateTime::new(date, dt.naive.time()),
        zone: dt.zone,
    }))
}

fn date_time_difference(x: &DateTime, y: &DateTime) -> Option<Value> {
    let (x, y) = match (x.utc(), y.utc()) {
        (Some(x), Some(y)) => (x, y),
        (None, None) => (x.naive, y.naive),
        _ => return None,
    };
    (x - y).num_nanoseconds().map(|n| Value::DayTime(n.into()))
}

// ---- built-in functions ----------------------------------------------------------------------

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn number(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn whole(value: &Value) -> Option<i64> {
    number(value).filter(|n| n.fract().is_zero())?.to_i64()
}

/// The items of a list argument, or the arguments themselves (`max(1, 2)` and `max([1, 2])`).
fn items(args: Vec<Value>) -> Vec<Value> {
    match <[Value; 1]>::try_from(args) {
        Ok([Value::List(items)]) => items,
        Ok([single]) => vec![single],
        Err(args) => args,
    }
}

/// Calls the built-in function `name`; unknown functions and wrong arguments give `null`.
pub fn call(name: &str, args: Vec<Value>) -> Value {
    call_checked(name, args).unwrap_or(Value::Null)
}

fn call_checked(name: &str, args: Vec<Value>) -> Option<Value> {
    let first = args.first();
    let second = args.get(1);
    Some(match (name, args.len()) {
        ("not", 1) => Value::Bool(!as_bool(first?)?),
        ("date", 1) => match first? {
            Value::String(s) => Value::Date(temporal::parse_date(s)?),
            Value::Date(d) => Value::Date(*d),
            Value::DateTime(dt) => Value::Date(dt.naive.date()),
            _ => return None,
        },
        ("date", 3) => Value::Date(chrono::NaiveDate::from_ymd_opt(
            i32::try_from(whole(first?)?).ok()?,
            u32::try_from(whole(second?)?).ok()?,
            u32::try_from(whole(args.get(2)?)?).ok()?,
        )?),
        ("time", 1) => match first? {
            Value::String(s) => Value::Time(temporal::parse_time(s)?),
            Value::Time(t) => Value::Time(*t),
            Value::DateTime(dt) => Value::Time(Time {
                time: dt.naive.time(),
                zone: dt.zone,
            }),
            _ => return None,
        },
        ("time", 3 | 4) => {
            let seconds = number(args.get(2)?)?;
            let nanos = (seconds.fract() * Decimal::from(1_000_000_000)).to_u32()?;
            let time = NaiveTime::from_hms_nano_opt(
                u32::try_from(whole(first?)?).ok()?,
                u32::try_from(whole(second?)?).ok()?,
                seconds.trunc().to_u32()?,
                nanos,
            )?;
            let zone = match args.get(3) {
                None | Some(Value::Null) => None,
                Some(Value::DayTime(n)) => {
                    Some(Zone::Offset(i32::try_from(n / NANOS_PER_SECOND).ok()?))
                }
                _ => return None,
            };
            Value::Time(Time { time, zone })
        }
        ("date and time", 1) => match first? {
            Value::String(s) => Value::DateTime(temporal::parse_date_time(s)?),
            Value::DateTime(dt) => Value::DateTime(*dt),
            Value::Date(d) => Value::DateTime(DateTime {
                naive: d.and_hms_opt(0, 0, 0)?,
                zone: None,
            }),
            _ => return None,
        },
        ("date and time", 2) => {
            let date = match first? {
                Value::Date(d) => *d,
                Value::DateTime(dt) => dt.naive.date(),
                _ => return None,
            };
            let Value::Time(time) = second? else {
                return None;
            };
            Value::DateTime(DateTime {
                naive: NaiveDateTime::new(date, time.time),
                zone: time.zone,
            })
        }
        ("duration", 1) => temporal::parse_duration(text(first?)?)?,
        ("years and months duration", 2) => {
            let date_of = |v: &Value| match v {
                Value::Date(d) => Some(*d),
                Value::DateTime(dt) => Some(dt.naive.date()),
                _ => None,
            };
            let (from, to) = (date_of(first?)?, date_of(second?)?);
            let mut months = i64::from(to.year() - from.year()) * 12 + i64::from(to.month())
                - i64::from(from.month());
            if months > 0 && to.day() < from.day() {
                months -= 1;
            } else if months < 0 && to.day() > from.day() {
                months += 1;
            }
            Value::YearMonth(months)
        }
        ("string", 1) => match first? {
            Value::Null => Value::Null,
            other => Value::String(other.to_string()),
        },
        ("number", 1) => match super::value::number_from_text(text(first?)?.trim()) {
            Value::Null => return None,
            n => n,
        },
        ("string length", 1) => Value::int(text(first?)?.chars().count() as i64),
        ("upper case", 1) => Value::String(text(first?)?.to_uppercase()),
        ("lower case", 1) => Value::String(text(first?)?.to_lowercase()),
        ("contains", 2) => Value::Bool(text(first?)?.contains(text(second?)?)),
        ("starts with", 2) => Value::Bool(text(first?)?.starts_with(text(second?)?)),
        ("ends with", 2) => Value::Bool(text(first?)?.ends_with(text(second?)?)),
        ("substring", 2 | 3) => {
            let chars: Vec<char> = text(first?)?.chars().collect();
            let start = whole(second?)?;
            let from = if start > 0 {
                (start - 1) as usize
            } else {
                chars.len().checked_sub(start.unsigned_abs() as usize)?
            };
            let length = match args.get(2) {
                Some(v) => usize::try_from(whole(v)?).ok()?,
                None => chars.len().saturating_sub(from),
            };
            Value::String(chars.iter().skip(from).take(length).collect())
        }
        ("substring before", 2) => {
            let (s, m) = (text(first?)?, text(second?)?);
            Value::String(s.find(m).map(|i| s[..i].to_string()).unwrap_or_default())
        }
        ("substring after", 2) => {
            let (s, m) = (text(first?)?, text(second?)?);
            Value::String(
                s.find(m)
                    .map(|i| s[i + m.len()..].to_string())
                    .unwrap_or_default(),
            )
        }
        ("abs", 1) => match first? {
            Value::Number(n) => Value::Number(n.abs()),
            Value::DayTime(n) => Value::DayTime(n.abs()),
            Value::YearMonth(n) => Value::YearMonth(n.abs()),
            _ => return None,
        },
        ("floor", 1) => Value::Number(number(first?)?.floor()),
        ("ceiling", 1) => Value::Number(number(first?)?.ceil()),
        ("decimal", 2) => {
            let scale = u32::try_from(whole(second?)?).ok()?;
            Value::Number(
                number(first?)?.round_dp_with_strategy(
                    scale,
                    rust_decimal::RoundingStrategy::MidpointNearestEven,
                ),
            )
        }
        ("modulo", 2) => {
            let (a, b) = (number(first?)?, number(second?)?);
            if b.is_zero() {
                return None;
            }
            Value::Number(a - b * (a / b).floor())
        }
        ("sqrt", 1) => {
            let n = number(first?)?.to_f64()?;
            if n < 0.0 {
                return None;
            }
            Value::Number(Decimal::from_f64(n.sqrt())?)
        }
        ("odd", 1) => Value::Bool(whole(first?)? % 2 != 0),
        ("even", 1) => Value::Bool(whole(first?)? % 2 == 0),
        ("min" | "max", n) if n > 0 => {
            let items = items(args);
            let wanted = if name == "min" {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let mut best = items.first()?.clone();
            for item in &items[1..] {
                if compare(item, &best)? == wanted {
                    best = item.clone();
                }
            }
            best
        }
        ("sum", n) if n > 0 => {
            let mut total = Decimal::ZERO;
            for item in items(args) {
                total = total.checked_add(number(&item)?)?;
            }
            Value::Number(total)
        }
        ("mean", n) if n > 0 => {
            let items = items(args);
            let mut total = Decimal::ZERO;
            for item in &items {
                total = total.checked_add(number(item)?)?;
            }
            Value::Number(total.checked_div(Decimal::from(items.len()))?)
        }
        ("count", 1) => match first? {
            Value::List(items) => Value::int(items.len() as i64),
            _ => return None,
        },
        ("list contains", 2) => match first? {
            Value::List(items) => Value::Bool(
                items
                    .iter()
                    .any(|i| equal(i, second.unwrap_or(&Value::Null)) == Some(true)),
            ),
            _ => return None,
        },
        ("append", n) if n > 0 => {
            let mut args = args.into_iter();
            let Some(Value::List(mut list)) = args.next() else {
                return None;
            };
            list.extend(args);
            Value::List(list)
        }
        ("concatenate", _) => {
            let mut out = Vec::new();
            for arg in args {
                let Value::List(items) = arg else {
                    return None;
                };
                out.extend(items);
            }
            Value::List(out)
        }
        ("is defined", 1) => Value::Bool(!matches!(first?, Value::Null)),
        ("day of week", 1) => {
            let date = match first? {
                Value::Date(d) => *d,
                Value::DateTime(dt) => dt.naive.date(),
                _ => return None,
            };
            Value::String(date.format("%A").to_string())
        }
        ("month of year", 1) => {
            let date = match first? {
                Value::Date(d) => *d,
                Value::DateTime(dt) => dt.naive.date(),
                _ => return None,
            };
            Value::String(date.format("%B").to_string())
        }
        _ => return None,
    })
}
