//! The graph compiler: turns one process of a [`Definitions`] into a [`CompiledProcess`], a
//! petgraph graph with typed node and edge payloads that the executor runs.
//!
//! Invariants:
//! - Embedded subprocesses are flattened into the one graph; every node carries the [`ScopeId`] of
//!   the scope it belongs to (scope 0 is the process itself). Sequence flows never cross scopes.
//! - Conditions and scripts are compiled once, here, through [`ScriptRuntime`]; the executor never
//!   compiles.
//! - [`compile`] reports every problem of the file in one pass and returns `None` when any of them
//!   is an error. Elements the executor cannot run yet are warnings here and are listed in
//!   [`CompiledProcess::unsupported`]; the executor refuses to start such a process.

mod build;
mod export;
mod validate;

pub use build::{element_name, offset_span};
pub use export::{to_dot, to_mermaid};

use crate::diagnostics::{has_errors, Diagnostic};
use crate::dmn::Decisions;
use crate::model::{
    CallBinding, DecisionResultMapping, Definitions, LlmTask, RuleAttachment, Span, Timer,
};
use crate::script::{CompiledScript, ScriptRuntime};
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

/// Index of a scope: 0 is the process, every embedded subprocess has its own.
pub type ScopeId = usize;

/// A process compiled into an executable graph.
#[derive(Debug)]
pub struct CompiledProcess {
    /// Process id.
    pub id: String,
    /// Process name.
    pub name: Option<String>,
    /// The file the process came from.
    pub source: PathBuf,
    /// Where the process element is in the file.
    pub span: Span,
    /// Flow nodes and sequence flows.
    pub graph: DiGraph<FlowNode, Flow>,
    /// Scopes: index 0 is the process, then one per embedded subprocess.
    pub scopes: Vec<ScopeInfo>,
    /// Business rules attached to the whole process (visible to execution hooks for every node).
    pub rules: Vec<RuleAttachment>,
    /// Elements the executor does not run yet (`not supported yet: ...`), as warnings.
    pub unsupported: Vec<Diagnostic>,
    scripts: Arc<ScriptRuntime>,
    node_ids: HashMap<String, NodeIndex>,
    /// For each inclusive join: the nodes of its scope from which it can be reached.
    upstream: HashMap<NodeIndex, HashSet<NodeIndex>>,
}

impl CompiledProcess {
    /// The script runtime its conditions and scripts were compiled with (and run by).
    pub fn scripts(&self) -> &ScriptRuntime {
        &self.scripts
    }

    /// Whether any business rule is attached to the process or one of its nodes.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty() || self.graph.node_weights().any(|node| !node.rules.is_empty())
    }

    /// Whether any node is a language-model step (the process needs a model to run).
    pub fn has_llm_steps(&self) -> bool {
        self.graph
            .node_weights()
            .any(|node| matches!(&node.behavior, Behavior::Wait(WaitSpec::Llm(_))))
    }

    /// The node with the given id.
    pub fn node_index(&self, id: &str) -> Option<NodeIndex> {
        self.node_ids.get(id).copied()
    }

    /// The node at `index`.
    pub fn node(&self, index: NodeIndex) -> &FlowNode {
        &self.graph[index]
    }

    /// The error boundary event on `activity` that catches an error with `code`: one naming the
    /// code first, else one catching every error.
    pub fn error_boundary(&self, activity: NodeIndex, code: Option<&str>) -> Option<NodeIndex> {
        let catches = |boundary: &NodeIndex, exact: bool| match &self.node(*boundary).behavior {
            Behavior::Boundary(BoundarySpec {
                trigger: BoundaryTrigger::Error { code: caught },
                ..
            }) => {
                if exact {
                    caught.is_some() && caught.as_deref() == code
                } else {
                    caught.is_none()
                }
            }
            _ => false,
        };
        let boundaries = &self.node(activity).boundaries;
        boundaries
            .iter()
            .find(|b| catches(b, true))
            .or_else(|| boundaries.iter().find(|b| catches(b, false)))
            .copied()
    }

    /// The sequence flow at `index`.
    pub fn flow(&self, index: EdgeIndex) -> &Flow {
        &self.graph[index]
    }

    /// Whether a token at `from` can still reach the inclusive join `join` (both in one scope).
    /// `false` when `join` is not an inclusive join.
    pub fn can_reach_join(&self, from: NodeIndex, join: NodeIndex) -> bool {
        self.upstream
            .get(&join)
            .is_some_and(|set| set.contains(&from))
    }

    /// `file:line:col` of a position in this process's file.
    pub fn location(&self, span: Span) -> String {
        format!("{}:{}:{}", self.source.display(), span.line, span.col)
    }
}

/// One scope of the flattened graph.
#[derive(Debug, Clone)]
pub struct ScopeInfo {
    /// The subprocess node that owns the scope (`None` for the process).
    pub subprocess: Option<NodeIndex>,
    /// The enclosing scope (`None` for the process).
    pub parent: Option<ScopeId>,
    /// Where tokens of the scope begin: its none start events in document order, or, for a scope
    /// with neither start nor end events, every node without incoming flows.
    pub starts: Vec<NodeIndex>,
    /// Whether `starts` are implicit (the scope has no start event).
    pub implicit_start: bool,
    /// Start events with a trigger (message, timer, signal) of the process scope, in document
    /// order: where an instance starts when that trigger starts it.
    pub triggered_starts: Vec<NodeIndex>,
    /// A called process run inline by a call activity: it reads and writes the caller's
    /// variables (new ones land in the caller's scope) instead of keeping its own.
    pub shares_variables: bool,
    /// The event subprocesses of the scope, in document order: armed while an instance of the
    /// scope runs.
    pub event_subprocesses: Vec<NodeIndex>,
    /// A transaction subprocess: a cancel end event inside it compensates and cancels it.
    pub transaction: bool,
}

/// A flow node of the compiled graph.
#[derive(Debug, Clone)]
pub struct FlowNode {
    /// Node id.
    pub id: String,
    /// Node name.
    pub name: Option<String>,
    /// The BPMN element it came from (`userTask`, `timer boundaryEvent`, ...), for messages.
    pub element: String,
    /// What sort of flow node it is.
    pub category: Category,
    /// What the executor does with a token that arrives here.
    pub behavior: Behavior,
    /// The scope it belongs to.
    pub scope: ScopeId,
    /// Where the element is in its file.
    pub span: Span,
    /// Business rules attached to the node (visible to execution hooks).
    pub rules: Vec<RuleAttachment>,
    /// Incoming flows, in document order.
    pub incoming: Vec<EdgeIndex>,
    /// Outgoing flows, in document order.
    pub outgoing: Vec<EdgeIndex>,
    /// The default outgoing flow.
    pub default_flow: Option<EdgeIndex>,
    /// Boundary events attached to this activity, in document order.
    pub boundaries: Vec<NodeIndex>,
    /// Multi-instance settings, when the task runs once per item.
    pub multi: Option<Box<MultiSpec>>,
    /// Standard loop settings, when the activity runs again while a condition holds.
    pub standard_loop: Option<Box<LoopSpec>>,
    /// The activation condition of a complex gateway's join.
    pub activation: Option<CompiledCode>,
    /// The variables a person fills in at a user or manual task.
    pub form: Vec<String>,
    /// The compensation handler of this activity (through its compensation boundary event).
    pub compensation: Option<NodeIndex>,
    /// Whether this activity is a compensation handler: it runs only to compensate, and its
    /// completion returns to the compensation that started it.
    pub compensation_handler: bool,
    /// Input/output mappings of an activity.
    pub io: Option<Box<IoSpec>>,
}

/// Compiled input/output mappings: inputs become local variables of the activity when it starts,
/// outputs are set in the enclosing scope when it completes.
#[derive(Debug, Clone)]
pub struct IoSpec {
    /// Local variable ← expression over the enclosing scope.
    pub inputs: Vec<(String, CompiledCode)>,
    /// Variable of the enclosing scope ← expression over the activity's variables; without any,
    /// the variables a task created (inputs aside) are kept.
    pub outputs: Vec<(String, CompiledCode)>,
    /// Runs in the activity's scope before it starts.
    pub pre_script: Option<CompiledCode>,
    /// Runs in the activity's scope when it completes, before the outputs.
    pub post_script: Option<CompiledCode>,
}

/// A standard loop: the activity runs again while `condition` holds (`loopCounter` is the number
/// of runs so far), at most `maximum` times.
#[derive(Debug, Clone)]
pub struct LoopSpec {
    /// Run again while it holds; `None`: until `maximum`.
    pub condition: Option<CompiledCode>,
    /// Check the condition before the first run too.
    pub test_before: bool,
    /// The most runs.
    pub maximum: Option<u64>,
}

/// A multi-instance task: its body runs once per item of a collection (or `cardinality` times),
/// each run in its own variable scope holding the item and `loopCounter` (1-based).
#[derive(Debug, Clone)]
pub struct MultiSpec {
    /// One run after another (else all at once).
    pub sequential: bool,
    /// Expression giving the list of items.
    pub collection: Option<CompiledCode>,
    /// Expression giving the number of runs (when there is no collection).
    pub cardinality: Option<CompiledCode>,
    /// Variable holding the current item inside each run.
    pub element_variable: Option<String>,
    /// Condition (over the activity's scope plus `nrOfInstances`, `nrOfCompletedInstances`,
    /// `nrOfActiveInstances`) that ends the activity early, cancelling the runs still open.
    pub completion_condition: Option<CompiledCode>,
    /// Variable that receives the list of each run's output, in item order.
    pub output_collection: Option<String>,
    /// Variable inside each run whose value is collected (default: the element variable).
    pub output_element: Option<String>,
}

impl FlowNode {
    /// The name when given, else the id.
    pub fn label(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(&self.id)
    }
}

/// The sorts of flow nodes, for checks and drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// A start event of any kind.
    StartEvent,
    /// An end event of any kind.
    EndEvent,
    /// An intermediate catch or throw event.
    IntermediateEvent,
    /// A boundary event.
    BoundaryEvent,
    /// A task of any kind.
    Task,
    /// An embedded subprocess or transaction.
    SubProcess,
    /// An event subprocess (started by its own start event, not by a flow).
    EventSubProcess,
    /// A call activity.
    CallActivity,
    /// A gateway.
    Gateway,
}

impl Category {
    /// Of a model node kind.
    pub fn of(kind: &crate::model::NodeKind) -> Category {
        use crate::model::NodeKind;
        match kind {
            NodeKind::StartEvent { .. } => Category::StartEvent,
            NodeKind::EndEvent { .. } => Category::EndEvent,
            NodeKind::IntermediateCatchEvent { .. } | NodeKind::IntermediateThrowEvent { .. } => {
                Category::IntermediateEvent
            }
            NodeKind::BoundaryEvent { .. } => Category::BoundaryEvent,
            NodeKind::Task(_) => Category::Task,
            NodeKind::SubProcess(a) if a.body.event_subprocess => Category::EventSubProcess,
            NodeKind::SubProcess(_) => Category::SubProcess,
            NodeKind::CallActivity(_) => Category::CallActivity,
            NodeKind::Gateway(_) => Category::Gateway,
        }
    }

    /// Whether boundary events can be attached to it.
    pub fn is_activity(self) -> bool {
        matches!(
            self,
            Category::Task
                | Category::SubProcess
                | Category::EventSubProcess
                | Category::CallActivity
        )
    }

    /// Whether it is an event.
    pub fn is_event(self) -> bool {
        matches!(
            self,
            Category::StartEvent
                | Category::EndEvent
                | Category::IntermediateEvent
                | Category::BoundaryEvent
        )
    }
}

/// What a node does when a token arrives.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// A none start event: where tokens of its scope begin.
    Start,
    /// An end event.
    End(EndBehavior),
    /// Completes at once (plain task, none intermediate event, send task without handler).
    PassThrough,
    /// Throws events (message, signal, escalation; several for a multiple event) and moves on.
    Throw(Vec<ThrownEvent>),
    /// Runs a Rhai script; its top-level `let`s and assignments become variables.
    Script(CompiledCode),
    /// Waits until the driver completes it.
    Wait(WaitSpec),
    /// A gateway.
    Gateway(crate::model::GatewayKind),
    /// An embedded subprocess: runs its own scope.
    SubProcess {
        /// The scope of its child nodes.
        scope: ScopeId,
    },
    /// A business-rule task that evaluates a deployed decision and sets its result variable.
    Decision(Box<DecisionSpec>),
    /// An event subprocess: started by its start event's trigger while its enclosing scope runs,
    /// never entered along a flow.
    EventSubProcess(EventSubProcessSpec),
    /// The start event of an event subprocess (what triggers it).
    EventStart(EventStart),
    /// An intermediate compensation throw: the completed activities of its scope (or only
    /// `activity`) are compensated, in reverse order of completion, before it moves on.
    Compensate {
        /// The one activity to compensate.
        activity: Option<NodeIndex>,
    },
    /// A link throw event: its token continues at the link catch event of the same name.
    LinkThrow {
        /// The link catch event.
        target: NodeIndex,
    },
    /// A boundary event: armed while its activity waits, never entered along a flow.
    Boundary(BoundarySpec),
    /// An element the executor does not run yet (the process cannot be started).
    Unsupported,
}

/// An event subprocess.
#[derive(Debug, Clone)]
pub struct EventSubProcessSpec {
    /// The scope of its child nodes.
    pub scope: ScopeId,
    /// Its start event.
    pub start: NodeIndex,
    /// Whether starting it cancels everything else in the enclosing scope.
    pub interrupting: bool,
}

/// What starts an event subprocess.
#[derive(Debug, Clone)]
pub enum EventStart {
    /// A message, timer, signal or condition: a wait armed while the enclosing scope runs.
    Wait(WaitSpec),
    /// A BPMN error thrown in the enclosing scope (`None` catches every error).
    Error {
        /// The error code it catches.
        code: Option<String>,
    },
    /// An escalation thrown in the enclosing scope (`None` catches every escalation).
    Escalation {
        /// The escalation code it catches.
        code: Option<String>,
    },
}

/// A business-rule task bound to a deployed decision.
#[derive(Debug, Clone)]
pub struct DecisionSpec {
    /// The decisions it was bound to when compiled.
    pub decisions: Arc<Decisions>,
    /// The decision's id.
    pub decision: String,
    /// The variable that receives the result.
    pub result_variable: String,
    /// How the result is shaped.
    pub mapping: DecisionResultMapping,
}

/// A boundary event attached to an activity.
#[derive(Debug, Clone)]
pub struct BoundarySpec {
    /// The activity it is attached to.
    pub attached: NodeIndex,
    /// What fires it.
    pub trigger: BoundaryTrigger,
    /// Whether firing cancels the activity (error boundary events always do).
    pub interrupting: bool,
}

/// What fires a boundary event.
#[derive(Debug, Clone)]
pub enum BoundaryTrigger {
    /// A timer, message or signal: a wait armed while the activity waits.
    Wait(WaitSpec),
    /// A BPMN error thrown inside the activity (`None` catches every error).
    Error {
        /// The error code it catches.
        code: Option<String>,
    },
    /// An escalation thrown inside the activity (`None` catches every escalation).
    Escalation {
        /// The escalation code it catches.
        code: Option<String>,
    },
    /// Marks the activity's compensation handler; it never fires as a token.
    Compensation,
    /// A cancel end event inside the transaction it is attached to.
    Cancel,
}

/// What an end event does besides consuming its token.
#[derive(Debug, Clone, PartialEq)]
pub enum EndBehavior {
    /// A none end event.
    None,
    /// Ends every token of its scope (the whole instance at the top level).
    Terminate,
    /// Throws events, then ends like a none end event.
    Throw(Vec<ThrownEvent>),
    /// Throws an error, caught by an error event subprocess or boundary event outwards.
    Error {
        /// The error code, when given.
        code: Option<String>,
    },
    /// Compensates the completed activities of its scope (or only `activity`), then ends.
    Compensate {
        /// The one activity to compensate.
        activity: Option<NodeIndex>,
    },
    /// Cancels the transaction it is in: compensation, then the transaction's cancel boundary
    /// event.
    Cancel,
}

/// An event thrown to the outside of the instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThrownEvent {
    /// `message`, `signal` or `escalation`.
    pub kind: String,
    /// Its name or code, when given.
    pub name: Option<String>,
}

/// Why a waiting node waits.
#[derive(Debug, Clone)]
pub enum WaitSpec {
    /// A service (or send) task: a job the driver runs with the named handler.
    Job {
        /// Handler name (`None`: no handler given; only an external completion ends it).
        handler: Option<String>,
    },
    /// A user or manual task.
    User {
        /// `true` for a manual task.
        manual: bool,
    },
    /// A receive task or message catch event.
    Message {
        /// Message name.
        name: Option<String>,
        /// Expression over variables giving the correlation key.
        correlation_key: Option<CompiledCode>,
    },
    /// A timer catch event (the durable layer owns time).
    Timer {
        /// The timer as written.
        timer: Timer,
        /// When the written text is not itself a duration, date or cycle: the expression over
        /// variables that gives it (`"PT1S"`, `reminder_delay`), evaluated when the wait begins.
        computed: Option<CompiledCode>,
    },
    /// A signal catch event.
    Signal {
        /// Signal name.
        name: Option<String>,
    },
    /// A language-model step (run by the server, which owns the model).
    Llm(Box<LlmTask>),
    /// A conditional event: fires when its condition becomes true (re-evaluated whenever a step
    /// leaves tokens waiting).
    Condition(CompiledCode),
    /// A call activity that starts a child instance of another deployed process (the driver
    /// starts it and completes the wait with its end variables).
    Call {
        /// The called process id.
        process: String,
        /// Which deployed version runs.
        binding: CallBinding,
    },
    /// A multiple event: one wait per trigger; the first completes it (`all`: every one must).
    Multiple {
        /// The triggers' waits.
        specs: Vec<WaitSpec>,
        /// Parallel multiple: all of them.
        all: bool,
    },
}

/// A compiled condition, expression or script with its source position.
#[derive(Debug, Clone)]
pub struct CompiledCode {
    /// The compiled AST (shared through the runtime's cache).
    pub ast: CompiledScript,
    /// The source text.
    pub source: String,
    /// Where the source text starts in its file.
    pub span: Span,
}

/// A sequence flow of the compiled graph.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Flow id.
    pub id: String,
    /// Flow name.
    pub name: Option<String>,
    /// The node it leaves.
    pub source: NodeIndex,
    /// The node it enters.
    pub target: NodeIndex,
    /// The condition, when the flow is conditional.
    pub condition: Option<CompiledCode>,
    /// Whether it is its source's default flow.
    pub is_default: bool,
    /// Where the flow is in its file.
    pub span: Span,
}

/// Compiles one process of `defs`: the one named `process`, else the first executable one (else
/// the first one, with a warning). Returns the compiled process (`None` when any diagnostic is an
/// error) and every diagnostic found. The compiled process keeps `scripts` to run its code.
pub fn compile(
    defs: &Definitions,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
) -> (Option<CompiledProcess>, Vec<Diagnostic>) {
    compile_with(defs, process, scripts, &Catalog::default())
}

/// What a process may use from outside its own file: the deployed decisions (business-rule
/// tasks are bound to them when the process is compiled).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Decisions business-rule tasks can evaluate.
    pub decisions: Arc<Decisions>,
}

impl Catalog {
    /// A catalog of these decisions.
    pub fn with_decisions(decisions: Arc<Decisions>) -> Self {
        Self { decisions }
    }
}

/// [`compile`] with the decisions (and other deployed things) in `catalog`.
pub fn compile_with(
    defs: &Definitions,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
    catalog: &Catalog,
) -> (Option<CompiledProcess>, Vec<Diagnostic>) {
    let mut diagnostics = validate::check_definitions(defs);
    let Some(chosen) = choose_process(defs, process, &mut diagnostics) else {
        return (None, diagnostics);
    };
    let compiled = build::build(defs, chosen, scripts, catalog, &mut diagnostics);
    if let Some(compiled) = &compiled {
        validate::check_graph(compiled, &mut diagnostics);
    }
    diagnostics.sort_by(|a, b| (a.span, &a.message).cmp(&(b.span, &b.message)));
    diagnostics.dedup();
    if has_errors(&diagnostics) {
        (None, diagnostics)
    } else {
        (compiled, diagnostics)
    }
}

fn choose_process<'d>(
    defs: &'d Definitions,
    wanted: Option<&str>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'d crate::model::Process> {
    let file = &defs.source;
    if let Some(wanted) = wanted {
        let found = defs.processes.iter().find(|p| p.id == wanted);
        if found.is_none() {
            let known: Vec<&str> = defs.processes.iter().map(|p| p.id.as_str()).collect();
            diagnostics.push(Diagnostic::error(
                file,
                Span::new(1, 1),
                format!(
                    "no process `{wanted}` in this file (processes: {})",
                    known.join(", ")
                ),
            ));
        }
        return found;
    }
    if let Some(p) = defs.processes.iter().find(|p| p.executable) {
        return Some(p);
    }
    match defs.processes.first() {
        Some(p) => {
            diagnostics.push(
                Diagnostic::warning(
                    file,
                    p.span,
                    format!(
                        "no process is marked executable; using the first one, `{}`",
                        p.id
                    ),
                )
                .with_id(p.id.clone()),
            );
            Some(p)
        }
        None => {
            diagnostics.push(Diagnostic::error(
                file,
                Span::new(1, 1),
                "the file defines no process",
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
