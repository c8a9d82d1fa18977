//! Builds process models in Rust for unit tests (each element gets its own line number).

use crate::model::*;
use std::path::PathBuf;

/// A scope under construction: nodes and flows in document order.
#[derive(Default)]
pub struct Scope {
    nodes: Vec<Node>,
    flows: Vec<SequenceFlow>,
    line: u32,
}

impl Scope {
    /// An empty scope whose elements start at line `line`.
    pub fn at_line(line: u32) -> Self {
        Self {
            line,
            ..Self::default()
        }
    }

    fn next_span(&mut self) -> Span {
        self.line += 1;
        Span::new(self.line, 3)
    }

    /// Adds a node.
    pub fn node(mut self, id: &str, kind: NodeKind) -> Self {
        let span = self.next_span();
        self.nodes.push(Node {
            id: id.into(),
            name: None,
            kind,
            default_flow: None,
            rules: Vec::new(),
            span,
        });
        self
    }

    /// Adds a node with a default flow.
    pub fn node_with_default(mut self, id: &str, kind: NodeKind, default: &str) -> Self {
        self = self.node(id, kind);
        if let Some(node) = self.nodes.last_mut() {
            node.default_flow = Some(default.into());
        }
        self
    }

    /// Adds a flow `from_to` from `from` to `to`.
    pub fn flow(self, from: &str, to: &str) -> Self {
        self.flow_if(from, to, None)
    }

    /// Adds a flow with a Rhai condition.
    pub fn cond(self, from: &str, to: &str, condition: &str) -> Self {
        self.flow_if(from, to, Some(condition))
    }

    fn flow_if(mut self, from: &str, to: &str, condition: Option<&str>) -> Self {
        let span = self.next_span();
        let condition = condition.map(|c| Expr {
            language: None,
            source: c.into(),
            span: Span::new(span.line, span.col + 10),
        });
        self.flows.push(SequenceFlow {
            id: format!("{from}_{to}"),
            name: None,
            source: from.into(),
            target: to.into(),
            condition,
            span,
        });
        self
    }

    /// A chain of flows through `ids`.
    pub fn chain(mut self, ids: &[&str]) -> Self {
        for pair in ids.windows(2) {
            self = self.flow(pair[0], pair[1]);
        }
        self
    }

    /// Wraps the scope as an embedded subprocess kind.
    pub fn subprocess(self) -> NodeKind {
        NodeKind::SubProcess(Activity::new(SubProcess {
            nodes: self.nodes,
            flows: self.flows,
            event_subprocess: false,
            transaction: false,
        }))
    }

    /// One executable process `p` in file `test.bpmn`.
    pub fn definitions(self) -> Definitions {
        Definitions {
            source: PathBuf::from("test.bpmn"),
            processes: vec![Process {
                id: "p".into(),
                name: None,
                executable: true,
                nodes: self.nodes,
                flows: self.flows,
                lanes: Vec::new(),
                rules: Vec::new(),
                span: Span::new(1, 1),
            }],
            ..Definitions::default()
        }
    }
}

/// A none start event.
pub fn start() -> NodeKind {
    NodeKind::StartEvent {
        trigger: None,
        interrupting: true,
    }
}

/// A none end event.
pub fn end() -> NodeKind {
    NodeKind::EndEvent { result: None }
}

/// A terminate end event.
pub fn terminate() -> NodeKind {
    NodeKind::EndEvent {
        result: Some(EventTrigger::Terminate),
    }
}

/// A plain task.
pub fn task() -> NodeKind {
    NodeKind::Task(Activity::new(TaskKind::Plain))
}

/// A user task.
pub fn user() -> NodeKind {
    NodeKind::Task(Activity::new(TaskKind::User))
}

/// A service task with a handler.
pub fn service(handler: &str) -> NodeKind {
    NodeKind::Task(Activity::new(TaskKind::Service {
        handler: Some(handler.into()),
    }))
}

/// A Rhai script task.
pub fn script(source: &str) -> NodeKind {
    script_in(None, source)
}

/// A script task in a declared language.
pub fn script_in(language: Option<&str>, source: &str) -> NodeKind {
    NodeKind::Task(Activity::new(TaskKind::Script {
        script: Some(Script {
            language: language.map(str::to_string),
            source: source.into(),
            span: Span::new(50, 5),
        }),
    }))
}

/// An exclusive gateway.
pub fn xor() -> NodeKind {
    NodeKind::Gateway(GatewayKind::Exclusive)
}

/// A parallel gateway.
pub fn and() -> NodeKind {
    NodeKind::Gateway(GatewayKind::Parallel)
}

/// An inclusive gateway.
pub fn or() -> NodeKind {
    NodeKind::Gateway(GatewayKind::Inclusive)
}
