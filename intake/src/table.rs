//! Decoded text to a table of raw cells: a header and rows, each row with its record number and
//! line. CSV and JSON/JSONL readers fill the same shape; rows that are broken in a way only the
//! reader sees (a JSONL line that is not JSON, a CSV row with the wrong number of fields) come
//! back as problems of their row.

use crate::error::FileError;
use crate::limits::Limits;
use crate::report::Problem;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};

/// A file's raw cells.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Column headers, in file order (for JSON: keys in order of first appearance).
    pub headers: Vec<String>,
    /// The rows that could be split into cells.
    pub rows: Vec<TableRow>,
    /// Rows broken before they could be split into cells: (row, line, problem).
    pub broken: Vec<(usize, usize, Problem)>,
    /// Rows with nothing in them (every cell empty), skipped.
    pub blank_rows: usize,
    /// The CSV delimiter used.
    pub delimiter: Option<u8>,
}

/// One row's cells, by column; `None` where a JSON record has no such key or holds `null`.
#[derive(Debug)]
pub(crate) struct TableRow {
    /// The record's number in the file, from 1.
    pub row: usize,
    /// The line the record starts on, from 1.
    pub line: usize,
    /// The cells, one per header.
    pub cells: Vec<Option<String>>,
}

/// Delimiters tried when the mapping names none, in order of preference.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
/// Records looked at to choose a delimiter.
const SNIFF_RECORDS: usize = 20;

/// Reads delimited text with a header row; `delimiter` is sniffed when `None`.
pub(crate) fn read_csv(
    text: &str,
    delimiter: Option<u8>,
    limits: &Limits,
) -> Result<Table, FileError> {
    let delimiter = delimiter.unwrap_or_else(|| sniff_delimiter(text));
    let mut reader = csv_reader(text, delimiter);
    let mut records = reader.records();
    let header = match records.next() {
        Some(record) => record.map_err(csv_error)?,
        None => return Err(FileError::Empty),
    };
    if header.len() > limits.max_columns {
        return Err(FileError::TooManyColumns {
            limit: limits.max_columns,
        });
    }
    let mut table = Table {
        headers: header.iter().map(str::to_string).collect(),
        delimiter: Some(delimiter),
        ..Table::default()
    };
    for (index, record) in records.enumerate() {
        let record = record.map_err(csv_error)?;
        let row = index + 1;
        if row > limits.max_rows {
            return Err(FileError::TooManyRows {
                limit: limits.max_rows,
            });
        }
        let line = record.position().map_or(0, |position| {
            usize::try_from(position.line()).unwrap_or(usize::MAX)
        });
        if record.iter().all(|cell| cell.trim().is_empty()) {
            table.blank_rows += 1;
        } else if record.len() != table.headers.len() {
            let problem = Problem::FieldCount {
                found: record.len(),
                expected: table.headers.len(),
            };
            table.broken.push((row, line, problem));
        } else {
            table.rows.push(TableRow {
                row,
                line,
                cells: record.iter().map(|cell| Some(cell.to_string())).collect(),
            });
        }
    }
    Ok(table)
}

fn csv_reader(text: &str, delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
}

fn csv_error(error: csv::Error) -> FileError {
    let line = error.position().map_or(0, csv::Position::line);
    FileError::Csv {
        line,
        message: error.to_string(),
    }
}

/// The delimiter that splits the first records into the same number of fields most often, with
/// the most fields; `,` when none splits the header.
pub(crate) fn sniff_delimiter(text: &str) -> u8 {
    let mut best = (b',', (0, 0));
    for delimiter in DELIMITERS {
        let counts: Vec<usize> = csv_reader(text, delimiter)
            .records()
            .take(SNIFF_RECORDS)
            .map_while(Result::ok)
            .map(|r| r.len())
            .collect();
        let Some(&header) = counts.first() else {
            continue;
        };
        if header < 2 {
            continue;
        }
        let agreeing = counts.iter().filter(|&&count| count == header).count();
        if (agreeing, header) > best.1 {
            best = (delimiter, (agreeing, header));
        }
    }
    best.0
}

/// Reads JSON: an array of objects, or an object holding one array of objects (the mapping's
/// `records` names which when it holds several).
pub(crate) fn read_json(
    text: &str,
    records_key: Option<&str>,
    limits: &Limits,
) -> Result<Table, FileError> {
    let root: &RawValue = serde_json::from_str(text).map_err(json_error)?;
    let items: Vec<&RawValue> = match root.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(root.get()).map_err(json_error)?,
        Some(b'{') => {
            let object: BTreeMap<String, &RawValue> =
                serde_json::from_str(root.get()).map_err(json_error)?;
            let array: &RawValue =
                match records_key {
                    Some(key) => object.get(key).filter(|value| is_array(value)).ok_or(
                        FileError::NoArray {
                            key: key.to_string(),
                        },
                    )?,
                    None => {
                        let arrays: Vec<(&String, &RawValue)> = object
                            .iter()
                            .filter(|(_, value)| is_array(value))
                            .map(|(key, value)| (key, *value))
                            .collect();
                        match arrays.as_slice() {
                            [(_, array)] => array,
                            [] => return Err(FileError::NotRecords),
                            several => {
                                let keys = several
                                    .iter()
                                    .map(|(key, _)| key.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                return Err(FileError::SeveralArrays { keys });
                            }
                        }
                    }
                };
            serde_json::from_str(array.get()).map_err(json_error)?
        }
        _ => return Err(FileError::NotRecords),
    };
    if items.len() > limits.max_rows {
        return Err(FileError::TooManyRows {
            limit: limits.max_rows,
        });
    }
    let lines = LineIndex::new(text);
    let mut builder = JsonTable::new(limits);
    for (index, item) in items.into_iter().enumerate() {
        let line = lines.line_of(text, item.get());
        match serde_json::from_str::<BTreeMap<String, &RawValue>>(item.get()) {
            Ok(object) => builder.push(index + 1, line, object)?,
            Err(_) => builder
                .table
                .broken
                .push((index + 1, line, Problem::NotAnObject)),
        }
    }
    Ok(builder.finish())
}

/// Reads JSON Lines: one object per non-blank line; a line that is not a JSON object is a bad row.
pub(crate) fn read_jsonl(text: &str, limits: &Limits) -> Result<Table, FileError> {
    let mut builder = JsonTable::new(limits);
    let mut row = 0;
    for (index, line_text) in text.lines().enumerate() {
        if line_text.trim().is_empty() {
            continue;
        }
        row += 1;
        if row > limits.max_rows {
            return Err(FileError::TooManyRows {
                limit: limits.max_rows,
            });
        }
        match serde_json::from_str::<BTreeMap<String, &RawValue>>(line_text) {
            Ok(object) => builder.push(row, index + 1, object)?,
            Err(error) if error.is_data() => {
                builder
                    .table
                    .broken
                    .push((row, index + 1, Problem::NotAnObject))
            }
            Err(error) => builder.table.broken.push((
                row,
                index + 1,
                Problem::NotJson {
                    message: error.to_string(),
                },
            )),
        }
    }
    Ok(builder.finish())
}

fn is_array(value: &RawValue) -> bool {
    value.get().starts_with('[')
}

fn json_error(error: serde_json::Error) -> FileError {
    FileError::Json {
        line: error.line(),
        column: error.column(),
        message: error.to_string(),
    }
}

/// Collects JSON records into a table whose columns are the keys in order of first appearance.
struct JsonTable<'l> {
    table: Table,
    columns: HashMap<String, usize>,
    limits: &'l Limits,
}

impl<'l> JsonTable<'l> {
    fn new(limits: &'l Limits) -> Self {
        JsonTable {
            table: Table::default(),
            columns: HashMap::new(),
            limits,
        }
    }

    fn push(
        &mut self,
        row: usize,
        line: usize,
        object: BTreeMap<String, &RawValue>,
    ) -> Result<(), FileError> {
        let mut cells = vec![None; self.table.headers.len()];
        for (key, value) in object {
            let column = match self.columns.get(&key) {
                Some(&column) => column,
                None => {
                    if self.table.headers.len() == self.limits.max_columns {
                        return Err(FileError::TooManyColumns {
                            limit: self.limits.max_columns,
                        });
                    }
                    self.table.headers.push(key.clone());
                    self.columns.insert(key, self.table.headers.len() - 1);
                    cells.push(None);
                    self.table.headers.len() - 1
                }
            };
            cells[column] = cell_text(value);
        }
        if !cells
            .iter()
            .any(|cell| cell.as_deref().is_some_and(|text| !text.trim().is_empty()))
        {
            self.table.blank_rows += 1;
        } else {
            self.table.rows.push(TableRow { row, line, cells });
        }
        Ok(())
    }

    /// The table, every row with a cell for every column.
    fn finish(mut self) -> Table {
        let columns = self.table.headers.len();
        for row in &mut self.table.rows {
            row.cells.resize(columns, None);
        }
        self.table
    }
}

/// A JSON value as cell text: strings unescaped, numbers and booleans as written (so amounts
/// keep their exact digits), `null` as no value, objects and arrays as their JSON text.
fn cell_text(value: &RawValue) -> Option<String> {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw).ok(),
        Some(b'n') => None,
        _ => Some(raw.to_string()),
    }
}

/// Line starts of a text, to turn a position into a line number.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        LineIndex(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(at, _)| at + 1))
                .collect(),
        )
    }

    /// The line (from 1) on which `part`, a slice of `text`, starts.
    fn line_of(&self, text: &str, part: &str) -> usize {
        let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        self.0.partition_point(|&start| start <= offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(table: &Table) -> Vec<Vec<&str>> {
        table
            .rows
            .iter()
            .map(|row| {
                row.cells
                    .iter()
                    .map(|c| c.as_deref().unwrap_or("<none>"))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn delimiters_are_sniffed() {
        for delimiter in [",", ";", "\t", "|"] {
            let text = ["order_id", "customer", "amount"].join(delimiter)
                + "\n"
                + &["SO-1", "ACME", "1234.50"].join(delimiter)
                + "\n";
            assert_eq!(
                sniff_delimiter(&text),
                delimiter.as_bytes()[0],
                "{delimiter:?}"
            );
            let table = read_csv(&text, None, &Limits::default()).unwrap();
            assert_eq!(table.headers, ["order_id", "customer", "amount"]);
            assert_eq!(cells(&table), [["SO-1", "ACME", "1234.50"]]);
        }
    }

    #[test]
    fn sniffing_is_not_fooled_by_quoted_delimiters() {
        let text =
            "order_id;customer;amount\nSO-1;\"ACME, Inc.\";\"1,234.50\"\nSO-2;\"Globex, Ltd\";12\n";
        assert_eq!(sniff_delimiter(text), b';');
        let text = "order_id,customer,amount\nSO-1,\"ACME; Inc.\",1\nSO-2,\"A;B;C\",2\n";
        assert_eq!(sniff_delimiter(text), b',');
    }

    #[test]
    fn quoted_fields_with_delimiters_quotes_and_newlines() {
        let text =
            "order_id,customer,amount\nSO-1,\"ACME, \"\"the\"\" Ltd\",\"1,234.50\"\nSO-2,\"two\nlines\",5\nSO-3,x,6\n";
        let table = read_csv(text, None, &Limits::default()).unwrap();
        assert_eq!(
            cells(&table),
            [
                ["SO-1", "ACME, \"the\" Ltd", "1,234.50"],
                ["SO-2", "two\nlines", "5"],
                ["SO-3", "x", "6"]
            ]
        );
        let lines: Vec<(usize, usize)> = table.rows.iter().map(|r| (r.row, r.line)).collect();
        assert_eq!(lines, [(1, 2), (2, 3), (3, 5)]);
    }

    #[test]
    fn rows_with_the_wrong_field_count_are_broken_and_blank_rows_skipped() {
        let text = "a,b,c\n1,2,3\n1,2\n,,\n4,5,6,7\n7,8,9\n";
        let table = read_csv(text, None, &Limits::default()).unwrap();
        assert_eq!(cells(&table), [["1", "2", "3"], ["7", "8", "9"]]);
        assert_eq!(table.blank_rows, 1);
        let broken: Vec<(usize, usize, String)> = table
            .broken
            .iter()
            .map(|(r, l, p)| (*r, *l, p.to_string()))
            .collect();
        assert_eq!(
            broken,
            [
                (2, 3, "has 2 fields, the header has 3".to_string()),
                (4, 5, "has 4 fields, the header has 3".to_string())
            ]
        );
    }

    #[test]
    fn csv_limits_on_rows_and_columns() {
        let limits = Limits {
            max_rows: 2,
            max_columns: 3,
            ..Limits::default()
        };
        assert!(read_csv("a,b,c\n1,2,3\n4,5,6\n", None, &limits).is_ok());
        assert_eq!(
            read_csv("a,b,c\n1,2,3\n4,5,6\n7,8,9\n", None, &limits)
                .unwrap_err()
                .to_string(),
            "more than 2 rows"
        );
        assert_eq!(
            read_csv("a,b,c,d\n", None, &limits)
                .unwrap_err()
                .to_string(),
            "more than 3 columns"
        );
        assert_eq!(
            read_csv("", None, &limits).unwrap_err().to_string(),
            "the file is empty"
        );
    }

    #[test]
    fn json_arrays_and_objects_holding_one() {
        let text = "[\n {\"orderId\": \"SO-1\", \"totalAmount\": 1234.50},\n {\"orderId\": \"SO-2\", \"note\": {\"a\": 1}, \"totalAmount\": null}\n]";
        let table = read_json(text, None, &Limits::default()).unwrap();
        assert_eq!(table.headers, ["orderId", "totalAmount", "note"]);
        assert_eq!(
            cells(&table),
            [
                vec!["SO-1", "1234.50", "<none>"],
                vec!["SO-2", "<none>", "{\"a\": 1}"]
            ]
        );
        assert_eq!(
            table
                .rows
                .iter()
                .map(|r| (r.row, r.line))
                .collect::<Vec<_>>(),
            [(1, 2), (2, 3)]
        );

        let wrapped = "{\"exported\": \"2026-12-01\", \"records\": [{\"order_id\": \"SO-9\"}, 7]}";
        let table = read_json(wrapped, None, &Limits::default()).unwrap();
        assert_eq!(cells(&table), [["SO-9"]]);
        assert_eq!(
            table
                .broken
                .iter()
                .map(|(r, _, p)| (*r, p.to_string()))
                .collect::<Vec<_>>(),
            [(2, "is not a JSON object".to_string())]
        );
    }

    #[test]
    fn json_that_holds_no_records_is_refused() {
        let limits = Limits::default();
        let error =
            |text: &str, key: Option<&str>| read_json(text, key, &limits).unwrap_err().to_string();
        assert_eq!(
            error("{\"a\": [], \"b\": [1]}", None),
            "the JSON object holds several arrays (a, b); name the one of the records with `records` in the mapping"
        );
        assert_eq!(
            read_json(
                "{\"a\": [], \"b\": [{\"order_id\": 1}]}",
                Some("b"),
                &limits
            )
            .unwrap()
            .rows
            .len(),
            1
        );
        assert_eq!(
            error("{\"a\": []}", Some("b")),
            "the JSON object has no array `b`"
        );
        assert_eq!(
            error("{\"a\": 1}", None),
            "the JSON is neither an array of records nor an object holding one"
        );
        assert_eq!(
            error("42", None),
            "the JSON is neither an array of records nor an object holding one"
        );
        assert!(error("[{\"a\": 1},\n{\"a\": }]", None).starts_with("line 2, column 7: not JSON"));
        let few = Limits {
            max_rows: 1,
            ..limits
        };
        assert_eq!(
            read_json("[{}, {}]", None, &few).unwrap_err().to_string(),
            "more than 1 rows"
        );
    }

    #[test]
    fn jsonl_lines_that_are_not_objects_are_broken_rows() {
        let text =
            "{\"order_id\": \"SO-1\"}\n\n{\"order_id\": \ngarbage\n[1]\n{\"order_id\": \"SO-2\", \"amount\": \"12\"}\n";
        let table = read_jsonl(text, &Limits::default()).unwrap();
        assert_eq!(cells(&table), [vec!["SO-1", "<none>"], vec!["SO-2", "12"]]);
        assert_eq!(
            table
                .rows
                .iter()
                .map(|r| (r.row, r.line))
                .collect::<Vec<_>>(),
            [(1, 1), (5, 6)]
        );
        let broken: Vec<(usize, usize)> = table.broken.iter().map(|(r, l, _)| (*r, *l)).collect();
        assert_eq!(broken, [(2, 3), (3, 4), (4, 5)]);
        assert!(matches!(table.broken[2].2, Problem::NotAnObject));
    }

    #[test]
    fn json_columns_are_limited() {
        let limits = Limits {
            max_columns: 2,
            ..Limits::default()
        };
        assert!(read_jsonl("{\"a\":1,\"b\":2}\n{\"a\":1}\n", &limits).is_ok());
        assert_eq!(
            read_jsonl("{\"a\":1,\"b\":2}\n{\"c\":1}\n", &limits)
                .unwrap_err()
                .to_string(),
            "more than 2 columns"
        );
    }
}
