//! Alignment: the records of one order from every file become one order record.
//!
//! Records are matched by order id, customer id and creation date (the day in the target zone);
//! an order's key is a hash of the three. A record that lacks the customer id or the creation
//! date joins the order with its id; one whose customer id or creation date differs from what
//! the order id was first seen with is a bad row (`conflicting_id`), since the same id then names
//! two orders. Within an order the newest record (by update time; records without one count as
//! oldest, ties go to the earlier file and row) gives each field, older records fill the fields it
//! lacks, and every disagreement is recorded as a conflict.

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

/// The records of one order id so far, and the identity it was first seen with.
struct Group {
    customer_id: Option<(String, Origin)>,
    created: Option<(NaiveDate, Origin)>,
    records: Vec<Record>,
}

/// Aligns the records of every file into orders and sorts them by `sort_by` (orders without
/// that time last; otherwise the order they were first seen in).
pub fn align(files: Vec<FileRead>, sort_by: SortBy) -> Batch {
    let mut groups: Vec<(String, Group)> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut file_reports = Vec::with_capacity(files.len());
    let mut bad_rows = Vec::new();
    for file in files {
        let mut file_bad = file.bad_rows;
        for record in file.records {
            let customer_id = record.text(Field::CustomerId).map(str::to_string);
            let created = record.time(Field::CreatedAt).map(|time| time.date_naive());
            let Some(&index) = by_id.get(record.order_id()) else {
                let order_id = record.order_id().to_string();
                by_id.insert(order_id.clone(), groups.len());
                let group = Group {
                    customer_id: customer_id.map(|id| (id, record.origin.clone())),
                    created: created.map(|day| (day, record.origin.clone())),
                    records: vec![record],
                };
                groups.push((order_id, group));
                continue;
            };
            let (order_id, group) = &mut groups[index];
            let mut problems = Vec::new();
            if let (Some(here), Some((there, first))) = (&customer_id, &group.customer_id) {
                if here != there {
                    problems.push(conflicting(
                        order_id,
                        IdPart::CustomerId,
                        here.clone(),
                        there.clone(),
                        first,
                    ));
                }
            }
            if let (Some(here), Some((there, first))) = (created, &group.created) {
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
            if !problems.is_empty() {
                file_bad.push(BadRow::new(&record.origin, problems));
                continue;
            }
            group.customer_id = group
                .customer_id
                .take()
                .or_else(|| customer_id.map(|id| (id, record.origin.clone())));
            group.created = group
                .created
                .take()
                .or_else(|| created.map(|day| (day, record.origin.clone())));
            group.records.push(record);
        }
        file_bad.sort_by_key(|bad_row| bad_row.row);
        let mut report = file.report;
        report.bad_rows = file_bad.len();
        report.good_rows = report.rows - report.bad_rows;
        file_reports.push(report);
        bad_rows.extend(file_bad);
    }
    let mut orders: Vec<Order> = groups
        .into_iter()
        .map(|(order_id, group)| merge(&order_id, group))
        .collect();
    sort(&mut orders, sort_by);
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
fn merge(order_id: &str, group: Group) -> Order {
    let mut ranked: Vec<&Record> = group.records.iter().collect();
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
    let customer_id = group.customer_id.map(|(id, _)| id).unwrap_or_default();
    let created = group
        .created
        .map(|(day, _)| day.to_string())
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
        sources: group
            .records
            .into_iter()
            .map(|record| record.origin)
            .collect(),
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
