//! Loop, retry, rule and language-model settings carried by standard BPMN children, vendor
//! extensions (Camunda, Zeebe, SpiffWorkflow) and the Flowbot namespace.

use super::builder::Context;
use super::namespaces::Ns;
use super::xml_tree::ElementId;
use crate::model::{
    AttachPoint, LlmMode, LlmTask, MultiInstance, RetryPolicy, RuleAttachment, RuleSource,
};
use crate::script::strip_expression_wrappers;
use std::path::{Component, Path};

/// Delay before the first retry when `flowbot:retryDelay` is not given.
const DEFAULT_RETRY_DELAY_MS: u64 = 1_000;
/// Upper bound of the retry delay when `flowbot:retryMaxDelay` is not given.
const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 60_000;

/// Attributes of `flowbot:llm` that are not generation options.
const LLM_FIELDS: &[&str] = &["mode", "output"];

impl Context<'_, '_> {
    /// Reads `multiInstanceLoopCharacteristics` with its standard children and the Camunda, Zeebe,
    /// Spiff and Flowbot ways of naming the collection and item variables.
    pub(super) fn multi_instance(&mut self, element: ElementId) -> MultiInstance {
        let tree = self.tree;
        let zeebe = tree
            .extensions(element, Ns::Zeebe, "loopCharacteristics")
            .next();
        let zeebe_attr = |name| zeebe.and_then(|z| tree.attr(z, name));
        let flowbot_attr = |name| tree.ns_attr(element, Ns::Flowbot, name);
        // SpiffWorkflow names the variable by the data item's id (its `name` is a label).
        let data_item_name = |child| {
            tree.child(element, Ns::Bpmn, child)
                .and_then(|item| tree.attr(item, "id").or_else(|| tree.attr(item, "name")))
        };
        let child_text = |child| {
            tree.child(element, Ns::Bpmn, child)
                .and_then(|c| tree.text(c))
                .map(|(t, _)| t)
        };
        let variable = |value: Option<&str>| {
            value
                .map(|v| strip_expression_wrappers(v).to_owned())
                .filter(|v| !v.is_empty())
        };

        let collection_text = tree
            .ns_attr(element, Ns::Camunda, "collection")
            .or_else(|| zeebe_attr("inputCollection"))
            .or_else(|| flowbot_attr("collection"));
        let collection = self.attr_expr(element, collection_text).or_else(|| {
            tree.child(element, Ns::Bpmn, "loopDataInputRef")
                .and_then(|c| self.text_expr(c))
        });
        MultiInstance {
            sequential: self.bool_attr(element, Ns::NoNamespace, "isSequential", false),
            collection,
            element_variable: variable(
                tree.ns_attr(element, Ns::Camunda, "elementVariable")
                    .or_else(|| zeebe_attr("inputElement"))
                    .or_else(|| flowbot_attr("elementVariable"))
                    .or_else(|| data_item_name("inputDataItem")),
            ),
            cardinality: tree
                .child(element, Ns::Bpmn, "loopCardinality")
                .and_then(|c| self.text_expr(c)),
            completion_condition: tree
                .child(element, Ns::Bpmn, "completionCondition")
                .and_then(|c| self.text_expr(c)),
            output_collection: variable(
                zeebe_attr("outputCollection")
                    .or_else(|| flowbot_attr("outputCollection"))
                    .or_else(|| child_text("loopDataOutputRef")),
            ),
            output_element: variable(
                zeebe_attr("outputElement")
                    .or_else(|| flowbot_attr("outputElement"))
                    .or_else(|| data_item_name("outputDataItem")),
            ),
        }
    }

    /// `flowbot:retries`, `flowbot:retryDelay`, `flowbot:retryMaxDelay` on an activity.
    pub(super) fn retry_policy(&mut self, element: ElementId) -> Option<RetryPolicy> {
        let tree = self.tree;
        let delay = tree.ns_attr(element, Ns::Flowbot, "retryDelay");
        let max_delay = tree.ns_attr(element, Ns::Flowbot, "retryMaxDelay");
        let Some(retries) = tree.ns_attr(element, Ns::Flowbot, "retries") else {
            if delay.is_some() || max_delay.is_some() {
                self.warning(element, "`flowbot:retryDelay`/`flowbot:retryMaxDelay` ignored without `flowbot:retries`");
            }
            return None;
        };
        let Ok(retries) = retries.trim().parse::<u32>() else {
            self.error(
                element,
                format!("`flowbot:retries` must be a whole number, found `{retries}`"),
            );
            return None;
        };
        let initial_delay_ms = self
            .duration_ms(element, "retryDelay", delay)?
            .unwrap_or(DEFAULT_RETRY_DELAY_MS);
        let max_delay_ms = self
            .duration_ms(element, "retryMaxDelay", max_delay)?
            .unwrap_or(DEFAULT_RETRY_MAX_DELAY_MS.max(initial_delay_ms));
        if max_delay_ms < initial_delay_ms {
            self.error(
                element,
                "`flowbot:retryMaxDelay` is shorter than `flowbot:retryDelay`",
            );
            return None;
        }
        Some(RetryPolicy {
            retries,
            initial_delay_ms,
            max_delay_ms,
        })
    }

    /// Parses a delay such as `500ms`, `2s`, `5m`, `1h` or a bare number of milliseconds.
    /// `Some(None)` when absent, `None` when malformed (reported).
    fn duration_ms(
        &mut self,
        element: ElementId,
        attribute: &str,
        value: Option<&str>,
    ) -> Option<Option<u64>> {
        let Some(value) = value else {
            return Some(None);
        };
        match crate::timer::parse_short_duration_ms(value.trim()) {
            Some(ms) => Some(Some(ms)),
            None => {
                let message = format!(
                    "`flowbot:{attribute}` must be a duration such as `500ms`, `2s`, `5m` or `1h`, found `{value}`"
                );
                self.error(element, message);
                None
            }
        }
    }

    /// The ids of a user task's `camunda:formData` fields, in order.
    pub(super) fn form_fields(&self, element: ElementId) -> Vec<String> {
        let tree = self.tree;
        tree.extensions(element, Ns::Camunda, "formData")
            .flat_map(|data| tree.children(data))
            .filter(|&field| tree.is(field, Ns::Camunda, "formField"))
            .filter_map(|field| tree.attr(field, "id").map(str::to_owned))
            .collect()
    }

    /// The `flowbot:rule` attachments of a node.
    pub(super) fn rules(&mut self, element: ElementId) -> Vec<RuleAttachment> {
        let tree = self.tree;
        let rules: Vec<ElementId> = tree.extensions(element, Ns::Flowbot, "rule").collect();
        rules
            .into_iter()
            .filter_map(|rule| self.rule(rule))
            .collect()
    }

    fn rule(&mut self, rule: ElementId) -> Option<RuleAttachment> {
        let tree = self.tree;
        let variable = tree.attr(rule, "variable").map(str::to_owned);
        let point = match (tree.attr(rule, "point"), variable) {
            (Some("guard_complete"), _) => AttachPoint::GuardComplete,
            (Some("guard_message"), _) => AttachPoint::GuardMessage,
            (Some("on_enter"), _) => AttachPoint::OnEnter,
            (Some("on_leave"), _) => AttachPoint::OnLeave,
            (Some("on_start"), _) => AttachPoint::OnStart,
            (Some("on_status_change"), _) => AttachPoint::OnStatusChange,
            (Some("guard_variable"), Some(variable)) => AttachPoint::GuardVariable(variable),
            (Some("on_variable_change"), Some(variable)) => AttachPoint::OnVariableChange(variable),
            (Some(point @ ("guard_variable" | "on_variable_change")), None) => {
                self.error(
                    rule,
                    format!("rule point `{point}` needs a `variable` attribute"),
                );
                return None;
            }
            (point, _) => {
                let found = point.map_or("nothing".to_owned(), |p| format!("`{p}`"));
                self.error(
                    rule,
                    format!(
                        "`flowbot:rule` needs `point` = guard_complete, guard_message, guard_variable, on_enter, \
                         on_leave, on_start, on_variable_change or on_status_change; found {found}"
                    ),
                );
                return None;
            }
        };
        let source = match (tree.attr(rule, "file"), tree.text(rule)) {
            (Some(file), None) => {
                if !is_plain_relative_path(file) {
                    self.error(
                        rule,
                        format!(
                            "rule file `{file}` must be a relative path inside the rules folder"
                        ),
                    );
                    return None;
                }
                RuleSource::File(file.to_owned())
            }
            (None, Some((inline, _))) => RuleSource::Inline(inline.to_owned()),
            (Some(_), Some(_)) => {
                self.error(
                    rule,
                    "`flowbot:rule` has both a `file` and inline source; keep one",
                );
                return None;
            }
            (None, None) => {
                self.error(
                    rule,
                    "`flowbot:rule` has neither a `file` attribute nor inline source",
                );
                return None;
            }
        };
        Some(RuleAttachment {
            point,
            rule: source,
            span: self.span(rule),
        })
    }

    /// The `flowbot:llm` settings of a service task with `flowbot:type="llm"`.
    pub(super) fn llm_task(&mut self, task: ElementId) -> Option<LlmTask> {
        let tree = self.tree;
        let Some(llm) = tree.extensions(task, Ns::Flowbot, "llm").next() else {
            self.error(
                task,
                "`flowbot:type=\"llm\"` needs a `flowbot:llm` element in `extensionElements`",
            );
            return None;
        };
        let mode = match tree.attr(llm, "mode") {
            Some("generate") => LlmMode::Generate,
            Some("extract") => LlmMode::Extract,
            Some("classify") => LlmMode::Classify,
            other => {
                let found = other.map_or("nothing".to_owned(), |m| format!("`{m}`"));
                self.error(
                    llm,
                    format!(
                        "`flowbot:llm` needs `mode` = generate, extract or classify; found {found}"
                    ),
                );
                return None;
            }
        };
        let child_text = |name| {
            tree.children(llm)
                .find(|&c| tree.is(c, Ns::Flowbot, name))
                .and_then(|c| tree.text(c))
                .map(|(text, _)| text.to_owned())
        };
        let Some(prompt) = child_text("prompt") else {
            self.error(llm, "`flowbot:llm` needs a non-empty `flowbot:prompt`");
            return None;
        };
        let labels: Vec<String> = tree
            .children(llm)
            .filter(|&c| tree.is(c, Ns::Flowbot, "label"))
            .filter_map(|c| tree.text(c).map(|(text, _)| text.to_owned()))
            .collect();
        let schema = match tree
            .children(llm)
            .find(|&c| tree.is(c, Ns::Flowbot, "schema"))
        {
            None => None,
            Some(schema) => match tree
                .text(schema)
                .map(|(text, _)| serde_json::from_str::<serde_json::Value>(text))
            {
                Some(Ok(value @ serde_json::Value::Object(_))) => Some(value),
                Some(Ok(_)) => {
                    self.error(schema, "`flowbot:schema` must be a JSON object");
                    return None;
                }
                Some(Err(error)) => {
                    self.error(
                        schema,
                        format!("`flowbot:schema` is not valid JSON: {error}"),
                    );
                    return None;
                }
                None => {
                    self.error(schema, "`flowbot:schema` is empty");
                    return None;
                }
            },
        };
        let output = self.attr_string(llm, "output");
        let problem = match mode {
            LlmMode::Classify if labels.is_empty() => Some("a classify step needs `flowbot:label` elements"),
            LlmMode::Extract if schema.is_none() => Some("an extract step needs a `flowbot:schema`"),
            LlmMode::Generate | LlmMode::Classify if output.is_none() => {
                Some("this step needs an `output` attribute naming the variable that receives the result")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            self.error(llm, problem);
            return None;
        }
        let options = tree
            .attributes(llm)
            .iter()
            .filter(|a| a.ns == Ns::NoNamespace && !LLM_FIELDS.contains(&a.name))
            .map(|a| (a.name.to_owned(), option_value(&a.value)))
            .collect();
        Some(LlmTask {
            mode,
            prompt,
            system: child_text("system"),
            output,
            schema,
            labels,
            options,
        })
    }
}

/// A generation option: a JSON number or boolean when it reads as one, else a string.
fn option_value(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text.trim()) {
        Ok(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => value,
        _ => serde_json::Value::String(text.to_owned()),
    }
}

/// Whether `path` is relative and stays inside its base folder (no `..`, no root, no drive).
fn is_plain_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths_stay_inside_the_rules_folder() {
        assert!(is_plain_relative_path("orders/guard.rhai"));
        assert!(!is_plain_relative_path("../secrets.rhai"));
        assert!(!is_plain_relative_path("/etc/passwd"));
        assert!(!is_plain_relative_path("a\\b.rhai"));
        assert!(!is_plain_relative_path(""));
    }

    #[test]
    fn options_keep_their_json_type() {
        assert_eq!(option_value("64"), serde_json::json!(64));
        assert_eq!(option_value("0.2"), serde_json::json!(0.2));
        assert_eq!(option_value("true"), serde_json::json!(true));
        assert_eq!(option_value("concise"), serde_json::json!("concise"));
    }
}
