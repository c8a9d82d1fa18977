//! FEEL values: what expressions produce and unary tests compare, with FEEL's equality (three
//! valued: `None` is FEEL `null`) and ordering, and the conversions to and from instance
//! variables (JSON).

use super::temporal;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::fmt;

/// A time zone of a time or a date and time: a fixed offset or an IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// A fixed offset east of UTC, in seconds (`Z` is 0).
    Offset(i32),
    /// An IANA zone (`@Europe/Paris`).
    Named(chrono_tz::Tz),
}

/// A time of day, with or without a zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Time {
    /// The local time.
    pub time: NaiveTime,
    /// Its zone, when given.
    pub zone: Option<Zone>,
}

/// A date and time, with or without a zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DateTime {
    /// The local date and time.
    pub naive: NaiveDateTime,
    /// Its zone, when given.
    pub zone: Option<Zone>,
}

impl DateTime {
    /// The instant in UTC, when the value has a zone.
    pub fn utc(&self) -> Option<NaiveDateTime> {
        match self.zone? {
            Zone::Offset(seconds) => Some(self.naive - chrono::Duration::seconds(seconds.into())),
            Zone::Named(tz) => {
                use chrono::TimeZone;
                tz.from_local_datetime(&self.naive)
                    .earliest()
                    .map(|dt| dt.naive_utc())
            }
        }
    }
}

/// One end of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// No end (`< 10` has no start; `null` as an endpoint).
    Unbounded,
    /// The end value, excluded (`(` or `]` at the start, `)` or `[` at the end).
    Open(Value),
    /// The end value, included.
    Closed(Value),
}

/// A range (`[1..10)`, `< 5`).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    /// The low end.
    pub start: Bound,
    /// The high end.
    pub end: Bound,
}

impl Range {
    /// Whether `value` lies in the range; `None` when the types do not compare.
    pub fn contains(&self, value: &Value) -> Option<bool> {
        let low = match &self.start {
            Bound::Unbounded => true,
            Bound::Open(v) => compare(value, v)? == Ordering::Greater,
            Bound::Closed(v) => compare(value, v)? != Ordering::Less,
        };
        let high = match &self.end {
            Bound::Unbounded => true,
            Bound::Open(v) => compare(value, v)? == Ordering::Less,
            Bound::Closed(v) => compare(value, v)? != Ordering::Greater,
        };
        Some(low && high)
    }
}

/// A FEEL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`: absent, or the result of an invalid operation.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A decimal number.
    Number(Decimal),
    /// Text.
    String(String),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day.
    Time(Time),
    /// A date and time.
    DateTime(DateTime),
    /// A days-and-time duration, in nanoseconds.
    DayTime(i128),
    /// A years-and-months duration, in months.
    YearMonth(i64),
    /// A list.
    List(Vec<Value>),
    /// A context (an ordered mapping of names to values).
    Context(Vec<(String, Value)>),
    /// A range.
    Range(Box<Range>),
}

impl Value {
    /// The FEEL type name (`number`, `string`, `date and time`, ...), for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Date(_) => "date",
            Value::Time(_) => "time",
            Value::DateTime(_) => "date and time",
            Value::DayTime(_) => "days and time duration",
            Value::YearMonth(_) => "years and months duration",
            Value::List(_) => "list",
            Value::Context(_) => "context",
            Value::Range(_) => "range",
        }
    }

    /// An entry of a context by name.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Context(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A number from an integer.
    pub fn int(n: i64) -> Value {
        Value::Number(Decimal::from(n))
    }

    /// Reads an instance variable (JSON) as a FEEL value. Numbers keep the digits JSON wrote;
    /// text stays text (a decision input's `typeRef` may turn it into a date, see
    /// [`Value::coerce`]).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number_from_text(&n.to_string()),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Context(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// The value as an instance variable: numbers as JSON numbers (whole numbers as integers),
    /// dates, times and durations as their ISO 8601 text, ranges as text.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Context(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            other => serde_json::Value::String(other.to_string()),
        }
    }

    /// Converts text to the type a decision declares (`typeRef`): `date`, `time`, `dateTime`,
    /// `duration` kinds and `number` read from text; other values are returned unchanged.
    pub fn coerce(self, type_ref: Option<&str>) -> Value {
        let (Some(type_ref), Value::String(text)) = (type_ref, &self) else {
            return self;
        };
        let converted = match type_ref.trim().trim_start_matches("feel:") {
            "date" => temporal::parse_date(text).map(Value::Date),
            "time" => temporal::parse_time(text).map(Value::Time),
            "dateTime" | "date and time" => temporal::parse_date_time(text).map(Value::DateTime),
            "dayTimeDuration"
            | "days and time duration"
            | "yearMonthDuration"
            | "years and months duration"
            | "duration" => temporal::parse_duration(text),
            _ => None,
        };
        converted.unwrap_or(self)
    }
}

/// Reads a number written as decimal text (with an optional exponent); `null` when it is not one.
pub fn number_from_text(text: &str) -> Value {
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        text.parse::<Decimal>().ok()
    };
    match parsed {
        Some(n) => Value::Number(n.normalize()),
        None => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Decimal::from_f64_retain(f)
                .map(|d| Value::Number(d.normalize()))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
    }
}

fn number_to_json(n: Decimal) -> serde_json::Value {
    let n = n.normalize();
    if n.scale() == 0 {
        if let Some(i) = n.to_i64() {
            return serde_json::Value::from(i);
        }
    }
    match n.to_string().parse::<f64>() {
        Ok(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

/// FEEL equality: `Some(true|false)`, or `None` (null) when the two values are of types that do
/// not compare. `null = null` is true and `null = x` false.
pub fn equal(a: &Value, b: &Value) -> Option<bool> {
    use Value::*;
    Some(match (a, b) {
        (Null, Null) => true,
        (Null, _) | (_, Null) => false,
        (Bool(x), Bool(y)) => x == y,
        (Number(x), Number(y)) => x == y,
        (String(x), String(y)) => x == y,
        (Date(x), Date(y)) => x == y,
        (Time(x), Time(y)) => compare_times(x, y)
            .map(|o| o == Ordering::Equal)
            .unwrap_or(false),
        (DateTime(x), DateTime(y)) => match (x.utc(), y.utc()) {
            (Some(x), Some(y)) => x == y,
            (None, None) => x.naive == y.naive,
            _ => false,
        },
        (DayTime(x), DayTime(y)) => x == y,
        (YearMonth(x), YearMonth(y)) => x == y,
        (List(x), List(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            for (p, q) in x.iter().zip(y) {
                if !equal(p, q)? {
                    return Some(false);
                }
            }
            true
        }
        (Context(x), Context(y)) => {
            if x.len() != y.len() {
                return Some(false);
            }
            for (key, p) in x {
                match y.iter().find(|(k, _)| k == key) {
                    Some((_, q)) if equal(p, q)? => {}
                    _ => return Some(false),
                }
            }
            true
        }
        (Range(x), Range(y)) => bounds_equal(&x.start, &y.start)? && bounds_equal(&x.end, &y.end)?,
        _ => return None,
    })
}

fn bounds_equal(a: &Bound, b: &Bound) -> Option<bool> {
    match (a, b) {
        (Bound::Unbounded, Bound::Unbounded) => Some(true),
        (Bound::Open(x), Bound::Open(y)) | (Bound::Closed(x), Bound::Closed(y)) => equal(x, y),
        _ => Some(false),
    }
}

/// FEEL ordering of two values of one ordered type (numbers, strings, dates, times, dates and
/// times, durations of one kind); `None` otherwise.
pub fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Number(x), Number(y)) => Some(x.cmp(y)),
        (String(x), String(y)) => Some(x.cmp(y)),
        (Date(x), Date(y)) => Some(x.cmp(y)),
        (Time(x), Time(y)) => compare_times(x, y),
        (DateTime(x), DateTime(y)) => match (x.utc(), y.utc()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            (None, None) => Some(x.naive.cmp(&y.naive)),
            _ => None,
        },
        (DayTime(x), DayTime(y)) => Some(x.cmp(y)),
        (YearMonth(x), YearMonth(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare_times(x: &Time, y: &Time) -> Option<Ordering> {
    match (x.zone, y.zone) {
        (None, None) => Some(x.time.cmp(&y.time)),
        (Some(Zone::Offset(a)), Some(Zone::Offset(b))) => {
            let x = x.time - chrono::Duration::seconds(a.into());
            let y = y.time - chrono::Duration::seconds(b.into());
            Some(x.cmp(&y))
        }
        (Some(a), Some(b)) if a == b => Some(x.time.cmp(&y.time)),
        _ => None,
    }
}

impl fmt::Display for Value {
    /// FEEL's `string()` of a value: text as it is, dates and durations in ISO 8601.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{}", n.normalize()),
            Value::String(s) => write!(f, "{s}"),
            Value::Date(d) => write!(f, "{}", temporal::format_date(d)),
            Value::Time(t) => write!(f, "{}", temporal::format_time(t)),
            Value::DateTime(dt) => write!(f, "{}", temporal::format_date_time(dt)),
            Value::DayTime(n) => write!(f, "{}", temporal::format_day_time(*n)),
            Value::YearMonth(m) => write!(f, "{}", temporal::format_year_month(*m)),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write_literal(f, item)?;
                }
                write!(f, "]")
            }
            Value::Context(entries) => {
                write!(f, "{{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: ")?;
                    write_literal(f, v)?;
                }
                write!(f, "}}")
            }
            Value::Range(range) => {
                let (open, low) = match &range.start {
                    Bound::Unbounded => ("(", Value::Null),
                    Bound::Open(v) => ("(", v.clone()),
                    Bound::Closed(v) => ("[", v.clone()),
                };
                let (close, high) = match &range.end {
                    Bound::Unbounded => (")", Value::Null),
                    Bound::Open(v) => (")", v.clone()),
                    Bound::Closed(v) => ("]", v.clone()),
                };
                write!(f, "{open}")?;
                write_literal(f, &low)?;
                write!(f, "..")?;
                write_literal(f, &high)?;
                write!(f, "{close}")
            }
        }
    }
}

/// Writes a value inside a list or context: text quoted.
fn write_literal(f: &mut fmt::Formatter<'_>, value: &Value) -> fmt::Result {
    match value {
        Value::String(s) => write!(f, "{s:?}"),
        other => write!(f, "{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_their_digits() {
        let v = Value::from_json(&serde_json::json!(0.1));
        assert_eq!(v, Value::Number("0.1".parse().unwrap()));
        assert_eq!(Value::int(12).to_json(), serde_json::json!(12));
        assert_eq!(
            Value::Number("2.50".parse().unwrap()).to_json(),
            serde_json::json!(2.5)
        );
    }

    #[test]
    fn equality_is_three_valued() {
        assert_eq!(equal(&Value::Null, &Value::Null), Some(true));
        assert_eq!(equal(&Value::int(1), &Value::Null), Some(false));
        assert_eq!(equal(&Value::int(1), &Value::String("1".into())), None);
        assert_eq!(
            equal(
                &Value::Number("0".parse().unwrap()),
                &Value::Number("0.00".parse().unwrap())
            ),
            Some(true)
        );
    }

    #[test]
    fn text_becomes_a_date_when_the_type_says_so() {
        let v = Value::String("2024-02-29".into()).coerce(Some("date"));
        assert!(matches!(v, Value::Date(_)));
        let v = Value::String("soon".into()).coerce(Some("date"));
        assert_eq!(v, Value::String("soon".into()));
    }
}
