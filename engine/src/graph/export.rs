//! Graphviz dot and Mermaid renderings of a compiled process; subprocesses become clusters.

use super::{Behavior, Category, CompiledProcess, FlowNode, ScopeId};
use petgraph::graph::NodeIndex;
use std::fmt::Write;

/// Renders the process as a Graphviz `digraph` (subprocesses as clusters).
pub fn to_dot(process: &CompiledProcess) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote(&process.id));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [fontname=\"Helvetica\", fontsize=10];");
    dot_scope(process, 0, 1, &mut out);
    for edge in process.graph.edge_indices() {
        let flow = process.flow(edge);
        let (source, target) = (flow.source, flow.target);
        let mut attrs = Vec::new();
        if let Some(label) = flow
            .name
            .as_deref()
            .or(flow.condition.as_ref().map(|c| c.source.as_str()))
        {
            attrs.push(format!("label={}", dot_quote(label)));
        }
        if flow.is_default {
            attrs.push("arrowtail=odiamond, dir=both".to_string());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        let _ = writeln!(
            out,
            "  {} -> {}{attrs};",
            dot_quote(&process.node(source).id),
            dot_quote(&process.node(target).id)
        );
    }
    out.push_str("}\n");
    out
}

fn dot_scope(process: &CompiledProcess, scope: ScopeId, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    for index in scope_nodes(process, scope) {
        let node = process.node(index);
        if let Behavior::SubProcess { scope: child } = node.behavior {
            let _ = writeln!(
                out,
                "{indent}subgraph {} {{",
                dot_quote(&format!("cluster_{}", node.id))
            );
            let _ = writeln!(out, "{indent}  label={};", dot_quote(node.label()));
            let _ = writeln!(
                out,
                "{indent}  {} [shape=point, label=\"\"];",
                dot_quote(&node.id)
            );
            dot_scope(process, child, depth + 1, out);
            let _ = writeln!(out, "{indent}}}");
        } else {
            let _ = writeln!(
                out,
                "{indent}{} [shape={}, label={}];",
                dot_quote(&node.id),
                dot_shape(node),
                dot_quote(node.label())
            );
        }
    }
}

fn dot_shape(node: &FlowNode) -> &'static str {
    if node.category == Category::Gateway {
        "diamond"
    } else if node.category.is_event() {
        if matches!(node.behavior, Behavior::End(_)) {
            "doublecircle"
        } else {
            "circle"
        }
    } else {
        "box"
    }
}

fn dot_quote(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// Renders the process as a Mermaid `flowchart` (subprocesses as subgraphs).
pub fn to_mermaid(process: &CompiledProcess) -> String {
    let mut out = String::from("flowchart LR\n");
    mermaid_scope(process, 0, 1, &mut out);
    for edge in process.graph.edge_indices() {
        let flow = process.flow(edge);
        let (source, target) = (flow.source, flow.target);
        let label = flow
            .name
            .as_deref()
            .or(flow.condition.as_ref().map(|c| c.source.as_str()));
        let arrow = match label {
            Some(label) => format!("-->|{}|", mermaid_text(label)),
            None => "-->".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} {arrow} {}",
            mermaid_id(&process.node(source).id),
            mermaid_id(&process.node(target).id)
        );
    }
    out
}

fn mermaid_scope(process: &CompiledProcess, scope: ScopeId, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    for index in scope_nodes(process, scope) {
        let node = process.node(index);
        let id = mermaid_id(&node.id);
        let label = mermaid_text(node.label());
        if let Behavior::SubProcess { scope: child } = node.behavior {
            let _ = writeln!(out, "{indent}subgraph {id} [{label}]");
            mermaid_scope(process, child, depth + 1, out);
            let _ = writeln!(out, "{indent}end");
        } else if node.category == Category::Gateway {
            let _ = writeln!(out, "{indent}{id}{{{label}}}");
        } else if node.category.is_event() {
            let _ = writeln!(out, "{indent}{id}(({label}))");
        } else {
            let _ = writeln!(out, "{indent}{id}[{label}]");
        }
    }
}

/// Mermaid ids allow letters, digits, `_` and `-`; anything else becomes `_`.
fn mermaid_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn mermaid_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c == '"' {
                '\''
            } else if c == '\n' {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!("\"{cleaned}\"")
}

fn scope_nodes(process: &CompiledProcess, scope: ScopeId) -> impl Iterator<Item = NodeIndex> + '_ {
    process
        .graph
        .node_indices()
        .filter(move |&n| process.node(n).scope == scope)
}
