//! Order intake as a service: ERP exports (CSV, JSON, JSON Lines) cleaned and aligned by
//! `flowbot-intake`, ordered by rule 2 (`[intake] sort_rule`), and one instance started per
//! order; and [`App::start_batch`], the same start for a batch of ready order objects
//! (`flowbot import`).
//!
//! Invariants:
//! - An order's variables are its aligned fields, with the exporting system's `status` as
//!   `source_status` (the process sets `status` itself) and `intake_key` the alignment key.
//! - Nothing starts unless every uploaded file was read (a batch missing one of its sources
//!   would align wrongly); bad rows do not stop the good ones and are all in the report.
//! - Instances start in the batch's order (their ids count up in it); at most
//!   [`IN_FLIGHT`] are between their start and their first wait at a time, so the model's queue
//!   is never overrun by one upload.

use crate::app::{check_file_name, App, DEFAULT_ORDER_PROCESS};
use crate::error::{AppError, ErrorKind};
use crate::view::InstanceView;
use flowbot_engine::model::RuleSource;
use flowbot_engine::runtime::StartRequest;
use flowbot_intake::{align, read_bytes, Limits, Mapping, Options, Report, SortBy, Tz};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// Instances of one batch that may be between their start and their first wait at once.
pub const IN_FLIGHT: usize = 8;

/// One uploaded export.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Its file name (a plain name: it chooses the mapping entry, the source and the format).
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// What an intake is asked to do.
#[derive(Debug, Clone, Default)]
pub struct IntakeRequest {
    /// The exports.
    pub files: Vec<Upload>,
    /// A mapping file's text (TOML, docs/intake.md).
    pub mapping: Option<String>,
    /// The time the batch is ordered by (rule 2's `import_sort_by`).
    pub sort_by: SortBy,
}

/// One order the intake started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartedOrder {
    /// The order id (the instance's business key).
    pub order_id: String,
    /// The instance.
    pub instance: String,
    /// Its status once it first waited or ended.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "waiting"))]
    pub status: flowbot_engine::executor::InstanceStatus,
}

/// What an intake did.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IntakeOutcome {
    /// The intake report: files, totals, every bad row with file, row, line and reason.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub report: Report,
    /// The process the orders started.
    pub process: String,
    /// The started orders, in the order they started.
    pub started: Vec<StartedOrder>,
}

impl App {
    /// Reads, cleans and aligns the uploaded exports, then starts one instance of the order
    /// process (`[intake] process`, default `order_processing`) per order, in rule 2's order.
    pub async fn intake(&self, request: IntakeRequest) -> Result<IntakeOutcome, AppError> {
        if request.files.is_empty() {
            return Err(AppError::invalid_input("no export file was uploaded"));
        }
        let mapping = match &request.mapping {
            Some(text) => Mapping::from_toml(text)
                .map_err(|e| AppError::invalid_input(format!("the mapping: {e}")))?,
            None => Mapping::default(),
        };
        let time_zone: Tz = match &self.config().time_zone {
            Some(zone) => zone.parse().map_err(|_| {
                AppError::config(format!("time_zone `{zone}` is not an IANA time zone"))
            })?,
            None => Tz::UTC,
        };
        let options = Options {
            mapping,
            limits: Limits::default(),
            time_zone,
        };
        let mut files = Vec::with_capacity(request.files.len());
        let mut unreadable = Vec::new();
        for upload in &request.files {
            check_file_name(&upload.name)?;
            match read_bytes(&upload.name, &upload.bytes, &options) {
                Ok(file) => files.push(file),
                Err(error) => unreadable.push(format!("{}: {error}", upload.name)),
            }
        }
        if !unreadable.is_empty() {
            return Err(AppError::invalid_input(format!(
                "nothing was started: {}",
                unreadable.join("; ")
            )));
        }
        let batch = align(files, request.sort_by);
        let orders: Vec<Value> = batch
            .orders
            .iter()
            .map(|order| {
                let mut variables = serde_json::to_value(order)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                variables.remove("intake");
                // The process owns `status`; the exporting system's status is kept beside it.
                if let Some(status) = variables.remove("status") {
                    variables.insert("source_status".into(), status);
                }
                variables.insert("intake_key".into(), Value::String(order.key.clone()));
                Value::Object(variables)
            })
            .collect();
        let process = self
            .config()
            .intake
            .process
            .clone()
            .unwrap_or_else(|| DEFAULT_ORDER_PROCESS.to_string());
        let sort_rule = self.config().intake.sort_rule.clone();
        let started = self
            .start_batch(
                &process,
                orders,
                sort_rule.as_deref(),
                request.sort_by.name(),
            )
            .await?;
        Ok(IntakeOutcome {
            report: batch.report,
            process,
            started: started
                .iter()
                .map(|view| StartedOrder {
                    order_id: view.business_key.clone().unwrap_or_default(),
                    instance: view.id.clone(),
                    status: view.status,
                })
                .collect(),
        })
    }

    /// Starts one instance of `process` per item (its starting variables; `order_id` is the
    /// business key), in the order the rule `sort_rule` of the rules folder gives (with
    /// `import_sort_by` = `sort_by`; without a rule, as they came). Returns each instance once
    /// it first waited or ended, in the order they started.
    pub async fn start_batch(
        &self,
        process: &str,
        items: Vec<Value>,
        sort_rule: Option<&str>,
        sort_by: &str,
    ) -> Result<Vec<InstanceView>, AppError> {
        if let Some(position) = items.iter().position(|item| !item.is_object()) {
            return Err(AppError::invalid_input(format!(
                "item {} of the batch is not a JSON object",
                position + 1
            )));
        }
        self.deployed(process, None)?;
        let sorted = match sort_rule {
            Some(rule) => {
                let params = Map::from_iter([("import_sort_by".to_string(), Value::from(sort_by))]);
                self.rules()
                    .snapshot()
                    .sort_by_rule(&RuleSource::File(rule.to_string()), items, &params)
                    .map_err(|e| AppError::new(ErrorKind::Invalid, e.to_string()))?
            }
            None => items,
        };
        let mut started = Vec::with_capacity(sorted.len());
        let mut in_flight: VecDeque<String> = VecDeque::new();
        for item in sorted {
            if in_flight.len() >= IN_FLIGHT {
                if let Some(id) = in_flight.pop_front() {
                    started.push(self.settle(&id).await?);
                }
            }
            let business_key = match item.get("order_id") {
                Some(Value::String(id)) => Some(id.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let view = self
                .start(StartRequest {
                    process_id: process.to_string(),
                    variables: item.as_object().cloned().unwrap_or_default(),
                    business_key,
                })
                .await?;
            in_flight.push_back(view.id);
        }
        for id in in_flight {
            started.push(self.settle(&id).await?);
        }
        Ok(started)
    }
}
