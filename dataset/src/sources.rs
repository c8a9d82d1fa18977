//! Reading the three kinds of source: the intake's aligned orders (JSONL), reviewers'
//! corrections (JSONL) and hand-labelled e-mails (a folder of `NAME.txt` + `NAME.expected.json`).
//!
//! A file that cannot be read is an error; an item inside it that cannot be used (a line that is
//! not an object, an order without an id, a text without a label) is a [`Problem`] that the
//! build reports, and the other items go on.

use crate::example::{Order, Origin};
use crate::DatasetError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::path::Path;

/// An e-mail with its label, before cleaning.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledText {
    /// The e-mail's text.
    pub text: String,
    /// What it states.
    pub order: Order,
    /// Where it came from.
    pub origin: Origin,
    /// File and line (or file name).
    pub source: String,
}

/// An item left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// File and line, or file name.
    pub source: String,
    /// Why it was left out.
    pub reason: String,
}

/// What a source gave: its usable items, and the items left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Read<T> {
    /// The usable items, in file order.
    pub items: Vec<T>,
    /// The items left out, with where and why.
    pub problems: Vec<Problem>,
}

/// An order to write e-mails from, with its place in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOrder {
    /// File and line.
    pub source: String,
    /// The order.
    pub order: Order,
}

/// A JSON object of a JSONL file, with its line number (from 1).
type NumberedObject = (usize, Map<String, Value>);

/// The orders of an intake output (`flowbot intake --out FILE.jsonl`): one object per line
/// with `order_id`, `customer`, `amount` (or `total`) and `currency`.
pub fn read_orders(path: &Path) -> Result<Read<SourceOrder>, DatasetError> {
    let mut orders = Vec::new();
    let mut problems = Vec::new();
    for (line, object) in jsonl_objects(path, &mut problems)? {
        let source = format!("{}:{line}", path.display());
        let order = Order {
            order_id: text_field(&object, &["order_id", "orderId"]),
            customer: text_field(&object, &["customer", "customer_name", "customerName"]),
            total: number_field(&object, &["amount", "total", "total_amount", "totalAmount"]),
            currency: text_field(&object, &["currency"]).map(|c| c.to_uppercase()),
        };
        match missing_fields(&order) {
            None => orders.push(SourceOrder { source, order }),
            Some(missing) => problems.push(Problem {
                source,
                reason: format!("an order to write e-mails from needs {missing}"),
            }),
        }
    }
    Ok(Read {
        items: orders,
        problems,
    })
}

/// Reviewers' corrections: one object per line with the e-mail's text (`input`, or `text`) and
/// the corrected reading (`corrected`, or `corrected_output`: an object with the order fields).
pub fn read_corrections(path: &Path) -> Result<Read<LabelledText>, DatasetError> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (line, object) in jsonl_objects(path, &mut problems)? {
        let source = format!("{}:{line}", path.display());
        let text = text_field(&object, &["input", "text"]);
        let corrected = ["corrected", "corrected_output"]
            .iter()
            .find_map(|key| object.get(*key))
            .and_then(Value::as_object);
        match (text, corrected) {
            (Some(text), Some(corrected)) => items.push(LabelledText {
                text,
                order: order_of(corrected),
                origin: Origin::Correction,
                source,
            }),
            (None, _) => problems.push(Problem {
                source,
                reason: "a correction needs the e-mail's text (`input`)".into(),
            }),
            (_, None) => problems.push(Problem {
                source,
                reason: "a correction needs the corrected order (`corrected`, an object)".into(),
            }),
        }
    }
    Ok(Read { items, problems })
}

/// Hand-labelled e-mails: every `NAME.txt` in `dir` with its `NAME.expected.json` (the order's
/// fields, `null` where the e-mail does not state one), in name order.
pub fn read_labelled(dir: &Path) -> Result<Read<LabelledText>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    let mut texts: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    texts.sort();
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for path in texts {
        let label = path.with_extension("expected.json");
        let source = path.display().to_string();
        if !label.exists() {
            problems.push(Problem {
                source,
                reason: format!("no label: {} is missing", label.display()),
            });
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| DatasetError::io(&path, e))?;
        let label_text =
            std::fs::read_to_string(&label).map_err(|e| DatasetError::io(&label, e))?;
        match serde_json::from_str::<Value>(&label_text) {
            Ok(Value::Object(object)) => items.push(LabelledText {
                text,
                order: order_of(&object),
                origin: Origin::Labelled,
                source,
            }),
            Ok(_) => problems.push(Problem {
                source: label.display().to_string(),
                reason: "a label is a JSON object with the order's fields".into(),
            }),
            Err(error) => problems.push(Problem {
                source: label.display().to_string(),
                reason: format!("not JSON: {error}"),
            }),
        }
    }
    Ok(Read { items, problems })
}

/// The objects of a JSONL file with their line numbers; blank lines are skipped, other lines
/// that are not objects become problems.
fn jsonl_objects(
    path: &Path,
    problems: &mut Vec<Problem>,
) -> Result<Vec<NumberedObject>, DatasetError> {
    let content = std::fs::read_to_string(path).map_err(|e| DatasetError::io(path, e))?;
    let mut objects = Vec::new();
    for (index, line) in content.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => objects.push((line_number, object)),
            Ok(_) => problems.push(Problem {
                source: format!("{}:{line_number}", path.display()),
                reason: "not a JSON object".into(),
            }),
            Err(error) => problems.push(Problem {
                source: format!("{}:{line_number}", path.display()),
                reason: format!("not JSON: {error}"),
            }),
        }
    }
    Ok(objects)
}

/// The order fields of a label or correction object.
fn order_of(object: &Map<String, Value>) -> Order {
    Order {
        order_id: text_field(object, &["order_id"]),
        customer: text_field(object, &["customer"]),
        total: number_field(object, &["total", "amount"]),
        currency: text_field(object, &["currency"]),
    }
}

/// The first of `keys` that holds non-empty text.
fn text_field(object: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|key| object.get(*key))
        .find_map(|value| match value {
            Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
}

/// The first of `keys` that holds a number (or text that is one).
fn number_field(object: &Map<String, Value>, keys: &[&str]) -> Option<f64> {
    keys.iter()
        .filter_map(|key| object.get(*key))
        .find_map(|value| match value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse().ok(),
            _ => None,
        })
}

/// Which fields an order to generate e-mails from lacks, as words; `None` when complete.
fn missing_fields(order: &Order) -> Option<String> {
    let missing: Vec<&str> = Order::FIELDS
        .into_iter()
        .filter(|field| !order.has(field))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}
