//! A process graph drawn as SVG by the server, so no renderer is needed anywhere: a layered
//! layout (columns by longest path from the start, back edges of loops drawn below, rows ordered
//! by the mean row of predecessors), events as circles, gateways as diamonds, activities as
//! rounded boxes.
//!
//! Invariant: every node is a `<g class="node ..." data-node="ID">` and every flow a
//! `<path class="flow" data-flow="ID" data-source="A" data-target="B">`, so a page can highlight
//! an instance's path by node id; text is XML-escaped.

use flowbot_engine::graph::{Category, CompiledProcess};
use std::collections::VecDeque;
use std::fmt::Write;

const COLUMN: f64 = 175.0;
const ROW: f64 = 95.0;
const MARGIN: f64 = 40.0;
const BOX_W: f64 = 130.0;
const BOX_H: f64 = 56.0;
const EVENT_R: f64 = 17.0;
const GATEWAY: f64 = 26.0;

/// The process graph as a standalone SVG document.
pub fn render(process: &CompiledProcess) -> String {
    let graph = &process.graph;
    let count = graph.node_count();
    let successors = |n: usize| -> Vec<usize> {
        graph[petgraph::graph::NodeIndex::new(n)]
            .outgoing
            .iter()
            .map(|e| graph[*e].target.index())
            .collect()
    };
    let back = back_edges(count, &successors);
    let forward = |n: usize| -> Vec<usize> {
        successors(n)
            .into_iter()
            .filter(|t| !back.contains(&(n, *t)))
            .collect()
    };
    // Extra layering constraints: a boundary event sits in its host's column, a subprocess's
    // inner starts in the column after it.
    let mut extra: Vec<(usize, usize, usize)> = Vec::new();
    for index in graph.node_indices() {
        let node = &graph[index];
        for boundary in &node.boundaries {
            extra.push((index.index(), boundary.index(), 0));
        }
        if let flowbot_engine::graph::Behavior::SubProcess { scope } = node.behavior {
            for start in &process.scopes[scope].starts {
                extra.push((index.index(), start.index(), 1));
            }
        }
    }
    let layer = longest_path_layers(count, &forward, &extra);
    let rows = order_rows(count, &layer, &forward);
    let columns = layer.iter().copied().max().map_or(1, |m| m + 1);
    let most_rows = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut position = vec![(0.0, 0.0); count];
    for (column, members) in rows.iter().enumerate() {
        let offset = (most_rows - members.len()) as f64 * ROW / 2.0;
        for (row, &node) in members.iter().enumerate() {
            position[node] = (
                MARGIN + BOX_W / 2.0 + column as f64 * COLUMN,
                MARGIN + BOX_H / 2.0 + offset + row as f64 * ROW,
            );
        }
    }
    let width = MARGIN * 2.0 + BOX_W + (columns - 1) as f64 * COLUMN;
    let height = MARGIN * 2.0 + BOX_H + (most_rows - 1) as f64 * ROW + 40.0;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="process-graph" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" height="{height:.0}" data-process="{}">"#,
        escape(&process.id)
    );
    svg.push_str(STYLE);
    svg.push_str(
        r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"#,
    );
    for flow in graph.edge_weights() {
        let (source, target) = (flow.source.index(), flow.target.index());
        let (sx, sy) = position[source];
        let (tx, ty) = position[target];
        let (x1, x2) = (
            sx + half_width(process, source),
            tx - half_width(process, target),
        );
        let path = if back.contains(&(source, target)) {
            let below = sy.max(ty) + ROW * 0.6;
            format!(
                "M{sx:.1},{:.1} C{sx:.1},{below:.1} {tx:.1},{below:.1} {tx:.1},{:.1}",
                sy + half_height(process, source),
                ty + half_height(process, target)
            )
        } else {
            let bend = (x2 - x1).abs() / 2.0;
            format!(
                "M{x1:.1},{sy:.1} C{:.1},{sy:.1} {:.1},{ty:.1} {x2:.1},{ty:.1}",
                x1 + bend,
                x2 - bend
            )
        };
        let _ = write!(
            svg,
            r#"<path class="flow" data-flow="{}" data-source="{}" data-target="{}" d="{path}" marker-end="url(#arrow)"/>"#,
            escape(&flow.id),
            escape(&graph[flow.source].id),
            escape(&graph[flow.target].id)
        );
        let label = flow
            .name
            .as_deref()
            .or(flow.condition.as_ref().map(|c| c.source.as_str()));
        if let Some(label) = label {
            let _ = write!(
                svg,
                r#"<text class="flow-label" x="{:.1}" y="{:.1}">{}</text>"#,
                (x1 + x2) / 2.0,
                (sy + ty) / 2.0 - 6.0,
                escape(&shorten(label, 26))
            );
        }
    }
    for index in graph.node_indices() {
        let node = &graph[index];
        let (x, y) = position[index.index()];
        let kind = kind_class(node.category);
        let _ = write!(
            svg,
            r#"<g class="node {kind}" data-node="{}"><title>{} ({})</title>"#,
            escape(&node.id),
            escape(node.label()),
            escape(&node.element)
        );
        match node.category {
            c if c.is_event() => {
                let _ = write!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="{EVENT_R}"/>"#);
                label_below(&mut svg, x, y + EVENT_R + 14.0, node.label());
            }
            Category::Gateway => {
                let _ = write!(
                    svg,
                    r#"<path d="M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} z"/>"#,
                    y - GATEWAY,
                    x + GATEWAY,
                    y + GATEWAY,
                    x - GATEWAY
                );
                if node.name.is_some() {
                    label_below(&mut svg, x, y + GATEWAY + 14.0, node.label());
                }
            }
            _ => {
                let _ = write!(
                    svg,
                    r#"<rect x="{:.1}" y="{:.1}" width="{BOX_W}" height="{BOX_H}" rx="9"/>"#,
                    x - BOX_W / 2.0,
                    y - BOX_H / 2.0
                );
                let lines = wrap(node.label(), 19, 3);
                let first = y - (lines.len() as f64 - 1.0) * 7.0 + 4.0;
                for (i, line) in lines.iter().enumerate() {
                    let _ = write!(
                        svg,
                        r#"<text class="label" x="{x:.1}" y="{:.1}">{}</text>"#,
                        first + i as f64 * 14.0,
                        escape(line)
                    );
                }
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str("</svg>");
    svg
}

const STYLE: &str = "<style>\
.process-graph{font:12px system-ui,sans-serif}\
.node rect,.node circle,.node path{fill:#fff;stroke:#5b6b7f;stroke-width:1.5}\
.node.end circle{stroke-width:3}\
.node.gateway path{fill:#fff8e6}\
.node text{text-anchor:middle;fill:#1d2733}\
.flow{fill:none;stroke:#8a97a8;stroke-width:1.4}\
.arrowhead{fill:#8a97a8}\
.flow-label{font-size:10px;fill:#6b7785;text-anchor:middle}\
</style>";

fn kind_class(category: Category) -> &'static str {
    match category {
        Category::StartEvent => "event start",
        Category::EndEvent => "event end",
        Category::BoundaryEvent => "event boundary",
        c if c.is_event() => "event",
        Category::Gateway => "gateway",
        _ => "activity",
    }
}

fn half_width(process: &CompiledProcess, node: usize) -> f64 {
    match process.graph[petgraph::graph::NodeIndex::new(node)].category {
        c if c.is_event() => EVENT_R,
        Category::Gateway => GATEWAY,
        _ => BOX_W / 2.0,
    }
}

fn half_height(process: &CompiledProcess, node: usize) -> f64 {
    match process.graph[petgraph::graph::NodeIndex::new(node)].category {
        c if c.is_event() => EVENT_R,
        Category::Gateway => GATEWAY,
        _ => BOX_H / 2.0,
    }
}

fn label_below(svg: &mut String, x: f64, y: f64, label: &str) {
    let _ = write!(
        svg,
        r#"<text class="label" x="{x:.1}" y="{y:.1}">{}</text>"#,
        escape(&shorten(label, 24))
    );
}

/// Edges that close a cycle (found by depth-first search from the nodes without predecessors,
/// then from any node not yet visited).
fn back_edges(count: usize, successors: &dyn Fn(usize) -> Vec<usize>) -> Vec<(usize, usize)> {
    let mut has_predecessor = vec![false; count];
    for n in 0..count {
        for t in successors(n) {
            has_predecessor[t] = true;
        }
    }
    let roots = (0..count)
        .filter(|n| !has_predecessor[*n])
        .chain(0..count)
        .collect::<Vec<_>>();
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; count];
    let mut back = Vec::new();
    for root in roots {
        if state[root] != 0 {
            continue;
        }
        let mut stack = vec![(root, successors(root), 0usize)];
        state[root] = 1;
        while let Some((node, next, i)) = stack.last_mut() {
            if let Some(&target) = next.get(*i) {
                *i += 1;
                match state[target] {
                    0 => {
                        state[target] = 1;
                        let targets = successors(target);
                        stack.push((target, targets, 0));
                    }
                    1 => back.push((*node, target)),
                    _ => {}
                }
            } else {
                state[*node] = 2;
                stack.pop();
            }
        }
    }
    back
}

/// The column of every node: the longest forward path to it (plus the `extra` constraints
/// `(from, to, gap)`: `to` at least `gap` columns after `from`).
fn longest_path_layers(
    count: usize,
    forward: &dyn Fn(usize) -> Vec<usize>,
    extra: &[(usize, usize, usize)],
) -> Vec<usize> {
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); count];
    for (n, targets) in edges.iter_mut().enumerate() {
        targets.extend(forward(n).into_iter().map(|t| (t, 1)));
    }
    for &(from, to, gap) in extra {
        edges[from].push((to, gap));
    }
    let mut incoming = vec![0usize; count];
    for targets in &edges {
        for &(t, _) in targets {
            incoming[t] += 1;
        }
    }
    let mut layer = vec![0usize; count];
    let mut ready: VecDeque<usize> = (0..count).filter(|n| incoming[*n] == 0).collect();
    let mut placed = 0;
    while let Some(n) = ready.pop_front() {
        placed += 1;
        for &(t, gap) in &edges[n] {
            layer[t] = layer[t].max(layer[n] + gap);
            incoming[t] -= 1;
            if incoming[t] == 0 {
                ready.push_back(t);
            }
        }
    }
    debug_assert!(placed <= count);
    layer
}

/// The nodes of each column, top to bottom: first in id order, then by the mean row of their
/// predecessors (two sweeps).
fn order_rows(
    count: usize,
    layer: &[usize],
    forward: &dyn Fn(usize) -> Vec<usize>,
) -> Vec<Vec<usize>> {
    let columns = layer.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); columns.max(1)];
    for n in 0..count {
        rows[layer[n]].push(n);
    }
    let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); count];
    for n in 0..count {
        for t in forward(n) {
            predecessors[t].push(n);
        }
    }
    for _ in 0..2 {
        let mut row_of = vec![0.0f64; count];
        for members in &rows {
            for (i, &n) in members.iter().enumerate() {
                row_of[n] = i as f64;
            }
        }
        for members_of_column in rows.iter_mut().skip(1) {
            for (i, &n) in members_of_column.iter().enumerate() {
                row_of[n] = i as f64;
            }
            let key = |n: usize| -> f64 {
                let preds = &predecessors[n];
                if preds.is_empty() {
                    row_of[n]
                } else {
                    preds.iter().map(|p| row_of[*p]).sum::<f64>() / preds.len() as f64
                }
            };
            let mut members = members_of_column.clone();
            members.sort_by(|a, b| key(*a).total_cmp(&key(*b)));
            for (i, &n) in members.iter().enumerate() {
                row_of[n] = i as f64;
            }
            *members_of_column = members;
        }
    }
    rows
}

/// `text` in at most `lines` lines of about `width` characters (the last one shortened).
fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(line);
    }
    if out.len() > lines {
        let rest = out[lines - 1..].join(" ");
        out.truncate(lines - 1);
        out.push(shorten(&rest, width));
    }
    out.into_iter().map(|l| shorten(&l, width + 4)).collect()
}

/// `text` cut to `max` characters with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// `text` safe inside XML text and attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_are_back_edges_and_columns_follow_the_longest_path() {
        // 0 -> 1 -> 2 -> 3, 2 -> 1 (a loop), 0 -> 3.
        let edges = [vec![1, 3], vec![2], vec![3, 1], vec![]];
        let successors = |n: usize| edges[n].clone();
        let back = back_edges(4, &successors);
        assert_eq!(back, vec![(2, 1)]);
        let forward = |n: usize| -> Vec<usize> {
            successors(n)
                .into_iter()
                .filter(|t| !back.contains(&(n, *t)))
                .collect()
        };
        assert_eq!(longest_path_layers(4, &forward, &[]), vec![0, 1, 2, 3]);
        assert_eq!(
            longest_path_layers(4, &forward, &[(0, 2, 5)]),
            vec![0, 1, 5, 6]
        );
    }

    #[test]
    fn labels_wrap_shorten_and_escape() {
        assert_eq!(
            wrap("Fill in shipment information and ship", 19, 3),
            vec!["Fill in shipment", "information and", "ship"]
        );
        assert_eq!(wrap("a b c d e f", 1, 2).len(), 2);
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(escape(r#"a<b & "c""#), "a&lt;b &amp; &quot;c&quot;");
    }
}
