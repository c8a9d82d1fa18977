//! Alignment: the records of one order from every file become one order record.
//!
//! Records are matched by order id, customer id and creation date (the day in the target zone);
//! an order's key is a hash of the three. A record that lacks the customer id or the creation
//! date joins the order with its id. The customer id and the creation date most of an order id's
//! records name (the first seen on a tie) are the order's; a record naming another is a bad row
//! (`conflicting_id`), since the same id then names two orders. Within an order the newest record
//! (by update time; records without one count as oldest, ties go to the earlier file and row)
//! gives each field, older records fill the fields it lacks, and every disagreement is recorded
//! as a conflict.

use crate::fields::Field;
use crate::record::{Origin, Record, Value};
use crate::report::{BadRow, IdPart, Problem, Report, Totals};
use crate::FileRead;
use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::Hash;

/// Which time orders the batch (rule 2: creation, update or payment time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    /// By `created_at`.
    #[default]
    Created,
    /// By `updated_at`.
    Updated,
    /// By `paid_at`.
    Paid,
}

impl SortBy {
    /// `created`, `updated` or `paid`.
    pub fn name(self) -> &'static str {
        match self {
            SortBy::Created => "created",
            SortBy::Updated => "updated",
            SortBy::Paid => "paid",
        }
    }

    /// The time field sorted by.
    pub fn field(self) -> Field {
        match self {
            SortBy::Created => Field::CreatedAt,
            SortBy::Updated => Field::UpdatedAt,
            SortBy::Paid => Field::PaidAt,
        }
    }
}

/// A field on which an order's records disagreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The field.
    pub field: Field,
    /// The value kept (the newest record's).
    pub kept: Value,
    /// The record it came from.
    pub from: Origin,
    /// The other values, newest first.
    pub replaced: Vec<Replaced>,
}

/// A value an order's newer record replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replaced {
    /// The value.
    pub value: Value,
    /// The record it was in.
    pub from: Origin,
}

/// One order, aligned from all its records. Every order has every field (missing ones null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Hash of order id, customer id and creation date (16 hex digits).
    pub key: String,
    values: [Option<Value>; Field::COUNT],
    /// The records it was aligned from, in the order read.
    pub sources: Vec<Origin>,
    /// The fields on which its records disagreed.
    pub conflicts: Vec<Conflict>,
}

impl Order {
    /// A field's value.
    pub fn get(&self, field: Field) -> Option<&Value> {
        self.values[field.index()].as_ref()
    }

    /// A time field's value.
    pub fn time(&self, field: Field) -> Option<DateTime<Tz>> {
        match self.get(field) {
            Some(Value::Time(time)) => Some(*time),
            _ => None,
        }
    }

    /// The order id.
    pub fn order_id(&self) -> &str {
        match self.get(Field::OrderId) {
            Some(Value::Text(id)) => id,
            _ => "",
        }
    }

    /// Whether the order was paid (it has a payment time).
    pub fn paid(&self) -> bool {
        self.get(Field::PaidAt).is_some()
    }
}

impl Serialize for Order {
    /// `{"order_id", "customer_id", "customer", "amount", "currency", "status", "created_at",
    /// "updated_at", "paid_at", "paid", "intake": {"key", "sources", "conflicts"}}`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Intake<'a> {
            key: &'a str,
            sources: &'a [Origin],
            conflicts: &'a [Conflict],
        }
        let mut map = serializer.serialize_map(Some(Field::COUNT + 2))?;
        for field in Field::ALL {
            map.serialize_entry(field.name(), &self.get(field))?;
        }
        map.serialize_entry("paid", &self.paid())?;
        map.serialize_entry(
            "intake",
            &Intake {
                key: &self.key,
                sources: &self.sources,
                conflicts: &self.conflicts,
            },
        )?;
        map.end()
    }
}

/// An aligned, sorted batch and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The orders, sorted.
    pub orders: Vec<Order>,
    /// What was read, every bad row, the totals.
    pub report: Report,
}

/// Aligns the records of every file into orders and sorts them by `sort_by` (orders without
/// that time last; otherwise the order they were first seen in).
pub fn align(files: Vec<FileRead>, sort_by: SortBy) -> Batch {
    let mut groups: Vec<(String, Vec<(usize, Record)>)> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut file_reports = Vec::with_capacity(files.len());
    let mut bad_by_file = Vec::with_capacity(files.len());
    for (file_index, file) in files.into_iter().enumerate() {
        for record in file.records {
            let index = *by_id
                .entry(record.order_id().to_string())
                .or_insert_with(|| {
                    groups.push((record.order_id().to_string(), Vec::new()));
                    groups.len() - 1
                });
            groups[index].1.push((file_index, record));
        }
        file_reports.push(file.report);
        bad_by_file.push(file.bad_rows);
    }
    let mut orders = Vec::with_capacity(groups.len());
    for (order_id, members) in groups {
        let kept = check_identity(&order_id, members, &mut bad_by_file);
        if !kept.is_empty() {
            orders.push(merge(&order_id, kept));
        }
    }
    sort(&mut orders, sort_by);
    let mut bad_rows = Vec::new();
    for (report, mut bad) in file_reports.iter_mut().zip(bad_by_file) {
        bad.sort_by_key(|bad_row| bad_row.row);
        report.bad_rows = bad.len();
        report.good_rows = report.rows - report.bad_rows;
        bad_rows.extend(bad);
    }
    let totals = Totals {
        files: file_reports.len(),
        rows: file_reports.iter().map(|file| file.rows).sum(),
        good_rows: file_reports.iter().map(|file| file.good_rows).sum(),
        bad_rows: bad_rows.len(),
        blank_rows: file_reports.iter().map(|file| file.blank_rows).sum(),
        orders: orders.len(),
        merged_orders: orders
            .iter()
            .filter(|order| order.sources.len() > 1)
            .count(),
        conflicts: orders.iter().map(|order| order.conflicts.len()).sum(),
    };
    Batch {
        orders,
        report: Report {
            totals,
            sorted_by: sort_by,
            files: file_reports,
            bad_rows,
        },
    }
}

impl Batch {
    /// The orders as JSON Lines: one object per order and line.
    pub fn orders_jsonl(&self) -> Result<String, serde_json::Error> {
        let mut text = String::with_capacity(self.orders.len() * 512);
        for order in &self.orders {
            text.push_str(&serde_json::to_string(order)?);
            text.push('\n');
        }
        Ok(text)
    }

    /// `{"report": …, "orders": […]}` as one line of JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Output<'a> {
            report: &'a Report,
            orders: &'a [Order],
        }
        serde_json::to_string(&Output {
            report: &self.report,
            orders: &self.orders,
        })
    }

    /// The report as indented JSON.
    pub fn report_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&self.report)
    }
}

/// The records of one order id that agree with its identity (the customer id and creation date
/// most of its records name, the first seen on a tie); the others become bad rows of their file.
fn check_identity(
    order_id: &str,
    members: Vec<(usize, Record)>,
    bad_by_file: &mut [Vec<BadRow>],
) -> Vec<Record> {
    let customer_id = majority(
        members
            .iter()
            .filter_map(|(_, r)| Some((r.text(Field::CustomerId)?.to_string(), &r.origin))),
    );
    let created = majority(
        members
            .iter()
            .filter_map(|(_, r)| Some((created_day(r)?, &r.origin))),
    );
    let mut kept = Vec::with_capacity(members.len());
    for (file_index, record) in members {
        let mut problems = Vec::new();
        if let (Some(here), Some((there, first))) = (record.text(Field::CustomerId), &customer_id) {
            if here != there {
                problems.push(conflicting(
                    order_id,
                    IdPart::CustomerId,
                    here.to_string(),
                    there.clone(),
                    first,
                ));
            }
        }
        if let (Some(here), Some((there, first))) = (created_day(&record), &created) {
            if here != *there {
                problems.push(conflicting(
                    order_id,
                    IdPart::CreatedDate,
                    here.to_string(),
                    there.to_string(),
                    first,
                ));
            }
        }
        if problems.is_empty() {
            kept.push(record);
        } else {
            bad_by_file[file_index].push(BadRow::new(&record.origin, problems));
        }
    }
    kept
}

/// The creation day of a record in the target zone.
fn created_day(record: &Record) -> Option<NaiveDate> {
    record.time(Field::CreatedAt).map(|time| time.date_naive())
}

/// The value named most often, with the first record naming it; the first seen on a tie.
fn majority<'a, T: Eq + Hash>(
    values: impl Iterator<Item = (T, &'a Origin)>,
) -> Option<(T, Origin)> {
    let mut counts: HashMap<T, (usize, &Origin, usize)> = HashMap::new();
    for (position, (value, origin)) in values.enumerate() {
        counts.entry(value).or_insert((position, origin, 0)).2 += 1;
    }
    counts
        .into_iter()
        .max_by(|(_, a), (_, b)| a.2.cmp(&b.2).then(b.0.cmp(&a.0)))
        .map(|(value, (_, origin, _))| (value, origin.clone()))
}

fn conflicting(
    order_id: &str,
    part: IdPart,
    here: String,
    there: String,
    first: &Origin,
) -> Problem {
    Problem::ConflictingId {
        order_id: order_id.to_string(),
        part,
        here,
        there,
        first: first.clone(),
    }
}

/// One order from its records: field by field the newest record's value, older ones filling gaps.
fn merge(order_id: &str, records: Vec<Record>) -> Order {
    let mut ranked: Vec<&Record> = records.iter().collect();
    ranked.sort_by_key(|record| std::cmp::Reverse(record.time(Field::UpdatedAt)));
    let mut values: [Option<Value>; Field::COUNT] = Default::default();
    let mut conflicts = Vec::new();
    for field in Field::ALL {
        let mut holders = ranked
            .iter()
            .filter_map(|record| Some((record.get(field)?, &record.origin)));
        let Some((kept, from)) = holders.next() else {
            continue;
        };
        values[field.index()] = Some(kept.clone());
        if field == Field::UpdatedAt {
            continue;
        }
        let replaced: Vec<Replaced> = holders
            .filter(|(value, _)| *value != kept)
            .map(|(value, origin)| Replaced {
                value: value.clone(),
                from: origin.clone(),
            })
            .collect();
        if !replaced.is_empty() {
            conflicts.push(Conflict {
                field,
                kept: kept.clone(),
                from: from.clone(),
                replaced,
            });
        }
    }
    let customer_id = values[Field::CustomerId.index()]
        .as_ref()
        .map(Value::text)
        .unwrap_or_default();
    let created = ranked
        .iter()
        .find_map(|record| created_day(record))
        .map(|day| day.to_string())
        .unwrap_or_default();
    let digest = Sha256::digest(format!("{order_id}\u{1F}{customer_id}\u{1F}{created}").as_bytes());
    let key = digest
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Order {
        key,
        values,
        sources: records.into_iter().map(|record| record.origin).collect(),
        conflicts,
    }
}

/// Sorts orders by a time, those without it last; stable otherwise.
pub fn sort(orders: &mut [Order], sort_by: SortBy) {
    let field = sort_by.field();
    orders.sort_by(|a, b| match (a.time(field), b.time(field)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
}
