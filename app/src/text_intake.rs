//! Free-text orders: the body of an e-mail starts the `order_email` process
//! (`workflows/order_email.yaml`), whose `extract` step reads the order with the language model;
//! the service waits until the instance settles and answers with what was read and, when a person
//! must look at it, the open review task with its form pre-filled.
//!
//! What happens to the order is the process's business, not this module's: it continues the
//! order (a message start of `order_processing`) or opens the review.

use crate::error::AppError;
use crate::view::{InstanceView, TaskView};
use crate::App;
use flowbot_engine::graph::{Behavior, WaitSpec};
use flowbot_engine::model::LlmMode;
use flowbot_engine::runtime::{StartRequest, TaskFilter};
use serde::Serialize;
use serde_json::{Map, Value};

/// The process a free-text order starts.
pub const ORDER_EMAIL_PROCESS: &str = "order_email";
/// The variable the text goes into.
pub const TEXT_VARIABLE: &str = "email_text";
/// The longest text taken, in bytes (an e-mail body; the model reads a few thousand tokens).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// A free-text order to read.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOrderRequest {
    /// The e-mail body, English, Chinese or mixed.
    pub text: String,
    /// A business key for the instance.
    pub business_key: Option<String>,
}

/// What became of a free-text order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TextOrderView {
    /// The `order_email` instance as it settled.
    pub instance: InstanceView,
    /// The fields the extract step reads, with the values the instance holds (`null` where
    /// nothing was read).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub order: Map<String, Value>,
    /// Why a person reviews it (the process's `review_reasons`; empty when the order was read).
    pub review_reasons: Vec<String>,
    /// The open review task, with its form pre-filled, when a person must look at the order.
    pub review_task: Option<TaskView>,
}

impl App {
    /// Reads a free-text order: starts [`ORDER_EMAIL_PROCESS`] with the text and answers once
    /// the instance settled (it ended, or waits for a person).
    pub async fn intake_text(&self, request: TextOrderRequest) -> Result<TextOrderView, AppError> {
        let text = request.text;
        if text.trim().is_empty() {
            return Err(AppError::invalid_input("text: is empty"));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(AppError::invalid_input(format!(
                "text: {} bytes, more than the {MAX_TEXT_BYTES} a free-text order may have",
                text.len()
            )));
        }
        if self.definition(ORDER_EMAIL_PROCESS).is_err() {
            return Err(AppError::not_found(format!(
                "no process `{ORDER_EMAIL_PROCESS}` is deployed to read free-text orders (workflows/order_email.yaml)"
            )));
        }
        let mut variables = Map::new();
        variables.insert(TEXT_VARIABLE.to_string(), Value::String(text));
        let started = self
            .start(StartRequest {
                process_id: ORDER_EMAIL_PROCESS.to_string(),
                variables,
                business_key: request.business_key,
            })
            .await?;
        let instance = self.settle(&started.id).await?;
        let fields = self.extracted_fields(&instance.process, instance.version);
        let order = fields
            .into_iter()
            .map(|field| {
                let value = instance
                    .variables
                    .get(&field)
                    .cloned()
                    .unwrap_or(Value::Null);
                (field, value)
            })
            .collect();
        let review_reasons = instance
            .variables
            .get("review_reasons")
            .and_then(Value::as_array)
            .map(|reasons| {
                reasons
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let review_task = self
            .open_tasks(&TaskFilter {
                instance: Some(instance.id.clone()),
                ..TaskFilter::default()
            })
            .into_iter()
            .next();
        Ok(TextOrderView {
            instance,
            order,
            review_reasons,
            review_task,
        })
    }

    /// The properties of the extract steps' schemas of a process version, in order.
    fn extracted_fields(&self, process: &str, version: u32) -> Vec<String> {
        let Ok(deployed) = self.deployed(process, Some(version)) else {
            return Vec::new();
        };
        let mut fields: Vec<String> = Vec::new();
        for node in deployed.process.graph.node_weights() {
            let Behavior::Wait(WaitSpec::Llm(task)) = &node.behavior else {
                continue;
            };
            if task.mode != LlmMode::Extract {
                continue;
            }
            let properties = task
                .schema
                .as_ref()
                .and_then(|schema| schema.get("properties"))
                .and_then(Value::as_object);
            for name in properties.into_iter().flat_map(|p| p.keys()) {
                if !fields.contains(name) {
                    fields.push(name.clone());
                }
            }
        }
        fields
    }
}
