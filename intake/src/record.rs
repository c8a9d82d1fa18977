//! One cleaned row of one file: its typed field values and where it came from.

use crate::amount::amount_text;
use crate::fields::Field;
use crate::time::time_text;
use chrono::DateTime;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// A cleaned field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Text: trimmed, whitespace collapsed, full-width forms folded.
    Text(String),
    /// An amount with exactly two decimal places.
    Amount(Decimal),
    /// A time in the target zone.
    Time(DateTime<Tz>),
}

impl Value {
    /// The value as text: the text itself, `1234.50`, or RFC 3339.
    pub fn text(&self) -> String {
        match self {
            Value::Text(text) => text.clone(),
            Value::Amount(amount) => amount_text(amount),
            Value::Time(time) => time_text(time),
        }
    }
}

impl Serialize for Value {
    /// Text and times as JSON strings; amounts as JSON numbers written from their exact decimal
    /// text (`1234.50`), never through a float.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Amount(amount) => RawValue::from_string(amount_text(amount))
                .map_err(S::Error::custom)?
                .serialize(serializer),
            Value::Text(text) => serializer.serialize_str(text),
            Value::Time(time) => serializer.serialize_str(&time_text(time)),
        }
    }
}

/// Where a record came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// The file name as given.
    pub file: String,
    /// The source system the file is an export of (`order_system`, `sales`, `finance`, …).
    pub source: String,
    /// The record's number among the file's records, from 1 (a CSV header is not a record).
    pub row: usize,
    /// The line of the file the record starts on, from 1.
    pub line: usize,
}

/// One good row of one file, cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the row came from.
    pub origin: Origin,
    values: [Option<Value>; Field::COUNT],
}

impl Record {
    /// A record with the given values (the order id must be among them).
    pub(crate) fn new(origin: Origin, values: [Option<Value>; Field::COUNT]) -> Record {
        Record { origin, values }
    }

    /// The value of a field, if the row had one.
    pub fn get(&self, field: Field) -> Option<&Value> {
        self.values[field.index()].as_ref()
    }

    /// The text of a text field (`order_id`, `customer_id`, `customer`, `currency`, `status`).
    pub fn text(&self, field: Field) -> Option<&str> {
        match self.get(field) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// The time of a time field.
    pub fn time(&self, field: Field) -> Option<DateTime<Tz>> {
        match self.get(field) {
            Some(Value::Time(time)) => Some(*time),
            _ => None,
        }
    }

    /// The order id (every record has one).
    pub fn order_id(&self) -> &str {
        self.text(Field::OrderId).unwrap_or_default()
    }
}
