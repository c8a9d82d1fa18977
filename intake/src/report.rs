//! The intake report: per file what was read and how, every bad row with file, row, line and
//! reasons, and the totals of the batch.

use crate::align::SortBy;
use crate::amount::AmountError;
use crate::fields::Field;
use crate::mapping::Format;
use crate::record::Origin;
use crate::time::TimeError;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// What is wrong with a row. A row may have several problems; all are reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// No order id (the column is empty).
    #[error("no order id")]
    NoOrderId,
    /// An amount that cannot be read.
    #[error("column `{column}`: amount `{value}` {error}")]
    Amount {
        /// The column header.
        column: String,
        /// The cell (cut when long).
        value: String,
        /// Why.
        error: AmountError,
    },
    /// A currency that cannot be read.
    #[error("column `{column}`: `{value}` is not a currency")]
    Currency {
        /// The column header.
        column: String,
        /// The cell (cut when long).
        value: String,
    },
    /// The amount names one currency and the currency column another.
    #[error("the amount is in {amount} but column `{column}` says {currency}")]
    CurrencyMismatch {
        /// The currency column's header.
        column: String,
        /// The amount's currency.
        amount: String,
        /// The currency column's.
        currency: String,
    },
    /// A time that cannot be read.
    #[error("column `{column}`: `{value}` {error}")]
    Time {
        /// The column header.
        column: String,
        /// The cell (cut when long).
        value: String,
        /// Why.
        error: TimeError,
    },
    /// A field over [`Limits::max_field_bytes`](crate::Limits::max_field_bytes).
    #[error("column `{column}` is {bytes} bytes long, over the limit of {limit}")]
    FieldTooLong {
        /// The column header.
        column: String,
        /// The field's length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A CSV row with more or fewer fields than the header.
    #[error("has {found} fields, the header has {expected}")]
    FieldCount {
        /// Fields in the row.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A JSON record that is not an object.
    #[error("is not a JSON object")]
    NotAnObject,
    /// A JSONL line that is not JSON.
    #[error("is not JSON: {message}")]
    NotJson {
        /// The parser's message.
        message: String,
    },
    /// The order id was seen before with another customer id or creation date: the same order id
    /// for what looks like another order. The first record seen keeps the id.
    #[error("order {order_id} has {part} {here} here but {there} in {} row {}", first.file, first.row)]
    ConflictingId {
        /// The order id.
        order_id: String,
        /// What differs.
        part: IdPart,
        /// This row's value.
        here: String,
        /// The value the order id was first seen with.
        there: String,
        /// Where the order id was first seen with it.
        first: Origin,
    },
}

/// The parts of an order's identity besides its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdPart {
    /// The customer id.
    CustomerId,
    /// The creation date (day in the target zone).
    CreatedDate,
}

impl fmt::Display for IdPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdPart::CustomerId => "customer id",
            IdPart::CreatedDate => "creation date",
        })
    }
}

impl Problem {
    /// A short stable name of the kind of problem (`no_order_id`, `bad_amount`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::NoOrderId => "no_order_id",
            Problem::Amount { .. } => "bad_amount",
            Problem::Currency { .. } => "bad_currency",
            Problem::CurrencyMismatch { .. } => "currency_mismatch",
            Problem::Time { .. } => "bad_time",
            Problem::FieldTooLong { .. } => "field_too_long",
            Problem::FieldCount { .. } => "field_count",
            Problem::NotAnObject => "not_an_object",
            Problem::NotJson { .. } => "not_json",
            Problem::ConflictingId { .. } => "conflicting_id",
        }
    }
}

impl Serialize for Problem {
    /// `{"kind": "...", "message": "..."}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("Problem", 2)?;
        out.serialize_field("kind", self.kind())?;
        out.serialize_field("message", &self.to_string())?;
        out.end()
    }
}

/// A row that did not go through, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRow {
    /// The file name as given.
    pub file: String,
    /// The source the file is an export of.
    pub source: String,
    /// The record's number in the file, from 1.
    pub row: usize,
    /// The line it starts on, from 1.
    pub line: usize,
    /// Every problem, joined with `; `.
    pub reason: String,
    /// Every problem.
    pub problems: Vec<Problem>,
}

impl BadRow {
    /// A bad row at `origin` with these problems.
    pub(crate) fn new(origin: &Origin, problems: Vec<Problem>) -> BadRow {
        let reason = problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        BadRow {
            file: origin.file.clone(),
            source: origin.source.clone(),
            row: origin.row,
            line: origin.line,
            reason,
            problems,
        }
    }
}

/// What was read from one file, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The file name as given.
    pub file: String,
    /// The source it is an export of (from the mapping, else from its name).
    pub source: String,
    /// How it was read.
    pub format: Format,
    /// The encoding it was decoded from.
    pub encoding: String,
    /// Whether it started with a byte order mark.
    pub bom: bool,
    /// The CSV delimiter (named or sniffed).
    pub delimiter: Option<String>,
    /// The zone its zone-less times were read in.
    pub time_zone: String,
    /// The column each field came from.
    pub columns: BTreeMap<Field, String>,
    /// Columns that give no field.
    pub ignored_columns: Vec<String>,
    /// Records read (blank rows not counted).
    pub rows: usize,
    /// Records that went through.
    pub good_rows: usize,
    /// Records that did not (each is in the report's `bad_rows`).
    pub bad_rows: usize,
    /// Rows with nothing in them, skipped.
    pub blank_rows: usize,
}

/// The batch's totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Files read.
    pub files: usize,
    /// Records read.
    pub rows: usize,
    /// Records that went through.
    pub good_rows: usize,
    /// Records that did not.
    pub bad_rows: usize,
    /// Blank rows skipped.
    pub blank_rows: usize,
    /// Aligned orders.
    pub orders: usize,
    /// Aligned orders made of more than one record.
    pub merged_orders: usize,
    /// Fields on which an order's records disagreed (the newest record's value was kept).
    pub conflicts: usize,
}

/// The intake report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The totals.
    pub totals: Totals,
    /// The time the orders are sorted by.
    pub sorted_by: SortBy,
    /// Per file.
    pub files: Vec<FileReport>,
    /// Every bad row, by file (in the order the files were given) and row.
    pub bad_rows: Vec<BadRow>,
}
