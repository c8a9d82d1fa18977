//! Flowbot intake: reads order exports from ERP systems (CSV with any delimiter, UTF-8 with or
//! without BOM or GBK/GB18030; JSON; JSON Lines), cleans every row into typed fields (exact
//! two-place amounts with their currency, times in one zone, trimmed and width-folded text),
//! aligns the records of the same order from several sources (the newest record wins, field by
//! field, conflicts recorded) and sorts the orders by creation, update or payment time. Rows that
//! cannot be used are reported with file, row, line and reasons; they never stop the good ones.
//!
//! ```
//! use flowbot_intake::{align, read_bytes, Options, SortBy};
//!
//! let options = Options::default();
//! let orders = "order_id;customer;amount;updated_at\nSO-1;ACME;\"1,234.5\";2026-12-01T08:00:00Z\n;x;1;\n";
//! let payments = r#"[{"orderId": "SO-1", "totalAmount": "USD 1,234.50", "paidAt": 1796115600}]"#;
//! let files = vec![
//!     read_bytes("orders.csv", orders.as_bytes(), &options).unwrap(),
//!     read_bytes("finance.json", payments.as_bytes(), &options).unwrap(),
//! ];
//! let batch = align(files, SortBy::Created);
//! assert_eq!(batch.orders.len(), 1);
//! assert_eq!(batch.report.bad_rows[0].reason, "no order id");
//! let line = serde_json::to_string(&batch.orders[0]).unwrap();
//! assert!(line.starts_with(r#"{"order_id":"SO-1","customer_id":null,"customer":"ACME","amount":1234.50,"currency":"USD""#));
//! ```
//!
//! The pure entry point [`read_bytes`] takes a file's name and bytes and never panics on them;
//! [`read_path`] reads a file first (its size checked before reading). See `docs/intake.md`.

mod align;
mod amount;
mod clean;
mod decode;
mod error;
mod fields;
mod limits;
mod mapping;
mod record;
mod report;
mod table;
mod text;
mod time;

pub use align::{align, sort, Batch, Conflict, Order, Replaced, SortBy};
pub use amount::{parse_amount, parse_currency, AmountError, AmountStyle};
pub use error::{FileError, ReadError};
pub use fields::Field;
pub use limits::Limits;
pub use mapping::{infer_source, Column, Format, Mapping, MappingError, MappingProblem, Settings};
pub use record::{Origin, Record, Value};
pub use report::{BadRow, FileReport, IdPart, Problem, Report, Totals};
pub use time::{parse_time, TimeError, TimeStyle};

/// The time zone type of [`Options::time_zone`] (chrono-tz's), so callers need not depend on it.
pub use chrono_tz::Tz;
use clean::{Cleaner, ColumnMap};
use std::path::Path;

/// Everything that decides how files are read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Per-file settings and column names.
    pub mapping: Mapping,
    /// Bounds on each file.
    pub limits: Limits,
    /// The zone every time is converted into (and zone-less times are read in, unless the
    /// mapping gives the file its own).
    pub time_zone: Tz,
}

/// One file, read and cleaned: its good records and bad rows in file order, and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    /// The rows that went through.
    pub records: Vec<Record>,
    /// The rows that did not.
    pub bad_rows: Vec<BadRow>,
    /// What was read and how.
    pub report: FileReport,
}

/// Reads one file from its bytes. `name` is the file name (it selects the mapping entry, the
/// source when the mapping names none, and the format by extension). Bad rows are part of the
/// result; an error means the file as a whole cannot be read.
pub fn read_bytes(name: &str, bytes: &[u8], options: &Options) -> Result<FileRead, ReadError> {
    read(name, bytes, options).map_err(|error| ReadError {
        file: name.to_string(),
        error,
    })
}

/// Reads one file from disk (refused before reading when it is over the size limit).
pub fn read_path(path: &Path, options: &Options) -> Result<FileRead, ReadError> {
    let name = path.display().to_string();
    let fail = |error: FileError| ReadError {
        file: name.clone(),
        error,
    };
    let size = std::fs::metadata(path).map_err(|e| fail(e.into()))?.len();
    if size > options.limits.max_file_bytes {
        return Err(fail(FileError::TooLarge {
            size,
            limit: options.limits.max_file_bytes,
        }));
    }
    let bytes = std::fs::read(path).map_err(|e| fail(e.into()))?;
    read_bytes(&name, &bytes, options)
}

fn read(name: &str, bytes: &[u8], options: &Options) -> Result<FileRead, FileError> {
    let limits = &options.limits;
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > limits.max_file_bytes {
        return Err(FileError::TooLarge {
            size,
            limit: limits.max_file_bytes,
        });
    }
    let settings = options.mapping.settings_for(name);
    let decoded = decode::decode(bytes, settings.encoding)?;
    let text = decoded.text.as_ref();
    let format = settings
        .format
        .or_else(|| format_of_name(name))
        .unwrap_or_else(|| format_of_text(text));
    let table = match format {
        Format::Csv => table::read_csv(text, settings.delimiter, limits)?,
        Format::Json => table::read_json(text, settings.records.as_deref(), limits)?,
        Format::Jsonl => table::read_jsonl(text, limits)?,
    };
    let columns = ColumnMap::new(&table.headers, &settings)?;
    let source = settings
        .source
        .clone()
        .unwrap_or_else(|| infer_source(name));
    let source_zone = settings.time_zone.unwrap_or(options.time_zone);
    let headers = table.headers.clone();
    let (blank_rows, delimiter) = (table.blank_rows, table.delimiter);
    let cleaner = Cleaner {
        file: name,
        source: &source,
        headers: &headers,
        columns: &columns,
        amounts: AmountStyle {
            decimal_separator: settings.decimal_separator.unwrap_or('.'),
            default_currency: settings.currency.clone(),
        },
        times: TimeStyle {
            source_zone,
            target_zone: options.time_zone,
            format: settings.date_format.clone(),
        },
        limits,
    };
    let (records, bad_rows) = cleaner.clean_table(table);
    let rows = records.len() + bad_rows.len();
    let report = FileReport {
        file: name.to_string(),
        source,
        format,
        encoding: decoded.encoding.to_string(),
        bom: decoded.bom,
        delimiter: delimiter.map(|d| char::from(d).to_string()),
        time_zone: source_zone.name().to_string(),
        columns: columns.named(&headers),
        ignored_columns: columns.ignored,
        rows,
        good_rows: records.len(),
        bad_rows: bad_rows.len(),
        blank_rows,
    };
    Ok(FileRead {
        records,
        bad_rows,
        report,
    })
}

/// The format a file's extension names.
fn format_of_name(name: &str) -> Option<Format> {
    let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match extension.as_str() {
        "csv" | "tsv" | "psv" | "txt" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        _ => None,
    }
}

/// The format of a file without a known extension: JSON when it is one JSON value starting
/// with `[` or `{`, JSON Lines when it starts with `{` but is not, CSV otherwise.
fn format_of_text(text: &str) -> Format {
    match text.trim_start().as_bytes().first() {
        Some(b'[' | b'{') if serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok() => {
            Format::Json
        }
        Some(b'{') => Format::Jsonl,
        _ => Format::Csv,
    }
}

#[cfg(test)]
mod tests;
