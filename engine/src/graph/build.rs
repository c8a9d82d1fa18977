//! Flattens one process of the model into the compiled graph: nodes with their behaviour, flows
//! with their compiled conditions, scopes, and the upstream sets of inclusive joins.

use super::{
    Behavior, BoundarySpec, BoundaryTrigger, Catalog, Category, CompiledCode, CompiledProcess,
    DecisionSpec, EndBehavior, EventStart, EventSubProcessSpec, Flow, FlowNode, IoSpec, LoopSpec,
    MultiSpec, ScopeId, ScopeInfo, ThrownEvent, WaitSpec,
};
use crate::diagnostics::Diagnostic;
use crate::model::{
    Activity, CallBinding, Definitions, EventTrigger, Expr, GatewayKind, Node, NodeKind, Process,
    Script, SequenceFlow, Span, TaskKind, Timer,
};
use crate::script::ScriptRuntime;
use crate::timer::TimerSpec;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

/// Script languages accepted as Rhai (compared case-insensitively; absent means Rhai).
const RHAI_LANGUAGES: &[&str] = &[
    "rhai",
    "text/rhai",
    "text/x-rhai",
    "application/rhai",
    "application/x-rhai",
];

/// Builds the compiled graph of `process`. Problems are pushed to `diagnostics`; the result is
/// `None` only when the graph cannot be built at all.
pub(super) fn build(
    defs: &Definitions,
    process: &Process,
    scripts: &Arc<ScriptRuntime>,
    catalog: &Catalog,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<CompiledProcess> {
    let mut builder = Builder {
        defs,
        scripts,
        catalog,
        file: &defs.source,
        diagnostics,
        graph: DiGraph::new(),
        scopes: vec![ScopeInfo {
            subprocess: None,
            parent: None,
            starts: Vec::new(),
            implicit_start: false,
            triggered_starts: Vec::new(),
            shares_variables: false,
            event_subprocesses: Vec::new(),
            transaction: false,
        }],
        node_ids: HashMap::new(),
        unsupported: Vec::new(),
        calling: vec![process.id.clone()],
        inlined: HashSet::new(),
        start_interrupting: HashMap::new(),
    };
    builder.add_scope(0, &process.nodes, &process.flows);
    let upstream = inclusive_join_upstream(&builder.graph);
    Some(CompiledProcess {
        id: process.id.clone(),
        name: process.name.clone(),
        source: defs.source.clone(),
        span: process.span,
        graph: builder.graph,
        scripts: Arc::clone(scripts),
        scopes: builder.scopes,
        rules: process.rules.clone(),
        unsupported: builder.unsupported,
        node_ids: builder.node_ids,
        upstream,
    })
}

struct Builder<'a> {
    defs: &'a Definitions,
    scripts: &'a ScriptRuntime,
    catalog: &'a Catalog,
    file: &'a Path,
    diagnostics: &'a mut Vec<Diagnostic>,
    graph: DiGraph<FlowNode, Flow>,
    scopes: Vec<ScopeInfo>,
    node_ids: HashMap<String, NodeIndex>,
    unsupported: Vec<Diagnostic>,
    /// The processes being built, outermost first (to refuse recursive calls).
    calling: Vec<String>,
    /// The called processes already inlined (each runs inline once at most).
    inlined: HashSet<String>,
    /// `isInterrupting` of the start events of subprocess scopes, by node.
    start_interrupting: HashMap<NodeIndex, bool>,
}

impl Builder<'_> {
    /// Adds the nodes of one scope (recursing into subprocesses), then its flows.
    fn add_scope(&mut self, scope: ScopeId, nodes: &[Node], flows: &[SequenceFlow]) {
        let mut local: HashMap<&str, NodeIndex> = HashMap::new();
        for node in nodes {
            if self.node_ids.contains_key(&node.id) {
                continue; // duplicate id: reported by validate::check_definitions
            }
            let index = self.add_node(scope, node);
            local.insert(node.id.as_str(), index);
            if let NodeKind::SubProcess(activity) = &node.kind {
                let child = self.scopes.len();
                self.scopes.push(ScopeInfo {
                    subprocess: Some(index),
                    parent: Some(scope),
                    starts: Vec::new(),
                    implicit_start: false,
                    triggered_starts: Vec::new(),
                    shares_variables: false,
                    event_subprocesses: Vec::new(),
                    transaction: activity.body.transaction,
                });
                let event_subprocess = activity.body.event_subprocess;
                self.graph[index].behavior = match self.graph[index].behavior {
                    Behavior::Unsupported => Behavior::Unsupported,
                    _ => Behavior::SubProcess { scope: child },
                };
                self.add_scope(child, &activity.body.nodes, &activity.body.flows);
                if event_subprocess {
                    self.resolve_event_subprocess(scope, index, child);
                }
            }
            if let NodeKind::CallActivity(activity) = &node.kind {
                self.inline_called_process(scope, index, activity.body.called_element.as_deref());
            }
        }
        for node in nodes {
            if matches!(&node.kind, NodeKind::StartEvent { trigger: None, .. }) {
                if let Some(&index) = local.get(node.id.as_str()) {
                    self.scopes[scope].starts.push(index);
                }
            }
        }
        let mut flow_ids: HashSet<&str> = HashSet::new();
        for flow in flows {
            if !flow_ids.insert(flow.id.as_str()) {
                continue;
            }
            self.add_flow(&local, flow);
        }
        self.add_implicit_starts(scope, nodes, &local);
        self.resolve_links(nodes, &local);
        for node in nodes {
            if let NodeKind::BoundaryEvent {
                attached_to,
                trigger,
                interrupting,
            } = &node.kind
            {
                self.resolve_boundary(node, attached_to, trigger, *interrupting, &local);
            }
        }
        for node in nodes {
            self.resolve_default(&local, node);
        }
        self.resolve_compensation(scope, nodes, &local);
    }

    /// Compensation in a scope: each compensation boundary event names its handler (its one
    /// outgoing flow, or association in BPMN), which may have no outgoing flows; compensation
    /// throws name an activity of the scope; cancel end events sit in transactions.
    fn resolve_compensation(
        &mut self,
        scope: ScopeId,
        nodes: &[Node],
        local: &HashMap<&str, NodeIndex>,
    ) {
        for node in nodes {
            let Some(&index) = local.get(node.id.as_str()) else {
                continue;
            };
            let error = |builder: &mut Self, message: String| {
                builder.diagnostics.push(
                    Diagnostic::error(builder.file, node.span, message).with_id(node.id.clone()),
                );
            };
            match &node.kind {
                NodeKind::BoundaryEvent {
                    trigger: EventTrigger::Compensation { .. },
                    ..
                } => {
                    let Behavior::Boundary(spec) = &self.graph[index].behavior else {
                        continue;
                    };
                    let activity = spec.attached;
                    let outgoing = self.graph[index].outgoing.clone();
                    let [edge] = outgoing.as_slice() else {
                        error(self, format!(
                            "compensation boundary event `{}` needs exactly one compensation handler (found {})",
                            node.id,
                            outgoing.len()
                        ));
                        continue;
                    };
                    let handler = self.graph[*edge].target;
                    if !self.graph[handler].category.is_activity() {
                        error(
                            self,
                            format!(
                                "the compensation handler of `{}` must be an activity, not {} `{}`",
                                node.id, self.graph[handler].element, self.graph[handler].id
                            ),
                        );
                        continue;
                    }
                    if !self.graph[handler].outgoing.is_empty() {
                        let message = format!(
                            "compensation handler `{}` has outgoing flows: it runs alone and returns to the compensation that started it",
                            self.graph[handler].id
                        );
                        let span = self.graph[handler].span;
                        let id = self.graph[handler].id.clone();
                        self.diagnostics
                            .push(Diagnostic::error(self.file, span, message).with_id(id));
                    }
                    self.graph[activity].compensation = Some(handler);
                    self.graph[handler].compensation_handler = true;
                }
                NodeKind::IntermediateThrowEvent {
                    result: Some(EventTrigger::Compensation { activity }),
                }
                | NodeKind::EndEvent {
                    result: Some(EventTrigger::Compensation { activity }),
                } => {
                    let target = match activity {
                        None => None,
                        Some(id) => match local.get(id.as_str()) {
                            Some(&target) => Some(target),
                            None => {
                                error(self, format!(
                                    "compensation throw `{}` names `{id}`, which is not an activity of its scope",
                                    node.id
                                ));
                                continue;
                            }
                        },
                    };
                    self.graph[index].behavior = match self.graph[index].behavior {
                        Behavior::End(_) => {
                            Behavior::End(EndBehavior::Compensate { activity: target })
                        }
                        _ => Behavior::Compensate { activity: target },
                    };
                }
                NodeKind::EndEvent {
                    result: Some(EventTrigger::Cancel),
                } => {
                    if self.scopes[scope].transaction {
                        self.graph[index].behavior = Behavior::End(EndBehavior::Cancel);
                    } else {
                        error(
                            self,
                            format!("cancel end event `{}` is not inside a transaction", node.id),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    /// BPMN 2.0 (10.5.2, 10.5.3): a scope with neither start nor end events starts at every
    /// flow node without incoming flows (boundary events and event subprocesses excluded).
    fn add_implicit_starts(
        &mut self,
        scope: ScopeId,
        nodes: &[Node],
        local: &HashMap<&str, NodeIndex>,
    ) {
        let has_events = nodes.iter().any(|n| {
            matches!(
                n.kind,
                NodeKind::StartEvent { .. } | NodeKind::EndEvent { .. }
            )
        });
        if has_events {
            return;
        }
        let starts: Vec<NodeIndex> = nodes
            .iter()
            .filter_map(|n| local.get(n.id.as_str()).copied())
            .filter(|&index| {
                let node = &self.graph[index];
                node.incoming.is_empty()
                    && !matches!(
                        node.category,
                        Category::BoundaryEvent | Category::EventSubProcess
                    )
            })
            .collect();
        if !starts.is_empty() {
            self.scopes[scope].implicit_start = true;
            self.scopes[scope].starts = starts;
        }
    }

    /// An event subprocess: exactly one start event with a trigger in its scope (`child`); it
    /// is registered with the enclosing scope, which arms it while it runs.
    fn resolve_event_subprocess(&mut self, scope: ScopeId, index: NodeIndex, child: ScopeId) {
        let starts: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&n| {
                self.graph[n].scope == child && self.graph[n].category == Category::StartEvent
            })
            .collect();
        let node = &self.graph[index];
        let problem = match starts.as_slice() {
            [start] => match &self.graph[*start].behavior {
                Behavior::EventStart(_) => None,
                Behavior::Unsupported => return,
                _ => Some(format!(
                    "the start event of event subprocess `{}` needs a trigger (message, timer, signal, condition, error or escalation)",
                    node.id
                )),
            },
            [] => Some(format!("event subprocess `{}` has no start event", node.id)),
            _ => Some(format!(
                "event subprocess `{}` has {} start events; it needs exactly one",
                node.id,
                starts.len()
            )),
        };
        if let Some(problem) = problem {
            let (span, id) = (node.span, node.id.clone());
            self.diagnostics
                .push(Diagnostic::error(self.file, span, problem).with_id(id));
            self.graph[index].behavior = Behavior::Unsupported;
            return;
        }
        let start = starts[0];
        let interrupting = self.start_interrupting.get(&start).copied().unwrap_or(true);
        if !self.graph[index].incoming.is_empty() || !self.graph[index].outgoing.is_empty() {
            let message = format!(
                "event subprocess `{}` has sequence flows: it starts by its event and ends by itself",
                node.id
            );
            let (span, id) = (node.span, node.id.clone());
            self.diagnostics
                .push(Diagnostic::error(self.file, span, message).with_id(id));
        }
        self.graph[index].behavior = Behavior::EventSubProcess(EventSubProcessSpec {
            scope: child,
            start,
            interrupting,
        });
        self.scopes[scope].event_subprocesses.push(index);
    }

    /// Points every link throw event of the scope at the link catch event of the same name.
    fn resolve_links(&mut self, nodes: &[Node], local: &HashMap<&str, NodeIndex>) {
        let mut catches: HashMap<Option<&str>, NodeIndex> = HashMap::new();
        for node in nodes {
            if let NodeKind::IntermediateCatchEvent {
                trigger: EventTrigger::Link { name },
            } = &node.kind
            {
                let Some(&index) = local.get(node.id.as_str()) else {
                    continue;
                };
                if catches.insert(name.as_deref(), index).is_some() {
                    let message = format!(
                        "link catch event `{}` repeats the link name `{}` of its scope: a link throw must have one target",
                        node.id,
                        name.as_deref().unwrap_or("")
                    );
                    self.diagnostics.push(
                        Diagnostic::error(self.file, node.span, message).with_id(node.id.clone()),
                    );
                }
            }
        }
        for node in nodes {
            let NodeKind::IntermediateThrowEvent {
                result: Some(EventTrigger::Link { name }),
            } = &node.kind
            else {
                continue;
            };
            let Some(&index) = local.get(node.id.as_str()) else {
                continue;
            };
            match catches.get(&name.as_deref()) {
                Some(&target) => self.graph[index].behavior = Behavior::LinkThrow { target },
                None => {
                    let message = format!(
                        "link throw event `{}` goes to link `{}`, which no link catch event of its scope catches",
                        node.id,
                        name.as_deref().unwrap_or("")
                    );
                    self.diagnostics.push(
                        Diagnostic::error(self.file, node.span, message).with_id(node.id.clone()),
                    );
                }
            }
        }
    }

    /// Gives a boundary event its behaviour and registers it on its activity (same scope).
    fn resolve_boundary(
        &mut self,
        node: &Node,
        attached_to: &str,
        trigger: &EventTrigger,
        interrupting: bool,
        local: &HashMap<&str, NodeIndex>,
    ) {
        let Some(&index) = local.get(node.id.as_str()) else {
            return;
        };
        let problem = match local.get(attached_to) {
            Some(&activity) if self.graph[activity].category.is_activity() => {
                let element = self.graph[index].element.clone();
                let trigger = match trigger {
                    EventTrigger::Timer(timer) => {
                        BoundaryTrigger::Wait(self.timer_wait(timer, &node.id))
                    }
                    EventTrigger::Message(message) => BoundaryTrigger::Wait(WaitSpec::Message {
                        name: message.name.clone(),
                        correlation_key: message
                            .correlation_key
                            .as_ref()
                            .and_then(|k| self.compile_expr(k, "correlation key of", &node.id)),
                    }),
                    EventTrigger::Signal { name } => {
                        BoundaryTrigger::Wait(WaitSpec::Signal { name: name.clone() })
                    }
                    EventTrigger::Conditional { condition } => {
                        match self.condition_spec(node, condition.as_ref()) {
                            Some(spec) => BoundaryTrigger::Wait(spec),
                            None => return,
                        }
                    }
                    EventTrigger::Multiple(_) | EventTrigger::ParallelMultiple(_) => {
                        match self.wait_spec(node, trigger) {
                            Some(spec) => BoundaryTrigger::Wait(spec),
                            None => {
                                self.unsupported(node, &element);
                                return;
                            }
                        }
                    }
                    EventTrigger::Error { code } => BoundaryTrigger::Error { code: code.clone() },
                    EventTrigger::Escalation { code } => {
                        BoundaryTrigger::Escalation { code: code.clone() }
                    }
                    EventTrigger::Compensation { .. } => BoundaryTrigger::Compensation,
                    EventTrigger::Cancel => {
                        let transaction = matches!(
                            self.graph[activity].behavior,
                            Behavior::SubProcess { scope } if self.scopes[scope].transaction
                        );
                        if !transaction {
                            let message = format!(
                                "cancel boundary event `{}` is attached to `{attached_to}`, which is not a transaction",
                                node.id
                            );
                            self.diagnostics.push(
                                Diagnostic::error(self.file, node.span, message)
                                    .with_id(node.id.clone()),
                            );
                            return;
                        }
                        BoundaryTrigger::Cancel
                    }
                    _ => {
                        self.unsupported(node, &element);
                        return;
                    }
                };
                let interrupting = interrupting
                    || matches!(
                        trigger,
                        BoundaryTrigger::Error { .. } | BoundaryTrigger::Cancel
                    );
                self.graph[index].behavior = Behavior::Boundary(BoundarySpec {
                    attached: activity,
                    trigger,
                    interrupting,
                });
                self.graph[activity].boundaries.push(index);
                return;
            }
            Some(_) => format!(
                "boundary event `{}` is attached to `{attached_to}`, which is not an activity",
                node.id
            ),
            None if self.node_ids.contains_key(attached_to) => {
                format!(
                    "boundary event `{}` is attached to `{attached_to}` in another scope",
                    node.id
                )
            }
            None => format!(
                "boundary event `{}` is attached to unknown activity `{attached_to}`",
                node.id
            ),
        };
        self.diagnostics
            .push(Diagnostic::error(self.file, node.span, problem).with_id(node.id.clone()));
    }

    /// Compiles a standard loop; one without a condition or a maximum (it would never end), or
    /// together with multi-instance, is an error.
    fn loop_spec(
        &mut self,
        node: &Node,
        spec: &crate::model::StandardLoop,
        multi: bool,
    ) -> Box<LoopSpec> {
        let problem = if multi {
            Some(format!(
                "`{}` has both a standard loop and multi-instance settings; it can have one",
                node.id
            ))
        } else if spec.condition.is_none() && spec.maximum.is_none() {
            Some(format!("the standard loop of `{}` has neither a condition nor a maximum: it would never end", node.id))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.diagnostics
                .push(Diagnostic::error(self.file, node.span, problem).with_id(node.id.clone()));
        }
        Box::new(LoopSpec {
            condition: spec
                .condition
                .as_ref()
                .and_then(|c| self.compile_expr(c, "loop condition of", &node.id)),
            test_before: spec.test_before,
            maximum: spec.maximum,
        })
    }

    /// Compiles input/output mappings and pre/post scripts.
    fn io_spec(&mut self, node: &Node, io: &crate::model::IoMapping) -> Box<IoSpec> {
        let compile_mappings = |builder: &mut Self, list: &[crate::model::Mapping], what: &str| {
            list.iter()
                .filter_map(|m| {
                    let what = format!("{what} `{}` of", m.target);
                    let code = builder.compile_expr(&m.source, &what, &node.id)?;
                    Some((m.target.clone(), code))
                })
                .collect::<Vec<_>>()
        };
        let inputs = compile_mappings(self, &io.inputs, "input");
        let outputs = compile_mappings(self, &io.outputs, "output");
        let script = |builder: &mut Self, script: &Option<Script>| {
            script.as_ref().and_then(|s| {
                builder.compile_code(s.language.as_deref(), &s.source, s.span, "script", &node.id)
            })
        };
        let pre_script = script(self, &io.pre_script);
        let post_script = script(self, &io.post_script);
        Box::new(IoSpec {
            inputs,
            outputs,
            pre_script,
            post_script,
        })
    }

    /// Compiles a task's multi-instance settings.
    fn multi_spec(&mut self, node: &Node, mi: &crate::model::MultiInstance) -> Box<MultiSpec> {
        Box::new(MultiSpec {
            sequential: mi.sequential,
            collection: mi
                .collection
                .as_ref()
                .and_then(|e| self.compile_expr(e, "collection of", &node.id)),
            cardinality: mi
                .cardinality
                .as_ref()
                .and_then(|e| self.compile_expr(e, "cardinality of", &node.id)),
            element_variable: mi.element_variable.clone(),
            completion_condition: mi
                .completion_condition
                .as_ref()
                .and_then(|e| self.compile_expr(e, "completion condition of", &node.id)),
            output_collection: mi.output_collection.clone(),
            output_element: mi.output_element.clone(),
        })
    }

    /// Runs the process a call activity calls (from the same file) inline, in a scope of its own
    /// that shares the caller's variables. `behavior` already refused recursion and repeats.
    fn inline_called_process(&mut self, scope: ScopeId, index: NodeIndex, called: Option<&str>) {
        let defs = self.defs;
        let Some(process) = called.and_then(|c| defs.processes.iter().find(|p| p.id == c)) else {
            return;
        };
        if !matches!(self.graph[index].behavior, Behavior::PassThrough) {
            return;
        }
        let child = self.scopes.len();
        self.scopes.push(ScopeInfo {
            subprocess: Some(index),
            parent: Some(scope),
            starts: Vec::new(),
            implicit_start: false,
            triggered_starts: Vec::new(),
            shares_variables: true,
            event_subprocesses: Vec::new(),
            transaction: false,
        });
        self.graph[index].behavior = Behavior::SubProcess { scope: child };
        self.calling.push(process.id.clone());
        self.add_scope(child, &process.nodes, &process.flows);
        self.calling.pop();
    }

    fn add_node(&mut self, scope: ScopeId, node: &Node) -> NodeIndex {
        let element = element_name(&node.kind);
        let triggered_start = scope == 0
            && matches!(&node.kind, NodeKind::StartEvent { trigger: Some(trigger), .. } if starts_an_instance(trigger));
        let mut behavior = match &node.kind {
            _ if triggered_start => Behavior::Start,
            NodeKind::StartEvent {
                trigger: Some(trigger),
                ..
            } if scope != 0 => self.event_start(node, trigger, &element),
            _ => self.behavior(node, &element),
        };
        let mut multi = None;
        if let NodeKind::Task(Activity {
            multi_instance: Some(mi),
            ..
        }) = &node.kind
        {
            match behavior {
                _ if mi.collection.is_none() && mi.cardinality.is_none() => {
                    behavior = self.unsupported(
                        node,
                        &format!("multi-instance {element} without a collection or cardinality"),
                    );
                }
                Behavior::Script(_)
                | Behavior::Wait(_)
                | Behavior::PassThrough
                | Behavior::Decision(_) => multi = Some(self.multi_spec(node, mi)),
                Behavior::Unsupported => {}
                _ => behavior = self.unsupported(node, &format!("multi-instance {element}")),
            }
        }
        let io = match io_of(&node.kind) {
            Some(io) if !io.is_empty() && multi.is_some() => {
                behavior = self.unsupported(
                    node,
                    &format!("input/output mappings on multi-instance {element}"),
                );
                None
            }
            Some(io) if !io.is_empty() => Some(self.io_spec(node, io)),
            _ => None,
        };
        let standard_loop =
            standard_loop_of(&node.kind).map(|spec| self.loop_spec(node, spec, multi.is_some()));
        let activation = match (&node.kind, &node.activation_condition) {
            (NodeKind::Gateway(GatewayKind::Complex), Some(condition)) => {
                self.compile_expr(condition, "activation condition of", &node.id)
            }
            (_, Some(_)) => {
                self.diagnostics.push(
                    Diagnostic::warning(
                        self.file,
                        node.span,
                        format!("activation condition of `{}` is ignored: only complex gateways have one", node.id),
                    )
                    .with_id(node.id.clone()),
                );
                None
            }
            _ => None,
        };
        let index = self.graph.add_node(FlowNode {
            id: node.id.clone(),
            name: node.name.clone(),
            element,
            category: Category::of(&node.kind),
            behavior,
            scope,
            span: node.span,
            rules: node.rules.clone(),
            incoming: Vec::new(),
            outgoing: Vec::new(),
            default_flow: None,
            boundaries: Vec::new(),
            multi,
            standard_loop,
            activation,
            form: match &node.kind {
                NodeKind::Task(activity) => activity.form.clone(),
                _ => Vec::new(),
            },
            compensation: None,
            compensation_handler: false,
            io,
        });
        self.node_ids.insert(node.id.clone(), index);
        if let NodeKind::StartEvent { interrupting, .. } = &node.kind {
            self.start_interrupting.insert(index, *interrupting);
        }
        if triggered_start {
            self.scopes[0].triggered_starts.push(index);
        }
        index
    }

    fn add_flow(&mut self, local: &HashMap<&str, NodeIndex>, flow: &SequenceFlow) {
        let source = self.resolve_end(local, flow, &flow.source, "source");
        let target = self.resolve_end(local, flow, &flow.target, "target");
        let condition = flow
            .condition
            .as_ref()
            .and_then(|c| self.compile_expr(c, "condition of flow", &flow.id));
        let (Some(source), Some(target)) = (source, target) else {
            return;
        };
        let edge = self.graph.add_edge(
            source,
            target,
            Flow {
                id: flow.id.clone(),
                name: flow.name.clone(),
                source,
                target,
                condition,
                is_default: false,
                span: flow.span,
            },
        );
        self.graph[source].outgoing.push(edge);
        self.graph[target].incoming.push(edge);
    }

    fn resolve_end(
        &mut self,
        local: &HashMap<&str, NodeIndex>,
        flow: &SequenceFlow,
        id: &str,
        role: &str,
    ) -> Option<NodeIndex> {
        if let Some(&index) = local.get(id) {
            return Some(index);
        }
        let message = if self.node_ids.contains_key(id) {
            format!(
                "sequence flow `{}` has {role} `{id}` in another scope: flows cannot cross a subprocess boundary",
                flow.id
            )
        } else if id.is_empty() {
            format!("sequence flow `{}` has no {role}", flow.id)
        } else {
            format!("sequence flow `{}` has unknown {role} `{id}`", flow.id)
        };
        self.diagnostics
            .push(Diagnostic::error(self.file, flow.span, message).with_id(flow.id.clone()));
        None
    }

    fn resolve_default(&mut self, local: &HashMap<&str, NodeIndex>, node: &Node) {
        let (Some(default), Some(&index)) = (&node.default_flow, local.get(node.id.as_str()))
        else {
            return;
        };
        let found = self.graph[index]
            .outgoing
            .iter()
            .copied()
            .find(|&e| &self.graph[e].id == default);
        match found {
            Some(edge) => {
                self.graph[edge].is_default = true;
                self.graph[index].default_flow = Some(edge);
            }
            None => self.diagnostics.push(
                Diagnostic::error(
                    self.file,
                    node.span,
                    format!(
                        "default flow `{default}` of `{}` is not one of its outgoing flows",
                        node.id
                    ),
                )
                .with_id(node.id.clone()),
            ),
        }
    }

    /// The trigger of an event subprocess's start event (checked to sit in an event subprocess
    /// when the subprocess is resolved).
    fn event_start(&mut self, node: &Node, trigger: &EventTrigger, element: &str) -> Behavior {
        let start = match trigger {
            EventTrigger::Timer(timer) => EventStart::Wait(self.timer_wait(timer, &node.id)),
            EventTrigger::Message(message) => EventStart::Wait(WaitSpec::Message {
                name: message.name.clone(),
                correlation_key: message
                    .correlation_key
                    .as_ref()
                    .and_then(|k| self.compile_expr(k, "correlation key of", &node.id)),
            }),
            EventTrigger::Signal { name } => {
                EventStart::Wait(WaitSpec::Signal { name: name.clone() })
            }
            EventTrigger::Conditional { condition } => {
                match self.condition_spec(node, condition.as_ref()) {
                    Some(spec) => EventStart::Wait(spec),
                    None => return Behavior::Unsupported,
                }
            }
            EventTrigger::Error { code } => EventStart::Error { code: code.clone() },
            EventTrigger::Escalation { code } => EventStart::Escalation { code: code.clone() },
            EventTrigger::Multiple(_) | EventTrigger::ParallelMultiple(_) => {
                match self.wait_spec(node, trigger) {
                    Some(spec) => EventStart::Wait(spec),
                    None => return self.unsupported(node, element),
                }
            }
            _ => return self.unsupported(node, element),
        };
        Behavior::EventStart(start)
    }

    /// The wait of a timer, message, signal or conditional trigger, or of several (a multiple
    /// event); `None` for triggers that are not waits.
    fn wait_spec(&mut self, node: &Node, trigger: &EventTrigger) -> Option<WaitSpec> {
        Some(match trigger {
            EventTrigger::Timer(timer) => self.timer_wait(timer, &node.id),
            EventTrigger::Message(message) => WaitSpec::Message {
                name: message.name.clone(),
                correlation_key: message
                    .correlation_key
                    .as_ref()
                    .and_then(|k| self.compile_expr(k, "correlation key of", &node.id)),
            },
            EventTrigger::Signal { name } => WaitSpec::Signal { name: name.clone() },
            EventTrigger::Conditional { condition } => {
                self.condition_spec(node, condition.as_ref())?
            }
            EventTrigger::Multiple(triggers) | EventTrigger::ParallelMultiple(triggers) => {
                let mut specs = Vec::new();
                for trigger in triggers {
                    match self.wait_spec(node, trigger)? {
                        WaitSpec::Multiple { .. } => return None,
                        spec => specs.push(spec),
                    }
                }
                WaitSpec::Multiple {
                    specs,
                    all: matches!(trigger, EventTrigger::ParallelMultiple(_)),
                }
            }
            _ => return None,
        })
    }

    /// The wait of a conditional event; a missing condition is an error.
    fn condition_spec(&mut self, node: &Node, condition: Option<&Expr>) -> Option<WaitSpec> {
        let Some(condition) = condition else {
            self.diagnostics.push(
                Diagnostic::error(
                    self.file,
                    node.span,
                    format!("conditional event `{}` has no condition", node.id),
                )
                .with_id(node.id.clone()),
            );
            return None;
        };
        self.compile_expr(condition, "condition of", &node.id)
            .map(WaitSpec::Condition)
    }

    fn behavior(&mut self, node: &Node, element: &str) -> Behavior {
        if let Some(looping) = loop_marker(&node.kind) {
            return self.unsupported(node, &format!("{looping} {element}"));
        }

        match &node.kind {
            NodeKind::StartEvent { trigger: None, .. } => Behavior::Start,
            NodeKind::StartEvent { .. } => self.unsupported(node, element),
            NodeKind::EndEvent { result } => match result {
                None => Behavior::End(EndBehavior::None),
                Some(EventTrigger::Terminate) => Behavior::End(EndBehavior::Terminate),
                Some(EventTrigger::Error { code }) => {
                    Behavior::End(EndBehavior::Error { code: code.clone() })
                }
                // Resolved by `resolve_compensation` once every node of the scope exists.
                Some(EventTrigger::Compensation { .. } | EventTrigger::Cancel) => {
                    Behavior::End(EndBehavior::None)
                }
                Some(trigger) => match thrown(trigger) {
                    Some(event) => Behavior::End(EndBehavior::Throw(event)),
                    None => self.unsupported(node, element),
                },
            },
            NodeKind::IntermediateThrowEvent { result: None } => Behavior::PassThrough,
            // Resolved by `resolve_compensation` once every node of the scope exists.
            NodeKind::IntermediateThrowEvent {
                result: Some(EventTrigger::Compensation { .. }),
            } => Behavior::Compensate { activity: None },
            // Resolved by `resolve_links` once every node of the scope exists.
            NodeKind::IntermediateThrowEvent {
                result: Some(EventTrigger::Link { .. }),
            } => Behavior::Unsupported,
            NodeKind::IntermediateThrowEvent {
                result: Some(trigger),
            } => match thrown(trigger) {
                Some(event) => Behavior::Throw(event),
                None => self.unsupported(node, element),
            },
            NodeKind::IntermediateCatchEvent { trigger } => match trigger {
                EventTrigger::Timer(timer) => Behavior::Wait(self.timer_wait(timer, &node.id)),
                EventTrigger::Message(message) => Behavior::Wait(WaitSpec::Message {
                    name: message.name.clone(),
                    correlation_key: message
                        .correlation_key
                        .as_ref()
                        .and_then(|k| self.compile_expr(k, "correlation key of", &node.id)),
                }),
                EventTrigger::Signal { name } => {
                    Behavior::Wait(WaitSpec::Signal { name: name.clone() })
                }
                EventTrigger::Conditional { condition } => {
                    match self.condition_spec(node, condition.as_ref()) {
                        Some(spec) => Behavior::Wait(spec),
                        None => Behavior::Unsupported,
                    }
                }
                // Entered by a jump from the link throw events of its scope.
                EventTrigger::Link { .. } => Behavior::PassThrough,
                EventTrigger::Multiple(_) | EventTrigger::ParallelMultiple(_) => {
                    match self.wait_spec(node, trigger) {
                        Some(spec) => Behavior::Wait(spec),
                        None => self.unsupported(node, element),
                    }
                }
                _ => self.unsupported(node, element),
            },
            // Resolved by `resolve_boundary` once every node of the scope exists.
            NodeKind::BoundaryEvent { .. } => Behavior::Unsupported,
            NodeKind::Task(activity) => self.task_behavior(node, &activity.body, element),
            NodeKind::Gateway(kind) => Behavior::Gateway(*kind),
            // The scope is filled in by `add_scope` once the child scope exists.
            NodeKind::SubProcess(_) => Behavior::PassThrough,
            NodeKind::CallActivity(activity) => {
                let Some(called) = &activity.body.called_element else {
                    return self.unsupported(node, &format!("{element} without a called process"));
                };
                // A process of this file called once, not recursively, at the version deployed
                // with the caller and without mappings runs inline (it shares the caller's
                // variables, as a child without mappings gets and returns all of them); any
                // other call starts a child instance, whose variables are its own.
                let inline = matches!(
                    activity.body.binding,
                    CallBinding::Latest | CallBinding::Deployment
                ) && activity.io.is_empty()
                    && self.defs.processes.iter().any(|p| &p.id == called)
                    && !self.calling.contains(called)
                    && self.inlined.insert(called.clone());
                if !inline {
                    return Behavior::Wait(WaitSpec::Call {
                        process: called.clone(),
                        binding: activity.body.binding,
                    });
                }
                // The scope is filled in by `inline_called_process` once the node exists.
                Behavior::PassThrough
            }
        }
    }

    fn task_behavior(&mut self, node: &Node, task: &TaskKind, element: &str) -> Behavior {
        match task {
            TaskKind::Plain => Behavior::PassThrough,
            TaskKind::Service { handler } => Behavior::Wait(WaitSpec::Job {
                handler: handler.clone(),
            }),
            TaskKind::Script {
                script: Some(script),
            } => self.compile_script(node, script),
            TaskKind::Script { script: None } => {
                self.diagnostics.push(
                    Diagnostic::warning(
                        self.file,
                        node.span,
                        format!("script task `{}` has no script: it passes through", node.id),
                    )
                    .with_id(node.id.clone()),
                );
                Behavior::PassThrough
            }
            TaskKind::User => Behavior::Wait(WaitSpec::User { manual: false }),
            TaskKind::Manual => Behavior::Wait(WaitSpec::User { manual: true }),
            TaskKind::Receive { message } => Behavior::Wait(WaitSpec::Message {
                name: message.as_ref().and_then(|m| m.name.clone()),
                correlation_key: message
                    .as_ref()
                    .and_then(|m| m.correlation_key.as_ref())
                    .and_then(|k| self.compile_expr(k, "correlation key of", &node.id)),
            }),
            TaskKind::Send {
                handler: Some(handler),
                ..
            } => Behavior::Wait(WaitSpec::Job {
                handler: Some(handler.clone()),
            }),
            TaskKind::Send {
                message,
                handler: None,
            } => Behavior::Throw(vec![ThrownEvent {
                kind: "message".into(),
                name: message.clone(),
            }]),
            TaskKind::BusinessRule {
                decision: Some(call),
                ..
            } => match self.catalog.decisions.check(&call.decision) {
                Ok(()) => Behavior::Decision(Box::new(DecisionSpec {
                    decisions: Arc::clone(&self.catalog.decisions),
                    decision: call.decision.clone(),
                    result_variable: call
                        .result_variable
                        .clone()
                        .unwrap_or_else(|| call.decision.clone()),
                    mapping: call.mapping,
                })),
                // Like a call of another file's process: the file may be right and the
                // decision deployed elsewhere, so this only keeps the process from starting.
                Err(err) => {
                    self.unsupported.push(
                        Diagnostic::warning(
                            self.file,
                            call.span,
                            format!("{element} `{}` cannot run: {err}", node.id),
                        )
                        .with_id(node.id.clone()),
                    );
                    Behavior::Unsupported
                }
            },
            TaskKind::BusinessRule {
                script: Some(script),
                ..
            } => self.compile_script(node, script),
            TaskKind::BusinessRule { .. } => {
                self.unsupported(node, &format!("{element} without a rule"))
            }
            TaskKind::Llm(task) => Behavior::Wait(WaitSpec::Llm(Box::new(task.clone()))),
        }
    }

    fn unsupported(&mut self, node: &Node, element: &str) -> Behavior {
        self.unsupported.push(
            Diagnostic::warning(
                self.file,
                node.span,
                format!("not supported yet: {element} {}", node.id),
            )
            .with_id(node.id.clone()),
        );
        Behavior::Unsupported
    }

    fn compile_script(&mut self, node: &Node, script: &Script) -> Behavior {
        let code = self.compile_code(
            script.language.as_deref(),
            &script.source,
            script.span,
            "script",
            &node.id,
        );
        match code {
            Some(code) => Behavior::Script(code),
            None => Behavior::Unsupported,
        }
    }

    /// The wait of a timer event. Text that is a duration, date or cycle is used as written;
    /// other text is an expression that gives one when the wait begins (`"PT1S"`,
    /// `reminder_delay`). Text that is neither is reported where it is written, so it never
    /// reaches a running instance.
    fn timer_wait(&mut self, timer: &Timer, id: &str) -> WaitSpec {
        let literal_error = match TimerSpec::of(timer) {
            Ok(_) => {
                return WaitSpec::Timer {
                    timer: timer.clone(),
                    computed: None,
                }
            }
            Err(error) => error,
        };
        let expression = &timer.expression;
        let computed = match self.try_compile(
            expression.language.as_deref(),
            &expression.source,
            expression.span,
            "timer of",
            id,
        ) {
            Ok(code) => Some(code),
            // Neither form: say what the text is not as a timer, and as an expression.
            Err(Refusal::Invalid { detail, .. }) => {
                let message = format!(
                    "timer of {id}: {literal_error}; nor is it valid Rhai for an expression that gives one: {detail}"
                );
                self.refuse(expression.span, message, id);
                None
            }
            Err(refusal) => {
                let (at, message) = refusal.into_parts();
                self.refuse(at, message, id);
                None
            }
        };
        WaitSpec::Timer {
            timer: timer.clone(),
            computed,
        }
    }

    fn compile_expr(&mut self, expr: &Expr, what: &str, id: &str) -> Option<CompiledCode> {
        self.compile_code(expr.language.as_deref(), &expr.source, expr.span, what, id)
    }

    /// Compiles Rhai source; reports a foreign language, another engine's idiom that parses as
    /// Rhai (Python literals, bpmn-engine's JavaScript context), or a compile error (positioned
    /// inside the file: the text's own span plus the offset inside the text).
    fn compile_code(
        &mut self,
        language: Option<&str>,
        source: &str,
        span: Span,
        what: &str,
        id: &str,
    ) -> Option<CompiledCode> {
        match self.try_compile(language, source, span, what, id) {
            Ok(code) => Some(code),
            Err(refusal) => {
                let (at, message) = refusal.into_parts();
                self.refuse(at, message, id);
                None
            }
        }
    }

    /// Reports an error about the part of node `id` at `at`.
    fn refuse(&mut self, at: Span, message: String, id: &str) {
        self.diagnostics
            .push(Diagnostic::error(self.file, at, message).with_id(id.to_string()));
    }

    /// Compiles Rhai source, or says why it is not Rhai (see `compile_code`).
    fn try_compile(
        &self,
        language: Option<&str>,
        source: &str,
        span: Span,
        what: &str,
        id: &str,
    ) -> Result<CompiledCode, Refusal> {
        match language.map(str::trim).filter(|l| !l.is_empty()) {
            Some(language)
                if !RHAI_LANGUAGES
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(language)) =>
            {
                let kind = if what == "script" {
                    "script"
                } else {
                    "expression"
                };
                Err(Refusal::Foreign(
                    span,
                    format!("not Rhai: {language} {kind} in {id}"),
                ))
            }
            _ => match self.scripts.compile(source) {
                Ok(ast) => match crate::script::foreign_idiom(&ast) {
                    None => Ok(CompiledCode {
                        ast,
                        source: source.to_string(),
                        span,
                    }),
                    Some((message, (line, col))) => Err(Refusal::Foreign(
                        offset_span(span, line, col),
                        format!("{what} {id} is not Rhai: {message}"),
                    )),
                },
                Err(err) => {
                    let at = err
                        .position()
                        .map(|(line, col)| offset_span(span, line, col))
                        .unwrap_or(span);
                    let message = match &err {
                        crate::script::ScriptError::Compile { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    Err(Refusal::Invalid {
                        at,
                        message: format!("{what} {id} is not valid Rhai: {message}"),
                        detail: message,
                    })
                }
            },
        }
    }
}

/// Why a text did not compile as Rhai, with where.
enum Refusal {
    /// Another language, declared or recognised by an idiom of it.
    Foreign(Span, String),
    /// Rhai that does not compile: the whole message, and Rhai's own words.
    Invalid {
        at: Span,
        message: String,
        detail: String,
    },
}

impl Refusal {
    fn into_parts(self) -> (Span, String) {
        match self {
            Refusal::Foreign(at, message) | Refusal::Invalid { at, message, .. } => (at, message),
        }
    }
}

/// The file position of `line`:`col` inside a text that starts at `start`.
pub fn offset_span(start: Span, line: u32, col: u32) -> Span {
    if line <= 1 {
        Span::new(start.line, start.col + col.saturating_sub(1))
    } else {
        Span::new(start.line + line - 1, col)
    }
}

/// The events an end or intermediate throw event sends out, for the kinds that need no catcher
/// (a multiple event throws each of its definitions).
fn thrown(trigger: &EventTrigger) -> Option<Vec<ThrownEvent>> {
    let (kind, name) = match trigger {
        EventTrigger::Message(m) => ("message", m.name.clone()),
        EventTrigger::Signal { name } => ("signal", name.clone()),
        EventTrigger::Escalation { code } => ("escalation", code.clone()),
        EventTrigger::Multiple(triggers) | EventTrigger::ParallelMultiple(triggers) => {
            let mut all = Vec::new();
            for trigger in triggers {
                all.extend(thrown(trigger)?);
            }
            return Some(all);
        }
        _ => return None,
    };
    Some(vec![ThrownEvent {
        kind: kind.into(),
        name,
    }])
}

/// Whether a process-level start event with this trigger starts instances: a message, timer or
/// signal, or a multiple event of those.
fn starts_an_instance(trigger: &EventTrigger) -> bool {
    match trigger {
        EventTrigger::Message(_) | EventTrigger::Timer(_) | EventTrigger::Signal { .. } => true,
        EventTrigger::Multiple(triggers) => triggers.iter().all(starts_an_instance),
        _ => false,
    }
}

/// Loop settings the executor does not run: multi-instance on anything but a task.
fn loop_marker(kind: &NodeKind) -> Option<&'static str> {
    let multi = match kind {
        NodeKind::SubProcess(a) => a.multi_instance.is_some(),
        NodeKind::CallActivity(a) => a.multi_instance.is_some(),
        _ => false,
    };
    multi.then_some("multi-instance")
}

/// The input/output mappings of an activity.
fn io_of(kind: &NodeKind) -> Option<&crate::model::IoMapping> {
    match kind {
        NodeKind::Task(a) => Some(&a.io),
        NodeKind::SubProcess(a) => Some(&a.io),
        NodeKind::CallActivity(a) => Some(&a.io),
        _ => None,
    }
}

/// The standard loop of an activity, when it has one.
fn standard_loop_of(kind: &NodeKind) -> Option<&crate::model::StandardLoop> {
    match kind {
        NodeKind::Task(a) => a.standard_loop.as_ref(),
        NodeKind::SubProcess(a) => a.standard_loop.as_ref(),
        NodeKind::CallActivity(a) => a.standard_loop.as_ref(),
        _ => None,
    }
}

/// The BPMN element name of a node kind, with its event definition (`timer boundaryEvent`).
pub fn element_name(kind: &NodeKind) -> String {
    fn trigger_name(trigger: &EventTrigger) -> &'static str {
        match trigger {
            EventTrigger::Terminate => "terminate",
            EventTrigger::Timer(_) => "timer",
            EventTrigger::Message(_) => "message",
            EventTrigger::Signal { .. } => "signal",
            EventTrigger::Error { .. } => "error",
            EventTrigger::Escalation { .. } => "escalation",
            EventTrigger::Conditional { .. } => "conditional",
            EventTrigger::Link { .. } => "link",
            EventTrigger::Cancel => "cancel",
            EventTrigger::Compensation { .. } => "compensation",
            EventTrigger::Multiple(_) => "multiple",
            EventTrigger::ParallelMultiple(_) => "parallel multiple",
        }
    }
    let with = |trigger: Option<&EventTrigger>, base: &str| match trigger {
        Some(t) => format!("{} {base}", trigger_name(t)),
        None => base.to_string(),
    };
    match kind {
        NodeKind::StartEvent { trigger, .. } => with(trigger.as_ref(), "startEvent"),
        NodeKind::EndEvent { result } => with(result.as_ref(), "endEvent"),
        NodeKind::IntermediateCatchEvent { trigger } => {
            with(Some(trigger), "intermediateCatchEvent")
        }
        NodeKind::IntermediateThrowEvent { result } => {
            with(result.as_ref(), "intermediateThrowEvent")
        }
        NodeKind::BoundaryEvent { trigger, .. } => with(Some(trigger), "boundaryEvent"),
        NodeKind::Task(a) => match &a.body {
            TaskKind::Plain => "task",
            TaskKind::Service { .. } => "serviceTask",
            TaskKind::Script { .. } => "scriptTask",
            TaskKind::User => "userTask",
            TaskKind::Manual => "manualTask",
            TaskKind::Receive { .. } => "receiveTask",
            TaskKind::Send { .. } => "sendTask",
            TaskKind::BusinessRule { .. } => "businessRuleTask",
            TaskKind::Llm(_) => "llmTask",
        }
        .to_string(),
        NodeKind::Gateway(kind) => match kind {
            GatewayKind::Exclusive => "exclusiveGateway",
            GatewayKind::Parallel => "parallelGateway",
            GatewayKind::Inclusive => "inclusiveGateway",
            GatewayKind::EventBased => "eventBasedGateway",
            GatewayKind::Complex => "complexGateway",
        }
        .to_string(),
        NodeKind::SubProcess(a) if a.body.event_subprocess => "event subProcess".to_string(),
        NodeKind::SubProcess(a) if a.body.transaction => "transaction".to_string(),
        NodeKind::SubProcess(_) => "subProcess".to_string(),
        NodeKind::CallActivity(_) => "callActivity".to_string(),
    }
}

/// For every inclusive or complex gateway with more than one incoming flow: the nodes from which
/// it can be reached (reverse breadth-first search; flows never leave a scope).
fn inclusive_join_upstream(
    graph: &DiGraph<FlowNode, Flow>,
) -> HashMap<NodeIndex, HashSet<NodeIndex>> {
    let mut result = HashMap::new();
    for join in graph.node_indices() {
        let node = &graph[join];
        if !matches!(
            node.behavior,
            Behavior::Gateway(GatewayKind::Inclusive | GatewayKind::Complex)
        ) || node.incoming.len() < 2
        {
            continue;
        }
        let mut seen = HashSet::new();
        let mut queue: VecDeque<NodeIndex> = graph
            .neighbors_directed(join, Direction::Incoming)
            .collect();
        while let Some(n) = queue.pop_front() {
            if seen.insert(n) {
                queue.extend(graph.neighbors_directed(n, Direction::Incoming));
            }
        }
        result.insert(join, seen);
    }
    result
}
