//! Task bodies: service handlers from Flowbot and vendor attributes, scripts, business rules.

use super::builder::Context;
use super::namespaces::Ns;
use super::xml_tree::ElementId;
use crate::model::{DecisionCall, DecisionResultMapping, Script, TaskKind};
use crate::script::strip_expression_wrappers;

impl Context<'_, '_> {
    /// A service task: a handler call, or a language-model step when `flowbot:type="llm"`.
    /// `None` when the task is malformed (already reported).
    pub(super) fn service_task(&mut self, element: ElementId) -> Option<TaskKind> {
        match self.tree.ns_attr(element, Ns::Flowbot, "type") {
            None => Some(TaskKind::Service {
                handler: self.service_handler(element),
            }),
            Some("llm") => self.llm_task(element).map(TaskKind::Llm),
            Some(other) => {
                let message = format!("unknown `flowbot:type` `{other}` (expected `llm`)");
                self.error(element, message);
                None
            }
        }
    }

    /// The handler name of a service or send task, from the first of: `flowbot:handler`, Zeebe
    /// `taskDefinition type`, Camunda external-task `topic`, `camunda:type`, `camunda:class`,
    /// `camunda:delegateExpression`, `camunda:expression`, Spiff `serviceTaskOperator id`, and an
    /// `implementation` that is not a `##` keyword.
    pub(super) fn service_handler(&self, element: ElementId) -> Option<String> {
        let tree = self.tree;
        let camunda = |name| tree.ns_attr(element, Ns::Camunda, name);
        let handler = tree
            .ns_attr(element, Ns::Flowbot, "handler")
            .or_else(|| {
                tree.extensions(element, Ns::Zeebe, "taskDefinition")
                    .find_map(|t| tree.attr(t, "type"))
            })
            .or_else(|| camunda("topic"))
            .or_else(|| camunda("type").filter(|t| *t != "external"))
            .or_else(|| camunda("class"))
            .or_else(|| camunda("delegateExpression"))
            .or_else(|| camunda("expression"))
            .or_else(|| {
                tree.extensions(element, Ns::Spiff, "serviceTaskOperator")
                    .find_map(|o| tree.attr(o, "id").or_else(|| tree.attr(o, "operationName")))
            })
            .or_else(|| {
                tree.attr(element, "implementation")
                    .filter(|i| !i.starts_with("##"))
            })?;
        let handler = strip_expression_wrappers(handler);
        (!handler.is_empty()).then(|| handler.to_owned())
    }

    /// The `<script>` of a script task with its `scriptFormat`. Script text is kept verbatim
    /// (only trimmed): unlike an expression, a Rhai script may legitimately start with `#{`.
    pub(super) fn script(&self, element: ElementId) -> Option<Script> {
        let tree = self.tree;
        let (source, span) = tree
            .child(element, Ns::Bpmn, "script")
            .and_then(|s| tree.text(s))?;
        Some(Script {
            language: self.attr_string(element, "scriptFormat"),
            source: source.to_owned(),
            span,
        })
    }

    /// A business-rule task: an inline `<flowbot:script>` (Rhai) or a decision reference:
    /// Camunda `decisionRef` (+ `resultVariable`, `mapDecisionResult`, default `resultList`),
    /// Zeebe `calledDecision decisionId resultVariable`, SpiffWorkflow `calledDecisionId` (the
    /// outputs merged into the variables), or `flowbot:decision` (+ `flowbot:resultVariable`),
    /// Zeebe's and Flowbot's giving the decision's value as it is.
    pub(super) fn business_rule_task(&mut self, element: ElementId) -> TaskKind {
        let tree = self.tree;
        let script = tree
            .extensions(element, Ns::Flowbot, "script")
            .find_map(|s| {
                tree.text(s).map(|(source, span)| Script {
                    language: tree.attr(s, "language").map(str::to_owned),
                    source: source.to_owned(),
                    span,
                })
            });
        let span = self.span(element);
        let clean = |text: &str| strip_expression_wrappers(text).trim().to_owned();
        let decision = if let Some(id) = tree.ns_attr(element, Ns::Camunda, "decisionRef") {
            let mapping = match tree.ns_attr(element, Ns::Camunda, "mapDecisionResult") {
                None => DecisionResultMapping::ResultList,
                Some(text) => match DecisionResultMapping::parse_camunda(text) {
                    Some(mapping) => mapping,
                    None => {
                        let message = format!("unknown `camunda:mapDecisionResult` `{text}` (expected singleEntry, singleResult, collectEntries or resultList)");
                        self.error(element, message);
                        DecisionResultMapping::ResultList
                    }
                },
            };
            if let Some(binding) = tree.ns_attr(element, Ns::Camunda, "decisionRefBinding") {
                if binding != "latest" && binding != "deployment" {
                    let message = format!("`camunda:decisionRefBinding=\"{binding}\"` is not supported: the decision deployed with the process is used");
                    self.warning(element, message);
                }
            }
            Some(DecisionCall {
                decision: clean(id),
                result_variable: tree
                    .ns_attr(element, Ns::Camunda, "resultVariable")
                    .map(clean),
                mapping,
                span,
            })
        } else if let Some(called) = tree.extensions(element, Ns::Zeebe, "calledDecision").next() {
            tree.attr(called, "decisionId").map(|id| DecisionCall {
                decision: clean(id),
                result_variable: tree.attr(called, "resultVariable").map(clean),
                mapping: DecisionResultMapping::Value,
                span: self.span(called),
            })
        } else if let Some(called) = tree
            .extensions(element, Ns::Spiff, "calledDecisionId")
            .next()
        {
            tree.text(called).map(|(id, span)| DecisionCall {
                decision: clean(id),
                result_variable: None,
                mapping: DecisionResultMapping::MergeOutputs,
                span,
            })
        } else {
            tree.ns_attr(element, Ns::Flowbot, "decision")
                .map(|id| DecisionCall {
                    decision: clean(id),
                    result_variable: tree
                        .ns_attr(element, Ns::Flowbot, "resultVariable")
                        .map(clean),
                    mapping: DecisionResultMapping::Value,
                    span,
                })
        };
        if let Some(call) = &decision {
            if call.decision.is_empty() {
                self.error(element, "the decision reference is empty");
            }
        }
        TaskKind::BusinessRule { script, decision }
    }
}
