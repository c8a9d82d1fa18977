//! Loop, retry, rule and language-model settings carried by standard BPMN children, vendor
//! extensions (Camunda, Zeebe, SpiffWorkflow) and the Flowbot namespace.

use super::builder::Context;
use super::namespaces::Ns;
use super::xml_tree::ElementId;
use crate::model::{
    AttachPoint, CallBinding, Expr, IoMapping, LlmMode, LlmTask, Mapping, MultiInstance,
    RetryPolicy, RuleAttachment, RuleSource, Script,
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

    /// Input and output mappings of an activity: `camunda:inputOutput` (parameters given as
    /// `${expression}`, constant text, `camunda:script`, `camunda:list` or `camunda:map`),
    /// `zeebe:ioMapping` (`source` → `target`), Spiff `preScript`/`postScript`.
    pub(super) fn io_mapping(&mut self, element: ElementId) -> IoMapping {
        let tree = self.tree;
        let mut io = IoMapping::default();
        for block in tree.extensions(element, Ns::Camunda, "inputOutput") {
            for parameter in tree.children(block) {
                let inputs = if tree.is(parameter, Ns::Camunda, "inputParameter") {
                    true
                } else if tree.is(parameter, Ns::Camunda, "outputParameter") {
                    false
                } else {
                    continue;
                };
                let Some(target) = self.attr_string(parameter, "name") else {
                    self.error(parameter, "Camunda parameter without a `name`");
                    continue;
                };
                let Some(source) = self.camunda_parameter(parameter) else {
                    continue;
                };
                let mapping = Mapping { target, source };
                if inputs {
                    io.inputs.push(mapping);
                } else {
                    io.outputs.push(mapping);
                }
            }
        }
        // Camunda call activities pass variables with `camunda:in` (to the called process) and
        // `camunda:out` (back); `variables="all"` is what happens without any mapping.
        for passing in tree.extensions(element, Ns::Camunda, "in") {
            if let Some(mapping) = self.camunda_passing(passing) {
                io.inputs.push(mapping);
            }
        }
        for passing in tree.extensions(element, Ns::Camunda, "out") {
            if let Some(mapping) = self.camunda_passing(passing) {
                io.outputs.push(mapping);
            }
        }
        for block in tree.extensions(element, Ns::Zeebe, "ioMapping") {
            for mapping in tree.children(block) {
                let inputs = if tree.is(mapping, Ns::Zeebe, "input") {
                    true
                } else if tree.is(mapping, Ns::Zeebe, "output") {
                    false
                } else {
                    continue;
                };
                let (Some(source), Some(target)) = (
                    tree.attr(mapping, "source"),
                    self.attr_string(mapping, "target"),
                ) else {
                    self.error(mapping, "Zeebe mapping without `source` and `target`");
                    continue;
                };
                let Some(source) = self.attr_expr(mapping, Some(source)) else {
                    continue;
                };
                let mapping = Mapping { target, source };
                if inputs {
                    io.inputs.push(mapping);
                } else {
                    io.outputs.push(mapping);
                }
            }
        }
        let spiff_script = |name| {
            tree.extensions(element, Ns::Spiff, name)
                .find_map(|s| tree.text(s))
                .map(|(source, span)| Script {
                    language: None,
                    source: source.to_owned(),
                    span,
                })
        };
        io.pre_script = spiff_script("preScript");
        io.post_script = spiff_script("postScript");
        io
    }

    /// One `camunda:in` or `camunda:out` of a call activity: `target` ← `source` (a variable) or
    /// `sourceExpression`; `None` for `variables="all"` (the default), a business key (a warning)
    /// and after an error.
    fn camunda_passing(&mut self, passing: ElementId) -> Option<Mapping> {
        let tree = self.tree;
        if tree.attr(passing, "variables").is_some() {
            return None;
        }
        if tree.attr(passing, "businessKey").is_some() {
            self.warning(
                passing,
                "`camunda:in businessKey` is ignored: child instances have no business key",
            );
            return None;
        }
        let source = match (
            tree.attr(passing, "source"),
            tree.attr(passing, "sourceExpression"),
        ) {
            (Some(variable), None) => Some(Expr {
                language: None,
                source: variable.trim().to_owned(),
                span: self.span(passing),
            }),
            (None, Some(expression)) => self.attr_expr(passing, Some(expression)),
            _ => None,
        };
        match (source, self.attr_string(passing, "target")) {
            (Some(source), Some(target)) => Some(Mapping { target, source }),
            _ => {
                self.error(
                    passing,
                    "`camunda:in`/`camunda:out` needs `target` and one of `source`, `sourceExpression` (or `variables=\"all\"`)",
                );
                None
            }
        }
    }

    /// Which version of the called process a call activity starts: Camunda
    /// `camunda:calledElementBinding` (`latest`, `deployment`, `version` with
    /// `camunda:calledElementVersion`) or Zeebe `zeebe:calledElement bindingType` (`latest`,
    /// `deployment`). Version tags are refused.
    pub(super) fn call_binding(&mut self, element: ElementId) -> CallBinding {
        let tree = self.tree;
        let zeebe = tree.extensions(element, Ns::Zeebe, "calledElement").next();
        let (at, binding) = match (
            tree.ns_attr(element, Ns::Camunda, "calledElementBinding"),
            zeebe.and_then(|z| tree.attr(z, "bindingType").map(|b| (z, b))),
        ) {
            (Some(binding), _) => (element, binding),
            (None, Some((z, binding))) => (z, binding),
            (None, None) => return CallBinding::Latest,
        };
        match binding.trim() {
            "latest" => CallBinding::Latest,
            "deployment" => CallBinding::Deployment,
            "version" => {
                let version = tree.ns_attr(element, Ns::Camunda, "calledElementVersion");
                match version.and_then(|v| v.trim().parse::<u32>().ok()) {
                    Some(version) if version > 0 => CallBinding::Version(version),
                    _ => {
                        self.error(
                            element,
                            "`camunda:calledElementBinding=\"version\"` needs `camunda:calledElementVersion` = a version number (1, 2, ...)",
                        );
                        CallBinding::Latest
                    }
                }
            }
            other => {
                self.error(
                    at,
                    format!("call activity binding `{other}` is not supported: use `latest`, `deployment` or `version`"),
                );
                CallBinding::Latest
            }
        }
    }

    /// The value of a Camunda input or output parameter as an expression: `${...}` text is an
    /// expression, other text a constant, `camunda:script` a script expression, `camunda:list`
    /// and `camunda:map` literals of their (constant or `${...}`) entries; no value is `()`.
    fn camunda_parameter(&mut self, parameter: ElementId) -> Option<Expr> {
        let tree = self.tree;
        let span = self.span(parameter);
        let expr = |source: String| Expr {
            language: None,
            source,
            span,
        };
        if let Some(script) = tree.child(parameter, Ns::Camunda, "script") {
            let (source, script_span) = tree.text(script)?;
            return Some(Expr {
                language: self.attr_string(script, "scriptFormat"),
                source: source.to_owned(),
                span: script_span,
            });
        }
        if let Some(list) = tree.child(parameter, Ns::Camunda, "list") {
            let items: Vec<String> = tree
                .children(list)
                .filter(|&v| tree.is(v, Ns::Camunda, "value"))
                .map(|v| value_literal(tree.text(v).map(|(t, _)| t)))
                .collect();
            return Some(expr(format!("[{}]", items.join(", "))));
        }
        if let Some(map) = tree.child(parameter, Ns::Camunda, "map") {
            let entries: Vec<String> = tree
                .children(map)
                .filter(|&e| tree.is(e, Ns::Camunda, "entry"))
                .map(|e| {
                    let key = tree.attr(e, "key").unwrap_or_default();
                    format!(
                        "{}: {}",
                        serde_json::to_string(key).unwrap_or_default(),
                        value_literal(tree.text(e).map(|(t, _)| t))
                    )
                })
                .collect();
            return Some(expr(format!("#{{{}}}", entries.join(", "))));
        }
        match tree.text(parameter) {
            None => Some(expr("()".into())),
            Some((text, _)) if is_wrapped_expression(text) => self.text_expr(parameter),
            Some((text, _)) => Some(expr(value_literal(Some(text)))),
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
        let point = match tree.attr(rule, "point") {
            Some(point) => AttachPoint::parse(point, variable.as_deref()),
            None => Err(format!(
                "`flowbot:rule` needs `point` = {}",
                AttachPoint::NAMES.join(", ")
            )),
        };
        let point = match point {
            Ok(point) => point,
            Err(message) => {
                self.error(rule, message);
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

/// Whether a Camunda value is an expression (`${...}` or `#{...}`) rather than constant text.
fn is_wrapped_expression(text: &str) -> bool {
    let text = text.trim();
    (text.starts_with("${") || text.starts_with("#{")) && text.ends_with('}')
}

/// A Camunda list or map value (or constant parameter) as a Rhai literal: an expression's
/// inside, or the text as a string.
fn value_literal(text: Option<&str>) -> String {
    match text {
        None => "()".into(),
        Some(text) if is_wrapped_expression(text) => {
            format!("({})", strip_expression_wrappers(text))
        }
        Some(text) => serde_json::to_string(text).unwrap_or_else(|_| "()".into()),
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
