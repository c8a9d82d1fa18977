//! Second pass: builds the process model from the element tree.
//!
//! The builder reports shape problems (a node without an id, a timer without a time, a malformed
//! Flowbot extension); whether flows point at existing nodes is the graph compiler's business.
//! Embedded subprocesses are built by recursion, bounded by [`MAX_SUBPROCESS_DEPTH`].

use super::namespaces::Ns;
use super::xml_tree::{ElementId, XmlTree};
use crate::diagnostics::Diagnostic;
use crate::model::{
    Activity, CallActivity, Definitions, EventTrigger, Expr, GatewayKind, Lane, NamedRef, Node,
    NodeKind, Process, SequenceFlow, Span, StandardLoop, SubProcess, TaskKind,
};
use crate::script::strip_expression_wrappers;
use std::collections::HashMap;
use std::path::Path;

/// The deepest nesting of embedded subprocesses accepted. The builder recurses once per level, so
/// this bound (not the XML depth limit) keeps its stack use small on any thread.
pub const MAX_SUBPROCESS_DEPTH: usize = 32;

/// BPMN elements that may sit in a process or subprocess and carry nothing the model needs.
const IGNORED_SCOPE_ELEMENTS: &[&str] = &[
    "documentation",
    "extensionElements",
    "ioSpecification",
    "property",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "textAnnotation",
    "association",
    "group",
    "incoming",
    "outgoing",
    "auditing",
    "monitoring",
    "resourceRole",
    "performer",
    "humanPerformer",
    "potentialOwner",
    "correlationSubscription",
    "supportedInterfaceRef",
    "multiInstanceLoopCharacteristics",
    "standardLoopCharacteristics",
    "dataInputAssociation",
    "dataOutputAssociation",
];

/// What building a flow node gave.
// Returned once per node and moved straight into its scope: boxing would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum BuiltNode {
    /// The node.
    Node(Node),
    /// A flow node too malformed to keep; the problem is already reported.
    Reported,
    /// The element is not a flow node.
    NotAFlowNode,
}

/// The state shared by the builder functions: the tree, the diagnostics and the top-level
/// definitions that references resolve against.
pub(super) struct Context<'t, 'i> {
    pub(super) tree: &'t XmlTree<'i>,
    pub(super) file: &'t Path,
    pub(super) diagnostics: &'t mut Vec<Diagnostic>,
    /// Top-level definitions by kind: id → (name or code, correlation key).
    pub(super) messages: HashMap<&'t str, (Option<String>, Option<Expr>)>,
    pub(super) signals: HashMap<&'t str, Option<String>>,
    pub(super) errors: HashMap<&'t str, Option<String>>,
    pub(super) escalations: HashMap<&'t str, Option<String>>,
    /// How many subprocesses enclose the scope being built.
    subprocess_depth: usize,
    /// The id of the flow node or sequence flow being built, named by diagnostics about its parts.
    current_node: Option<&'t str>,
}

impl<'t, 'i> Context<'t, 'i> {
    /// Reports an error about element `at`.
    pub(super) fn error(&mut self, at: ElementId, message: impl Into<String>) {
        let diagnostic = Diagnostic::error(self.file, self.span(at), message);
        self.push(at, diagnostic);
    }

    /// Reports a warning about element `at`.
    pub(super) fn warning(&mut self, at: ElementId, message: impl Into<String>) {
        let diagnostic = Diagnostic::warning(self.file, self.span(at), message);
        self.push(at, diagnostic);
    }

    fn push(&mut self, at: ElementId, diagnostic: Diagnostic) {
        let diagnostic = match self.nearest_id(at) {
            Some(id) => diagnostic.with_id(id),
            None => diagnostic,
        };
        self.diagnostics.push(diagnostic);
    }

    /// The `id` of `at`, else of the flow node being built, for diagnostics.
    fn nearest_id(&self, at: ElementId) -> Option<&'t str> {
        self.tree.attr(at, "id").or(self.current_node)
    }

    /// Where element `at` starts.
    pub(super) fn span(&self, at: ElementId) -> Span {
        self.tree.element(at).span
    }

    /// The local name of element `at`.
    pub(super) fn name(&self, at: ElementId) -> &'t str {
        self.tree.element(at).name
    }

    /// An owned copy of the unprefixed attribute `name`.
    pub(super) fn attr_string(&self, at: ElementId, name: &str) -> Option<String> {
        self.tree.attr(at, name).map(str::to_owned)
    }

    /// A `true`/`false` attribute, `default` when absent; anything else is reported.
    pub(super) fn bool_attr(&mut self, at: ElementId, ns: Ns, name: &str, default: bool) -> bool {
        match self.tree.ns_attr(at, ns, name).map(str::trim) {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                let message =
                    format!("attribute `{name}` must be `true` or `false`, found `{other}`");
                self.error(at, message);
                default
            }
        }
    }

    /// The text of `at` as an expression (wrappers such as `${...}` removed), with its
    /// `language` attribute; `None` when empty.
    pub(super) fn text_expr(&self, at: ElementId) -> Option<Expr> {
        let (text, span) = self.tree.text(at)?;
        let source = strip_expression_wrappers(text);
        // The wrapper-free source is a slice of `text`: its span is past the removed prefix.
        let prefix = text
            .get(..(source.as_ptr() as usize).saturating_sub(text.as_ptr() as usize))
            .unwrap_or("");
        (!source.is_empty()).then(|| Expr {
            language: self.attr_string(at, "language"),
            source: source.to_owned(),
            span: span_after(span, prefix),
        })
    }

    /// An attribute value as an expression located at its element.
    pub(super) fn attr_expr(&self, at: ElementId, value: Option<&str>) -> Option<Expr> {
        let source = strip_expression_wrappers(value?);
        (!source.is_empty()).then(|| Expr {
            language: None,
            source: source.to_owned(),
            span: self.span(at),
        })
    }
}

/// The span reached from `start` after the text `skipped`.
fn span_after(start: Span, skipped: &str) -> Span {
    match skipped.rfind('\n') {
        Some(last_newline) => {
            let lines = skipped.matches('\n').count() as u32;
            let col = skipped[last_newline + 1..].chars().count() as u32 + 1;
            Span::new(start.line + lines, col)
        }
        None => Span::new(start.line, start.col + skipped.chars().count() as u32),
    }
}

/// Builds the definitions from the tree; `None` when the root is not a BPMN `definitions`.
pub(super) fn build_definitions(
    tree: &XmlTree<'_>,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Definitions> {
    let Some(root) = tree.root() else {
        let span = Span::new(1, 1);
        diagnostics.push(Diagnostic::error(
            file,
            span,
            "not a BPMN 2.0 file: no `definitions` element in the BPMN model namespace",
        ));
        return None;
    };
    if !tree.is(root, Ns::Bpmn, "definitions") {
        let element = tree.element(root);
        diagnostics.push(Diagnostic::error(
            file,
            element.span,
            format!(
                "not a BPMN 2.0 file: the root element is `{}`, expected `definitions`",
                element.name
            ),
        ));
        return None;
    }
    let mut context = Context {
        tree,
        file,
        diagnostics,
        messages: HashMap::new(),
        signals: HashMap::new(),
        errors: HashMap::new(),
        escalations: HashMap::new(),
        subprocess_depth: 0,
        current_node: None,
    };
    let mut definitions = Definitions {
        source: file.to_path_buf(),
        ..Definitions::default()
    };
    context.read_top_level_definitions(root, &mut definitions);
    let mut participants: HashMap<&str, &str> = HashMap::new();
    for child in tree.children(root) {
        if tree.is(child, Ns::Bpmn, "process") {
            if let Some(process) = context.build_process(child) {
                definitions.processes.push(process);
            }
        } else if tree.is(child, Ns::Bpmn, "collaboration") {
            for participant in tree
                .children(child)
                .filter(|&p| tree.is(p, Ns::Bpmn, "participant"))
            {
                if let (Some(process), Some(name)) = (
                    tree.attr(participant, "processRef"),
                    tree.attr(participant, "name"),
                ) {
                    participants.entry(process).or_insert(name);
                }
            }
        }
    }
    for process in definitions
        .processes
        .iter_mut()
        .filter(|p| p.name.is_none())
    {
        if let Some(name) = participants.get(process.id.as_str()) {
            process.name = Some((*name).to_owned());
        }
    }
    if definitions.processes.is_empty() {
        context.error(root, "the file defines no `process`");
    }
    Some(definitions)
}

impl<'t, 'i> Context<'t, 'i> {
    /// Reads messages, signals, errors and escalations (they may follow the processes that use
    /// them, so this runs first).
    fn read_top_level_definitions(&mut self, root: ElementId, definitions: &mut Definitions) {
        let tree = self.tree;
        for child in tree.children(root) {
            if !tree.element(child).ns.is_bpmn() {
                continue;
            }
            let (list, name_attr) = match tree.element(child).name {
                "message" => (&mut definitions.messages, "name"),
                "signal" => (&mut definitions.signals, "name"),
                "error" => (&mut definitions.errors, "errorCode"),
                "escalation" => (&mut definitions.escalations, "escalationCode"),
                _ => continue,
            };
            let Some(id) = tree.attr(child, "id") else {
                let message = format!("`{}` has no `id` attribute", tree.element(child).name);
                self.error(child, message);
                continue;
            };
            let name = self.attr_string(child, name_attr);
            list.push(NamedRef {
                id: id.to_owned(),
                name: name.clone(),
                span: self.span(child),
            });
            match tree.element(child).name {
                "message" => {
                    let key = tree
                        .extensions(child, Ns::Zeebe, "subscription")
                        .find_map(|s| self.attr_expr(s, tree.attr(s, "correlationKey")))
                        .or_else(|| {
                            self.attr_expr(
                                child,
                                tree.ns_attr(child, Ns::Flowbot, "correlationKey"),
                            )
                        });
                    self.messages.insert(id, (name, key));
                }
                "signal" => {
                    self.signals.insert(id, name);
                }
                "error" => {
                    self.errors.insert(id, name);
                }
                _ => {
                    self.escalations.insert(id, name);
                }
            }
        }
    }

    fn build_process(&mut self, element: ElementId) -> Option<Process> {
        let Some(id) = self.attr_string(element, "id") else {
            self.error(element, "`process` has no `id` attribute");
            return None;
        };
        let executable = self.bool_attr(element, Ns::NoNamespace, "isExecutable", true);
        let (nodes, flows) = self.build_scope(element);
        Some(Process {
            id,
            name: self.attr_string(element, "name"),
            executable,
            nodes,
            flows,
            lanes: self.build_lanes(element),
            rules: self.rules(element),
            span: self.span(element),
        })
    }

    /// The flow nodes and sequence flows directly inside a process or subprocess. An association
    /// from a compensation boundary event to its handler becomes a flow to the handler.
    fn build_scope(&mut self, scope: ElementId) -> (Vec<Node>, Vec<SequenceFlow>) {
        let (nodes, mut flows) = self.build_scope_elements(scope);
        let tree = self.tree;
        for association in tree
            .children(scope)
            .filter(|&c| tree.is(c, Ns::Bpmn, "association"))
        {
            let (Some(source), Some(target)) = (
                tree.attr(association, "sourceRef"),
                tree.attr(association, "targetRef"),
            ) else {
                continue;
            };
            let compensation_boundary = nodes.iter().any(|n: &Node| {
                n.id == source
                    && matches!(
                        n.kind,
                        NodeKind::BoundaryEvent {
                            trigger: EventTrigger::Compensation { .. },
                            ..
                        }
                    )
            });
            if compensation_boundary {
                flows.push(SequenceFlow {
                    id: self
                        .attr_string(association, "id")
                        .unwrap_or_else(|| format!("{source}_compensation")),
                    name: None,
                    source: source.to_owned(),
                    target: target.to_owned(),
                    condition: None,
                    span: self.span(association),
                });
            }
        }
        (nodes, flows)
    }

    fn build_scope_elements(&mut self, scope: ElementId) -> (Vec<Node>, Vec<SequenceFlow>) {
        let tree = self.tree;
        let mut nodes = Vec::new();
        let mut flows = Vec::new();
        for child in tree.children(scope) {
            let element = tree.element(child);
            if !element.ns.is_bpmn() {
                continue;
            }
            match element.name {
                "sequenceFlow" => {
                    flows.extend(
                        self.naming_diagnostics_after(child, |context| context.build_flow(child)),
                    );
                }
                "laneSet" => {}
                "adHocSubProcess" => {
                    self.error(child, "ad-hoc subprocesses are not supported");
                }
                name if IGNORED_SCOPE_ELEMENTS.contains(&name) => {}
                _ => match self.build_node(child) {
                    BuiltNode::Node(node) => nodes.push(node),
                    BuiltNode::Reported => {}
                    BuiltNode::NotAFlowNode => {
                        let message = format!("unknown element `{}` ignored", element.name);
                        self.warning(child, message);
                    }
                },
            }
        }
        (nodes, flows)
    }

    /// Builds a flow node.
    fn build_node(&mut self, element: ElementId) -> BuiltNode {
        self.naming_diagnostics_after(element, |context| context.build_flow_node(element))
    }

    /// Runs `build` with diagnostics about parts of `element` naming its id.
    fn naming_diagnostics_after<T>(
        &mut self,
        element: ElementId,
        build: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let enclosing = std::mem::replace(&mut self.current_node, self.tree.attr(element, "id"));
        let built = build(self);
        self.current_node = enclosing;
        built
    }

    fn build_flow_node(&mut self, element: ElementId) -> BuiltNode {
        let tree = self.tree;
        let name = tree.element(element).name;
        let kind = match name {
            "startEvent" => Some(NodeKind::StartEvent {
                trigger: self.event_trigger(element),
                interrupting: self.bool_attr(element, Ns::NoNamespace, "isInterrupting", true),
            }),
            "endEvent" => Some(NodeKind::EndEvent {
                result: self.event_trigger(element),
            }),
            "intermediateThrowEvent" => Some(NodeKind::IntermediateThrowEvent {
                result: self.event_trigger(element),
            }),
            "intermediateCatchEvent" => match self.event_trigger(element) {
                Some(trigger) => Some(NodeKind::IntermediateCatchEvent { trigger }),
                None => {
                    self.error(element, "intermediate catch event has no event definition");
                    None
                }
            },
            "boundaryEvent" => self.boundary_event(element),
            "task" => Some(NodeKind::Task(self.activity(element, TaskKind::Plain))),
            "serviceTask" => self
                .service_task(element)
                .map(|kind| NodeKind::Task(self.activity(element, kind))),
            "scriptTask" => {
                let kind = TaskKind::Script {
                    script: self.script(element),
                };
                Some(NodeKind::Task(self.activity(element, kind)))
            }
            "userTask" => Some(NodeKind::Task(self.activity(element, TaskKind::User))),
            "manualTask" => Some(NodeKind::Task(self.activity(element, TaskKind::Manual))),
            "receiveTask" => {
                let message = tree
                    .attr(element, "messageRef")
                    .map(|r| self.message_ref(element, r))
                    .map(|m| self.with_local_correlation_key(element, element, m));
                Some(NodeKind::Task(
                    self.activity(element, TaskKind::Receive { message }),
                ))
            }
            "sendTask" => {
                let message = tree
                    .attr(element, "messageRef")
                    .and_then(|r| self.message_ref(element, r).name);
                let kind = TaskKind::Send {
                    message,
                    handler: self.service_handler(element),
                };
                Some(NodeKind::Task(self.activity(element, kind)))
            }
            "businessRuleTask" => {
                let kind = self.business_rule_task(element);
                Some(NodeKind::Task(self.activity(element, kind)))
            }
            "exclusiveGateway" => Some(NodeKind::Gateway(GatewayKind::Exclusive)),
            "parallelGateway" => Some(NodeKind::Gateway(GatewayKind::Parallel)),
            "inclusiveGateway" => Some(NodeKind::Gateway(GatewayKind::Inclusive)),
            "eventBasedGateway" => Some(NodeKind::Gateway(GatewayKind::EventBased)),
            "complexGateway" => Some(NodeKind::Gateway(GatewayKind::Complex)),
            "subProcess" | "transaction" if self.subprocess_depth >= MAX_SUBPROCESS_DEPTH => {
                self.error(
                    element,
                    format!("subprocesses are nested more than {MAX_SUBPROCESS_DEPTH} levels deep"),
                );
                None
            }
            "subProcess" | "transaction" => {
                self.subprocess_depth += 1;
                let (nodes, flows) = self.build_scope(element);
                self.subprocess_depth -= 1;
                let body = SubProcess {
                    nodes,
                    flows,
                    event_subprocess: self.bool_attr(
                        element,
                        Ns::NoNamespace,
                        "triggeredByEvent",
                        false,
                    ),
                    transaction: name == "transaction",
                };
                Some(NodeKind::SubProcess(self.activity(element, body)))
            }
            "callActivity" => {
                let called_element = self.attr_string(element, "calledElement").or_else(|| {
                    tree.extensions(element, Ns::Zeebe, "calledElement")
                        .find_map(|c| tree.attr(c, "processId"))
                        .map(|p| strip_expression_wrappers(p).to_owned())
                });
                let binding = self.call_binding(element);
                Some(NodeKind::CallActivity(self.activity(
                    element,
                    CallActivity {
                        called_element,
                        binding,
                    },
                )))
            }
            _ => return BuiltNode::NotAFlowNode,
        };
        let Some(kind) = kind else {
            return BuiltNode::Reported;
        };
        let Some(id) = self.attr_string(element, "id") else {
            self.error(element, format!("`{name}` has no `id` attribute"));
            return BuiltNode::Reported;
        };
        let activation_condition = tree
            .child(element, Ns::Bpmn, "activationCondition")
            .and_then(|c| self.text_expr(c));
        BuiltNode::Node(Node {
            id,
            name: self.attr_string(element, "name"),
            kind,
            default_flow: self.attr_string(element, "default"),
            activation_condition,
            rules: self.rules(element),
            span: self.span(element),
        })
    }

    fn boundary_event(&mut self, element: ElementId) -> Option<NodeKind> {
        let attached_to = self.attr_string(element, "attachedToRef");
        let trigger = self.event_trigger(element);
        let interrupting = self.bool_attr(element, Ns::NoNamespace, "cancelActivity", true);
        match (attached_to, trigger) {
            (Some(attached_to), Some(trigger)) => Some(NodeKind::BoundaryEvent {
                attached_to,
                trigger,
                interrupting,
            }),
            (None, _) => {
                self.error(element, "boundary event has no `attachedToRef`");
                None
            }
            (_, None) => {
                self.error(element, "boundary event has no event definition");
                None
            }
        }
    }

    /// Wraps a task, subprocess or call activity body with its loop and retry settings.
    fn activity<T>(&mut self, element: ElementId, body: T) -> Activity<T> {
        let tree = self.tree;
        Activity {
            body,
            multi_instance: tree
                .child(element, Ns::Bpmn, "multiInstanceLoopCharacteristics")
                .map(|mi| self.multi_instance(mi)),
            standard_loop: tree
                .child(element, Ns::Bpmn, "standardLoopCharacteristics")
                .map(|l| self.standard_loop(l)),
            retry: self.retry_policy(element),
            io: self.io_mapping(element),
            form: self.form_fields(element),
        }
    }

    /// `standardLoopCharacteristics`: `loopCondition`, `testBefore`, `loopMaximum`.
    fn standard_loop(&mut self, element: ElementId) -> StandardLoop {
        let tree = self.tree;
        let maximum = match tree.attr(element, "loopMaximum").map(str::trim) {
            None => None,
            Some(text) => match text.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        element,
                        format!("`loopMaximum` must be a whole number, found `{text}`"),
                    );
                    None
                }
            },
        };
        StandardLoop {
            condition: tree
                .child(element, Ns::Bpmn, "loopCondition")
                .and_then(|c| self.text_expr(c)),
            test_before: self.bool_attr(element, Ns::NoNamespace, "testBefore", false),
            maximum,
        }
    }

    fn build_flow(&mut self, element: ElementId) -> Option<SequenceFlow> {
        let tree = self.tree;
        let id = tree.attr(element, "id");
        let source = tree.attr(element, "sourceRef");
        let target = tree.attr(element, "targetRef");
        let (Some(id), Some(source), Some(target)) = (id, source, target) else {
            let missing: Vec<&str> = [("id", id), ("sourceRef", source), ("targetRef", target)]
                .iter()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| *name)
                .collect();
            self.error(
                element,
                format!("sequence flow lacks {}", missing.join(", ")),
            );
            return None;
        };
        let condition_element = tree.child(element, Ns::Bpmn, "conditionExpression");
        let condition = condition_element.and_then(|c| self.text_expr(c));
        if let (Some(empty), None) = (condition_element, &condition) {
            self.warning(
                empty,
                "empty `conditionExpression` ignored: the flow is unconditional",
            );
        }
        Some(SequenceFlow {
            id: id.to_owned(),
            name: self.attr_string(element, "name"),
            source: source.to_owned(),
            target: target.to_owned(),
            condition,
            span: self.span(element),
        })
    }

    /// The lanes of a process, nested lane sets flattened.
    fn build_lanes(&mut self, process: ElementId) -> Vec<Lane> {
        let tree = self.tree;
        let mut lanes = Vec::new();
        let mut lane_sets: Vec<ElementId> = tree
            .children(process)
            .filter(|&c| tree.is(c, Ns::Bpmn, "laneSet"))
            .collect();
        while let Some(lane_set) = lane_sets.pop() {
            for lane in tree
                .children(lane_set)
                .filter(|&c| tree.is(c, Ns::Bpmn, "lane"))
            {
                let Some(id) = self.attr_string(lane, "id") else {
                    self.error(lane, "`lane` has no `id` attribute");
                    continue;
                };
                let nodes = tree
                    .children(lane)
                    .filter(|&c| tree.is(c, Ns::Bpmn, "flowNodeRef"))
                    .filter_map(|c| tree.text(c).map(|(text, _)| text.to_owned()))
                    .collect();
                lanes.push(Lane {
                    id,
                    name: self.attr_string(lane, "name"),
                    nodes,
                });
                lane_sets.extend(
                    tree.children(lane)
                        .filter(|&c| tree.is(c, Ns::Bpmn, "childLaneSet")),
                );
            }
        }
        lanes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_after_skipped_text_counts_lines_and_characters() {
        assert_eq!(span_after(Span::new(3, 7), ""), Span::new(3, 7));
        assert_eq!(span_after(Span::new(3, 7), "${"), Span::new(3, 9));
        assert_eq!(span_after(Span::new(3, 7), "${\n  é"), Span::new(4, 4));
    }
}
