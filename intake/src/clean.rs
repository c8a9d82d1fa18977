//! A file's table to records: columns matched to fields, every cell cleaned and typed, rows
//! with problems turned into bad rows (all of their problems, not just the first).

use crate::amount::{parse_amount, parse_currency, AmountStyle};
use crate::error::FileError;
use crate::fields::Field;
use crate::limits::Limits;
use crate::mapping::{Column, Settings};
use crate::record::{Origin, Record, Value};
use crate::report::{BadRow, Problem};
use crate::table::{Table, TableRow};
use crate::text::{clean, excerpt};
use crate::time::{parse_time, TimeStyle};
use std::collections::BTreeMap;

/// Longest cell quoted in a problem, in characters.
const QUOTED_CHARS: usize = 60;

/// Which column gives each field.
#[derive(Debug)]
pub(crate) struct ColumnMap {
    /// Column index per field.
    pub columns: [Option<usize>; Field::COUNT],
    /// Headers that give no field.
    pub ignored: Vec<String>,
}

impl ColumnMap {
    /// Matches headers to fields: the mapping's columns first, then the built-in header lists.
    /// A column the mapping names wins over one recognized by its header; two of the same kind
    /// for one field are an error, as is a file without an order id column.
    pub(crate) fn new(headers: &[String], settings: &Settings) -> Result<ColumnMap, FileError> {
        let mut explicit: [Vec<usize>; Field::COUNT] = Default::default();
        let mut recognized: [Vec<usize>; Field::COUNT] = Default::default();
        let mut ignored = Vec::new();
        for (index, header) in headers.iter().enumerate() {
            match settings.column(header) {
                Some(Column::Field(field)) => explicit[field.index()].push(index),
                Some(Column::Ignore) => ignored.push(index),
                None => match Field::recognize(header) {
                    Some(field) => recognized[field.index()].push(index),
                    None => ignored.push(index),
                },
            }
        }
        let mut columns = [None; Field::COUNT];
        for field in Field::ALL {
            let (chosen, passed_over) =
                match (&explicit[field.index()][..], &recognized[field.index()][..]) {
                    ([], candidates) => (candidates, &[][..]),
                    (candidates, passed_over) => (candidates, passed_over),
                };
            if let [first, second, ..] = chosen {
                return Err(FileError::AmbiguousColumns {
                    field,
                    first: headers[*first].clone(),
                    second: headers[*second].clone(),
                });
            }
            columns[field.index()] = chosen.first().copied();
            ignored.extend_from_slice(passed_over);
        }
        if columns[Field::OrderId.index()].is_none() {
            let headers = if headers.is_empty() {
                "none".to_string()
            } else {
                headers.join(", ")
            };
            return Err(FileError::NoOrderIdColumn { headers });
        }
        ignored.sort_unstable();
        Ok(ColumnMap {
            columns,
            ignored: ignored
                .into_iter()
                .map(|index| headers[index].clone())
                .collect(),
        })
    }

    /// The header of each mapped field.
    pub(crate) fn named(&self, headers: &[String]) -> BTreeMap<Field, String> {
        Field::ALL
            .into_iter()
            .filter_map(|field| Some((field, headers[self.columns[field.index()]?].clone())))
            .collect()
    }
}

/// Cleans the rows of one file.
pub(crate) struct Cleaner<'a> {
    /// The file name as given.
    pub file: &'a str,
    /// The source the file is an export of.
    pub source: &'a str,
    /// The file's headers.
    pub headers: &'a [String],
    /// Which column gives which field.
    pub columns: &'a ColumnMap,
    /// How amounts are written.
    pub amounts: AmountStyle,
    /// How times are written and where they go.
    pub times: TimeStyle,
    /// The limits (field length).
    pub limits: &'a Limits,
}

impl Cleaner<'_> {
    /// Cleans every row of a table: good records and bad rows (the table's broken rows included),
    /// each in file order.
    pub(crate) fn clean_table(&self, table: Table) -> (Vec<Record>, Vec<BadRow>) {
        let mut records = Vec::with_capacity(table.rows.len());
        let mut bad: Vec<BadRow> = table
            .broken
            .into_iter()
            .map(|(row, line, problem)| BadRow::new(&self.origin(row, line), vec![problem]))
            .collect();
        for row in table.rows {
            match self.clean_row(row) {
                Ok(record) => records.push(record),
                Err(bad_row) => bad.push(bad_row),
            }
        }
        bad.sort_by_key(|bad_row| bad_row.row);
        (records, bad)
    }

    fn origin(&self, row: usize, line: usize) -> Origin {
        Origin {
            file: self.file.to_string(),
            source: self.source.to_string(),
            row,
            line,
        }
    }

    /// One row to a record, or a bad row with every problem it has.
    fn clean_row(&self, row: TableRow) -> Result<Record, BadRow> {
        let origin = self.origin(row.row, row.line);
        let oversized: Vec<Problem> = row
            .cells
            .iter()
            .enumerate()
            .filter_map(|(index, cell)| {
                let bytes = cell.as_ref()?.len();
                (bytes > self.limits.max_field_bytes).then(|| Problem::FieldTooLong {
                    column: self.headers[index].clone(),
                    bytes,
                    limit: self.limits.max_field_bytes,
                })
            })
            .collect();
        if !oversized.is_empty() {
            return Err(BadRow::new(&origin, oversized));
        }
        let cell = |field: Field| -> Option<(String, &str)> {
            let index = self.columns.columns[field.index()]?;
            Some((
                clean(row.cells[index].as_deref()?)?,
                self.headers[index].as_str(),
            ))
        };
        let mut problems = Vec::new();
        let mut values: [Option<Value>; Field::COUNT] = Default::default();
        for field in [
            Field::OrderId,
            Field::CustomerId,
            Field::Customer,
            Field::Status,
        ] {
            values[field.index()] = cell(field).map(|(text, _)| Value::Text(text));
        }
        if values[Field::OrderId.index()].is_none() {
            problems.push(Problem::NoOrderId);
        }
        let default_currency = self.amounts.default_currency.as_deref();
        let column_currency =
            cell(Field::Currency).and_then(|(text, column)| {
                match parse_currency(&text, default_currency) {
                    Some(code) => Some((code, column)),
                    None => {
                        problems.push(Problem::Currency {
                            column: column.to_string(),
                            value: excerpt(&text, QUOTED_CHARS),
                        });
                        None
                    }
                }
            });
        let mut currency = column_currency.as_ref().map(|(code, _)| code.clone());
        if let Some((text, column)) = cell(Field::Amount) {
            match parse_amount(&text, &self.amounts) {
                Ok((amount, named)) => {
                    values[Field::Amount.index()] = Some(Value::Amount(amount));
                    match (&column_currency, named) {
                        (Some((code, column)), Some(named)) if *code != named => {
                            problems.push(Problem::CurrencyMismatch {
                                column: column.to_string(),
                                amount: named,
                                currency: code.clone(),
                            })
                        }
                        (_, named) => {
                            currency = currency
                                .or(named)
                                .or_else(|| default_currency.map(str::to_string))
                        }
                    }
                }
                Err(error) => problems.push(Problem::Amount {
                    column: column.to_string(),
                    value: excerpt(&text, QUOTED_CHARS),
                    error,
                }),
            }
        }
        values[Field::Currency.index()] = currency.map(Value::Text);
        for field in [Field::CreatedAt, Field::UpdatedAt, Field::PaidAt] {
            if let Some((text, column)) = cell(field) {
                match parse_time(&text, &self.times) {
                    Ok(time) => values[field.index()] = Some(Value::Time(time)),
                    Err(error) => problems.push(Problem::Time {
                        column: column.to_string(),
                        value: excerpt(&text, QUOTED_CHARS),
                        error,
                    }),
                }
            }
        }
        if problems.is_empty() {
            Ok(Record::new(origin, values))
        } else {
            Err(BadRow::new(&origin, problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn columns_are_matched_by_header_and_the_rest_ignored() {
        let headers = headers(&["订单编号", "客户名称", "Remark", "金额", "币种"]);
        let map = ColumnMap::new(&headers, &Settings::default()).unwrap();
        let named: Vec<(Field, String)> = map.named(&headers).into_iter().collect();
        let expected = [
            (Field::OrderId, "订单编号"),
            (Field::Customer, "客户名称"),
            (Field::Amount, "金额"),
        ];
        assert_eq!(
            named,
            expected.map(|(field, header)| (field, header.to_string()))
        );
        assert_eq!(map.ignored, ["Remark", "币种"]);
    }

    #[test]
    fn the_mapping_names_columns_and_wins_over_recognized_headers() {
        let mapping = Mapping::from_toml(
            "[defaults.columns]\n\"币种\" = \"currency\"\n\"Net\" = \"amount\"\n\"status\" = \"ignore\"",
        )
        .unwrap();
        let headers = headers(&["order_id", "total", "Net", "币种", "status"]);
        let map = ColumnMap::new(&headers, &mapping.settings_for("x.csv")).unwrap();
        assert_eq!(map.columns[Field::Amount.index()], Some(2));
        assert_eq!(map.columns[Field::Currency.index()], Some(3));
        assert_eq!(map.columns[Field::Status.index()], None);
        assert_eq!(map.ignored, ["total", "status"]);
    }

    #[test]
    fn two_columns_for_one_field_or_none_for_the_order_id_are_refused() {
        let error = ColumnMap::new(
            &headers(&["order_id", "amount", "total"]),
            &Settings::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "columns `amount` and `total` both give amount; map one of them (to the field or to `ignore`) in the mapping"
        );
        let error = ColumnMap::new(&headers(&["id", "amount"]), &Settings::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no column gives the order id (columns: id, amount); map one to `order_id` in the mapping"
        );
    }
}
