//! Structural checks: duplicate ids over the whole file, and over the compiled graph missing start
//! events, unreachable nodes, dead ends and endless loops, gateway flow counts and exclusive
//! gateways that may match no flow.

use super::{Behavior, Category, CompiledProcess, FlowNode, ScopeId, WaitSpec};
use crate::diagnostics::Diagnostic;
use crate::model::{Definitions, GatewayKind, Node, NodeKind, SequenceFlow, Span};
use petgraph::graph::NodeIndex;
use petgraph::Direction;
use std::collections::{HashMap, HashSet, VecDeque};

/// Checks every process of the file for ids used twice (nodes and flows share one id space).
pub(super) fn check_definitions(defs: &Definitions) -> Vec<Diagnostic> {
    let mut first: HashMap<&str, Span> = HashMap::new();
    let mut diagnostics = Vec::new();
    fn walk<'d>(nodes: &'d [Node], flows: &'d [SequenceFlow], out: &mut Vec<(&'d str, Span)>) {
        for node in nodes {
            out.push((node.id.as_str(), node.span));
            if let NodeKind::SubProcess(activity) = &node.kind {
                walk(&activity.body.nodes, &activity.body.flows, out);
            }
        }
        for flow in flows {
            out.push((flow.id.as_str(), flow.span));
        }
    }
    for process in &defs.processes {
        let mut ids = vec![(process.id.as_str(), process.span)];
        walk(&process.nodes, &process.flows, &mut ids);
        for (id, span) in ids {
            if id.is_empty() {
                diagnostics.push(Diagnostic::error(
                    &defs.source,
                    span,
                    "element without an id",
                ));
                continue;
            }
            match first.get(id) {
                Some(earlier) => diagnostics.push(
                    Diagnostic::error(
                        &defs.source,
                        span,
                        format!(
                            "duplicate id `{id}` (first defined at {}:{})",
                            earlier.line, earlier.col
                        ),
                    )
                    .with_id(id.to_string()),
                ),
                None => {
                    first.insert(id, span);
                }
            }
        }
    }
    diagnostics
}

/// Checks the compiled graph; every problem goes to `diagnostics`.
pub(super) fn check_graph(process: &CompiledProcess, diagnostics: &mut Vec<Diagnostic>) {
    let file = process.source.as_path();
    for (scope_id, scope) in process.scopes.iter().enumerate() {
        let members: Vec<NodeIndex> = process
            .graph
            .node_indices()
            .filter(|&n| process.graph[n].scope == scope_id)
            .collect();
        let mut roots: Vec<NodeIndex> = members
            .iter()
            .copied()
            .filter(|&n| is_root(&process.graph[n]))
            .collect();
        if scope.implicit_start {
            roots.extend(scope.starts.iter().copied());
            let (span, id) = scope_owner(process, scope_id);
            diagnostics.push(
                Diagnostic::warning(
                    file,
                    span,
                    format!("`{id}` has no start event: its tokens start at every node without incoming flows"),
                )
                .with_id(id),
            );
        }
        let has_start = members
            .iter()
            .any(|&n| process.graph[n].category == Category::StartEvent);
        if !has_start && !scope.implicit_start {
            let (span, id) = scope_owner(process, scope_id);
            let what = if scope.subprocess.is_some() {
                "subprocess"
            } else {
                "process"
            };
            diagnostics.push(
                Diagnostic::error(file, span, format!("{what} `{id}` has no start event"))
                    .with_id(id),
            );
        } else {
            check_reachability(process, &members, &roots, diagnostics);
        }
        check_ends(process, &members, diagnostics);
    }
    for index in process.graph.node_indices() {
        check_gateway(process, index, diagnostics);
        let node = &process.graph[index];
        if node.category == Category::BoundaryEvent && !node.incoming.is_empty() {
            diagnostics.push(
                Diagnostic::error(
                    file,
                    node.span,
                    format!(
                        "boundary event `{}` has incoming flows: it is triggered by its activity, not by a flow",
                        node.id
                    ),
                )
                .with_id(node.id.clone()),
            );
        }
    }
    diagnostics.extend(process.unsupported.iter().cloned());
}

/// The span and id of the element that owns a scope (the subprocess, or the process).
fn scope_owner(process: &CompiledProcess, scope: ScopeId) -> (Span, String) {
    match process.scopes[scope].subprocess {
        Some(sub) => (process.graph[sub].span, process.graph[sub].id.clone()),
        None => (process.span, process.id.clone()),
    }
}

/// Nodes where tokens can appear without an incoming flow: start events of every kind, boundary
/// events (their activity starts them) and event subprocesses.
fn is_root(node: &FlowNode) -> bool {
    matches!(
        node.category,
        Category::StartEvent | Category::BoundaryEvent | Category::EventSubProcess
    )
}

fn check_reachability(
    process: &CompiledProcess,
    members: &[NodeIndex],
    roots: &[NodeIndex],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut seen: HashSet<NodeIndex> = HashSet::new();
    let mut queue: VecDeque<NodeIndex> = roots.iter().copied().collect();
    while let Some(n) = queue.pop_front() {
        if seen.insert(n) {
            queue.extend(process.graph.neighbors_directed(n, Direction::Outgoing));
            if let Behavior::LinkThrow { target } = process.graph[n].behavior {
                queue.push_back(target);
            }
        }
    }
    for &n in members {
        if !seen.contains(&n) {
            let node = &process.graph[n];
            diagnostics.push(
                Diagnostic::error(
                    &process.source,
                    node.span,
                    format!(
                        "{} `{}` cannot be reached from any start event",
                        node.element, node.id
                    ),
                )
                .with_id(node.id.clone()),
            );
        }
    }
}

/// Dead ends (implicit ends) and nodes from which no end can be reached (endless loops).
fn check_ends(process: &CompiledProcess, members: &[NodeIndex], diagnostics: &mut Vec<Diagnostic>) {
    let is_sink = |n: NodeIndex| {
        let node = &process.graph[n];
        node.outgoing.is_empty() || matches!(node.behavior, Behavior::End(_))
    };
    for &n in members {
        let node = &process.graph[n];
        let exempt = matches!(node.behavior, Behavior::End(_) | Behavior::LinkThrow { .. })
            || node.compensation_handler
            || node.category == Category::EventSubProcess
            || node.category == Category::BoundaryEvent && node.element.starts_with("compensation");
        if node.outgoing.is_empty() && !exempt {
            diagnostics.push(
                Diagnostic::warning(
                    &process.source,
                    node.span,
                    format!(
                        "{} `{}` has no outgoing flow: its tokens end there",
                        node.element, node.id
                    ),
                )
                .with_id(node.id.clone()),
            );
        }
    }
    // Backward search from every sink: nodes not found cannot reach an end.
    let mut reaches_end: HashSet<NodeIndex> = HashSet::new();
    let mut queue: VecDeque<NodeIndex> = members.iter().copied().filter(|&n| is_sink(n)).collect();
    while let Some(n) = queue.pop_front() {
        if reaches_end.insert(n) {
            queue.extend(process.graph.neighbors_directed(n, Direction::Incoming));
        }
    }
    for &n in members {
        if !reaches_end.contains(&n) {
            let node = &process.graph[n];
            diagnostics.push(
                Diagnostic::warning(
                    &process.source,
                    node.span,
                    format!(
                        "no end event can be reached from `{}`: its tokens loop forever",
                        node.id
                    ),
                )
                .with_id(node.id.clone()),
            );
        }
    }
}

fn check_gateway(process: &CompiledProcess, index: NodeIndex, diagnostics: &mut Vec<Diagnostic>) {
    let node = &process.graph[index];
    let file = process.source.as_path();
    let kind = match &node.behavior {
        Behavior::Gateway(kind) => *kind,
        _ => return,
    };
    let (incoming, outgoing) = (node.incoming.len(), node.outgoing.len());
    let id = node.id.clone();
    if outgoing == 0 {
        diagnostics.push(
            Diagnostic::error(
                file,
                node.span,
                format!("{} `{id}` has no outgoing flow", node.element),
            )
            .with_id(id),
        );
        return;
    }
    if kind == GatewayKind::EventBased {
        if outgoing < 2 {
            diagnostics.push(
                Diagnostic::error(
                    file,
                    node.span,
                    format!("event-based gateway `{id}` needs at least two outgoing flows"),
                )
                .with_id(id.clone()),
            );
        }
        for &edge in &node.outgoing {
            let target = process.node(process.flow(edge).target);
            let waits_for_event = matches!(
                target.behavior,
                Behavior::Wait(
                    WaitSpec::Timer { .. } | WaitSpec::Message { .. } | WaitSpec::Signal { .. }
                )
            );
            if !waits_for_event {
                diagnostics.push(
                    Diagnostic::error(
                        file,
                        target.span,
                        format!(
                            "event-based gateway `{id}` leads to {} `{}`: only timer, message and signal catch events and receive tasks can follow it",
                            target.element, target.id
                        ),
                    )
                    .with_id(target.id.clone()),
                );
            }
        }
        return;
    }
    if incoming == 1 && outgoing == 1 {
        diagnostics.push(
            Diagnostic::warning(
                file,
                node.span,
                format!(
                    "{} `{id}` neither splits nor joins (one incoming and one outgoing flow)",
                    node.element
                ),
            )
            .with_id(id.clone()),
        );
    }
    if kind == GatewayKind::Parallel {
        for &edge in &node.outgoing {
            let flow = process.flow(edge);
            if flow.condition.is_some() {
                diagnostics.push(
                    Diagnostic::warning(
                        file,
                        flow.span,
                        format!(
                            "condition on flow `{}` is ignored: it leaves parallel gateway `{id}`",
                            flow.id
                        ),
                    )
                    .with_id(flow.id.clone()),
                );
            }
        }
        return;
    }
    if outgoing >= 2
        && node.default_flow.is_none()
        && !conditions_obviously_complete(process, &node.outgoing)
    {
        diagnostics.push(
            Diagnostic::warning(
                file,
                node.span,
                format!(
                    "{} `{id}` has no default flow and its conditions may all be false: such a token raises an incident",
                    node.element
                ),
            )
            .with_id(id),
        );
    }
}

/// Whether a set of outgoing flows obviously always matches: one has no condition or is `true`,
/// or two conditions are each other's negation (`c` / `!c`, `a > b` / `a <= b`, `==` / `!=`).
fn conditions_obviously_complete(
    process: &CompiledProcess,
    outgoing: &[petgraph::graph::EdgeIndex],
) -> bool {
    let texts: Vec<Option<String>> = outgoing
        .iter()
        .map(|&e| {
            process
                .flow(e)
                .condition
                .as_ref()
                .map(|c| normalize(&c.source))
        })
        .collect();
    if texts
        .iter()
        .any(|t| t.as_deref().is_none_or(|t| t == "true"))
    {
        return true;
    }
    let texts: Vec<String> = texts.into_iter().flatten().collect();
    texts
        .iter()
        .any(|a| texts.iter().any(|b| complementary(a, b)))
}

fn normalize(text: &str) -> String {
    let compact: String = text.split_whitespace().collect();
    strip_parens(&compact).to_string()
}

fn strip_parens(mut text: &str) -> &str {
    while let Some(inner) = text.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
        if inner.contains('(') || inner.contains(')') {
            break;
        }
        text = inner;
    }
    text
}

fn complementary(a: &str, b: &str) -> bool {
    if let Some(negated) = b.strip_prefix('!') {
        if strip_parens(negated) == a {
            return true;
        }
    }
    const PAIRS: &[(&str, &str)] = &[
        (">=", "<"),
        ("<=", ">"),
        ("==", "!="),
        (">", "<="),
        ("<", ">="),
    ];
    for (op, opposite) in PAIRS {
        if let (Some((la, ra)), Some((lb, rb))) =
            (split_comparison(a, op), split_comparison(b, opposite))
        {
            if la == lb && ra == rb {
                return true;
            }
        }
    }
    false
}

fn split_comparison<'t>(text: &'t str, op: &str) -> Option<(&'t str, &'t str)> {
    const OPS: &[&str] = &[">=", "<=", "==", "!=", ">", "<"];
    // The first comparison operator in the text must be `op` itself.
    let (pos, found) = OPS
        .iter()
        .filter_map(|o| text.find(o).map(|p| (p, *o)))
        .min_by_key(|(p, o)| (*p, std::cmp::Reverse(o.len())))?;
    (found == op).then(|| (&text[..pos], &text[pos + op.len()..]))
}
