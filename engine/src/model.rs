//! The process model (IR) that both front ends (BPMN XML and YAML) produce and the graph compiler
//! consumes.
//!
//! Invariants:
//! - Every element keeps the [`Span`] of its source text, so every diagnostic and run-time incident
//!   can say `file:line:col`.
//! - Expressions and scripts are kept as source text (already stripped of modeler wrappers such as
//!   `${...}` and a leading `=`); they are compiled by the script module, never here.
//! - Embedded subprocesses own their child nodes and flows (the model is a tree of scopes); the
//!   compiler flattens it into one graph with scope ids.
//! - The model can express more than the executor runs: unsupported elements parse into the model
//!   and are rejected at run time with "not supported yet", never dropped silently.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A 1-based line and column in a source file.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Span {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
}

impl Span {
    /// Creates a span at `line`:`col`.
    pub fn new(line: u32, col: u32) -> Self {
        Self { line, col }
    }
}

/// Everything one source file defines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// The file the definitions came from (used in every diagnostic).
    pub source: PathBuf,
    /// The processes, in document order.
    pub processes: Vec<Process>,
    /// Message definitions (`bpmn:message`): id → name.
    pub messages: Vec<NamedRef>,
    /// Signal definitions (`bpmn:signal`): id → name.
    pub signals: Vec<NamedRef>,
    /// Error definitions (`bpmn:error`): id → error code.
    pub errors: Vec<NamedRef>,
    /// Escalation definitions (`bpmn:escalation`): id → escalation code.
    pub escalations: Vec<NamedRef>,
}

/// A top-level definition referenced by id (message, signal, error, escalation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRef {
    /// The element id.
    pub id: String,
    /// The name (message/signal) or code (error/escalation), when given.
    pub name: Option<String>,
    /// Where it was defined.
    pub span: Span,
}

/// One process: a scope of flow nodes and sequence flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// Process id.
    pub id: String,
    /// Human-readable name.
    pub name: Option<String>,
    /// `isExecutable` (BPMN); YAML processes are always executable.
    pub executable: bool,
    /// Flow nodes of the top-level scope, in document order.
    pub nodes: Vec<Node>,
    /// Sequence flows of the top-level scope, in document order.
    pub flows: Vec<SequenceFlow>,
    /// Lanes, kept as metadata.
    pub lanes: Vec<Lane>,
    /// Business rules attached to the whole process (guards and event policies that apply to
    /// every node, e.g. "every status change notifies the customer").
    #[serde(default)]
    pub rules: Vec<RuleAttachment>,
    /// Where the process element starts.
    pub span: Span,
}

/// A lane: a named group of flow nodes (metadata only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    /// Lane id.
    pub id: String,
    /// Lane name.
    pub name: Option<String>,
    /// Ids of the flow nodes in the lane.
    pub nodes: Vec<String>,
}

/// A flow node: event, activity or gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Node id, unique within the file.
    pub id: String,
    /// Human-readable name.
    pub name: Option<String>,
    /// What the node is.
    pub kind: NodeKind,
    /// Default outgoing flow (gateways, and activities with conditional outgoing flows).
    pub default_flow: Option<String>,
    /// Business rules attached to this node (guards and event policies).
    pub rules: Vec<RuleAttachment>,
    /// Where the node's element starts.
    pub span: Span,
    /// The `activationCondition` of a complex gateway: when it fires as a join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_condition: Option<Expr>,
}

/// The kinds of flow nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NodeKind {
    /// A start event; `trigger` is `None` for a none start event.
    StartEvent {
        /// What starts the process (message, timer, signal, ...), if anything.
        trigger: Option<EventTrigger>,
        /// Interrupting (only meaningful in event subprocesses).
        interrupting: bool,
    },
    /// An end event; `result` is `None` for a none end event.
    EndEvent {
        /// What the end event throws (terminate, error, message, ...), if anything.
        result: Option<EventTrigger>,
    },
    /// An intermediate catch event (timer, message, signal, link, conditional).
    IntermediateCatchEvent {
        /// What the event waits for.
        trigger: EventTrigger,
    },
    /// An intermediate throw event; `None` is a none event that passes through.
    IntermediateThrowEvent {
        /// What the event throws, if anything.
        result: Option<EventTrigger>,
    },
    /// A boundary event attached to an activity.
    BoundaryEvent {
        /// The id of the activity it is attached to.
        attached_to: String,
        /// What it catches.
        trigger: EventTrigger,
        /// Whether it cancels the activity (`cancelActivity`).
        interrupting: bool,
    },
    /// A task of any kind.
    Task(Activity<TaskKind>),
    /// A gateway.
    Gateway(GatewayKind),
    /// An embedded subprocess (also event subprocesses and transactions).
    SubProcess(Activity<SubProcess>),
    /// A call activity that runs another process.
    CallActivity(Activity<CallActivity>),
}

/// Fields every activity shares, around its specific `body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity<T> {
    /// The activity-specific part.
    pub body: T,
    /// Multi-instance characteristics, when the activity runs once per collection item.
    pub multi_instance: Option<MultiInstance>,
    /// `standardLoopCharacteristics`: the activity runs again while its condition holds.
    pub standard_loop: Option<StandardLoop>,
    /// Retry policy for failing service handlers.
    pub retry: Option<RetryPolicy>,
    /// Input and output mappings (local variables of the activity).
    #[serde(default)]
    pub io: IoMapping,
    /// The variables a person fills in at a user or manual task, in order (YAML
    /// `user: { form: [...] }`, BPMN `camunda:formField` ids); task views show them with their
    /// current values, so a reviewer starts from what the process already has. Last and left
    /// out when empty: stored records (MessagePack arrays) and content hashes stay as they were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form: Vec<String>,
}

/// Input and output mappings of an activity, as modelers write them (`camunda:inputOutput`,
/// `zeebe:ioMapping`, Spiff pre/post scripts, YAML `inputs:`/`outputs:`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IoMapping {
    /// Local variables created when the activity starts: name ← expression over the enclosing
    /// scope.
    pub inputs: Vec<Mapping>,
    /// Variables set in the enclosing scope when the activity completes: name ← expression over
    /// the activity's variables. Without any, the variables the activity created (inputs aside)
    /// are kept in the enclosing scope.
    pub outputs: Vec<Mapping>,
    /// A script run in the activity's scope before it starts (Spiff `preScript`).
    pub pre_script: Option<Script>,
    /// A script run in the activity's scope when it completes, before the outputs
    /// (Spiff `postScript`).
    pub post_script: Option<Script>,
}

impl IoMapping {
    /// Whether the activity has no mapping at all.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
            && self.outputs.is_empty()
            && self.pre_script.is_none()
            && self.post_script.is_none()
    }
}

/// One variable mapping: `target` ← the value of `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// The variable set.
    pub target: String,
    /// The expression giving its value.
    pub source: Expr,
}

impl<T> Activity<T> {
    /// An activity with the given body and no loop, multi-instance or retry settings.
    pub fn new(body: T) -> Self {
        Self {
            body,
            multi_instance: None,
            standard_loop: None,
            retry: None,
            io: IoMapping::default(),
            form: Vec::new(),
        }
    }
}

/// Task kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskKind {
    /// `bpmn:task` with no type: passes through at once.
    Plain,
    /// A service task that calls a registered handler by name.
    Service {
        /// Handler name (YAML `handler:`, Camunda `camunda:type`/`topic`/`delegateExpression`,
        /// Zeebe `taskDefinition type`, Spiff `operationName`).
        handler: Option<String>,
    },
    /// A script task (Rhai).
    Script {
        /// The script; `None` when the element has no body.
        script: Option<Script>,
    },
    /// A user task: waits for completion through the API.
    User,
    /// A manual task: waits for completion through the API.
    Manual,
    /// A receive task: waits for a message.
    Receive {
        /// The message it waits for.
        message: Option<MessageRef>,
    },
    /// A send task: throws a message (through a handler, if one is registered).
    Send {
        /// The message it sends.
        message: Option<String>,
        /// Handler name, when the send is implemented by a service handler.
        handler: Option<String>,
    },
    /// A business-rule task: runs a rule script, or evaluates a deployed decision.
    BusinessRule {
        /// Rule script, when given inline or by file.
        script: Option<Script>,
        /// The decision it evaluates (`camunda:decisionRef`, `zeebe:calledDecision`, YAML
        /// `business_rule: { decision: ... }`).
        decision: Option<DecisionCall>,
    },
    /// A language-model step.
    Llm(LlmTask),
}

/// A business-rule task's call of a deployed decision (DMN or a YAML decision file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionCall {
    /// The decision's id.
    pub decision: String,
    /// The variable that receives the result; the decision id when absent.
    pub result_variable: Option<String>,
    /// How the result is shaped.
    pub mapping: DecisionResultMapping,
    /// Where the reference is written.
    pub span: Span,
}

/// How a decision's result becomes a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionResultMapping {
    /// The decision's value as DMN defines it (one output's value, a map of several outputs, a
    /// list for multiple-hit policies): Zeebe's and YAML's behaviour.
    Value,
    /// Camunda `singleEntry`: the one output of the one matched rule.
    SingleEntry,
    /// Camunda `singleResult`: the outputs of the one matched rule, as a map.
    SingleResult,
    /// Camunda `collectEntries`: the one output of every matched rule, as a list.
    CollectEntries,
    /// Camunda `resultList` (its default): every matched rule's outputs, as a list of maps.
    ResultList,
    /// SpiffWorkflow `calledDecisionId`: the matched rule's outputs become variables of their
    /// own names (with several matched rules, each output is the list of their values); no
    /// rule matched writes nothing.
    MergeOutputs,
}

impl DecisionResultMapping {
    /// Reads Camunda's `mapDecisionResult` values.
    pub fn parse_camunda(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "singleEntry" => Self::SingleEntry,
            "singleResult" => Self::SingleResult,
            "collectEntries" => Self::CollectEntries,
            "resultList" => Self::ResultList,
            _ => return None,
        })
    }
}

/// A language-model step (see the model-runtime crate for the generator behind it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmTask {
    /// What the model is asked to do.
    pub mode: LlmMode,
    /// Prompt template over instance variables (`{name}` placeholders).
    pub prompt: String,
    /// System prompt.
    pub system: Option<String>,
    /// Variable that receives the result (`generate`, `classify`) .
    pub output: Option<String>,
    /// JSON schema of the fields to extract (`extract`).
    pub schema: Option<serde_json::Value>,
    /// Allowed labels (`classify`).
    pub labels: Vec<String>,
    /// Generation options (max tokens, temperature, seed, ...), passed through.
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// What an LLM step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LlmMode {
    /// Write text into a variable.
    Generate,
    /// Turn text into structured variables following a JSON schema.
    Extract,
    /// Choose one label of a given set.
    Classify,
}

/// A script (or expression) with its language and position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The declared language (`scriptFormat`), when given; Flowbot runs Rhai only.
    pub language: Option<String>,
    /// The source text.
    pub source: String,
    /// Where the source text starts.
    pub span: Span,
}

/// A condition or other expression, as Rhai source text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    /// The declared language, when given.
    pub language: Option<String>,
    /// The expression text, modeler wrappers stripped.
    pub source: String,
    /// Where the expression text starts.
    pub span: Span,
}

/// Embedded subprocess body: its own scope of nodes and flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubProcess {
    /// Child flow nodes.
    pub nodes: Vec<Node>,
    /// Child sequence flows.
    pub flows: Vec<SequenceFlow>,
    /// `triggeredByEvent="true"`: an event subprocess.
    pub event_subprocess: bool,
    /// `bpmn:transaction`.
    pub transaction: bool,
}

/// Call activity body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallActivity {
    /// The id of the process it calls.
    pub called_element: Option<String>,
    /// Which deployed version of it runs (Camunda `calledElementBinding`/`calledElementVersion`,
    /// Zeebe `bindingType`, YAML `binding:`/`version:`).
    #[serde(default)]
    pub binding: CallBinding,
}

/// Which deployed version of a called process a call activity starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallBinding {
    /// The latest version when the call activity starts.
    #[default]
    Latest,
    /// The version that was the latest when the caller's version was deployed (the one deployed
    /// with it from the same file, when both are).
    Deployment,
    /// This version number.
    Version(u32),
}

/// Gateway kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayKind {
    /// XOR: the first flow whose condition holds (document order), else the default.
    Exclusive,
    /// AND: fork all, join all.
    Parallel,
    /// OR: fork every flow whose condition holds; join waits for tokens that can still arrive.
    Inclusive,
    /// Waits for the first of the events that follow it.
    EventBased,
    /// Complex gateway (parsed, not executed).
    Complex,
}

/// Multi-instance characteristics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultiInstance {
    /// Sequential (one after another) or parallel.
    pub sequential: bool,
    /// Expression giving the collection to iterate over.
    pub collection: Option<Expr>,
    /// Variable that holds the current item inside each instance.
    pub element_variable: Option<String>,
    /// Expression giving a fixed number of instances (`loopCardinality`).
    pub cardinality: Option<Expr>,
    /// Expression that ends the loop early (`completionCondition`).
    pub completion_condition: Option<Expr>,
    /// Variable that collects each instance's output, in order.
    pub output_collection: Option<String>,
    /// Variable (inside each instance) whose value is collected into `output_collection`.
    pub output_element: Option<String>,
}

/// A standard loop: the activity runs, then again while `condition` holds (checked before the
/// first run too when `test_before`), at most `maximum` times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StandardLoop {
    /// `loopCondition`: run again while it holds (`loopCounter` is the number of runs so far);
    /// without one the activity runs `maximum` times.
    pub condition: Option<Expr>,
    /// `testBefore`: check the condition before the first run too.
    pub test_before: bool,
    /// `loopMaximum`: the most runs.
    pub maximum: Option<u64>,
}

/// Retry policy for a service task whose handler fails.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// How many retries after the first failure.
    pub retries: u32,
    /// Delay before the first retry, in milliseconds.
    pub initial_delay_ms: u64,
    /// Upper bound of the exponentially growing delay, in milliseconds.
    pub max_delay_ms: u64,
}

/// What an event catches or throws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventTrigger {
    /// `terminateEventDefinition`: ends the whole instance.
    Terminate,
    /// A timer.
    Timer(Timer),
    /// A message, by name.
    Message(MessageRef),
    /// A signal, by name.
    Signal {
        /// Signal name (resolved from its ref when the file defines one).
        name: Option<String>,
    },
    /// An error, by code; `None` catches any error.
    Error {
        /// Error code.
        code: Option<String>,
    },
    /// An escalation, by code.
    Escalation {
        /// Escalation code.
        code: Option<String>,
    },
    /// A condition that becomes true.
    Conditional {
        /// The condition.
        condition: Option<Expr>,
    },
    /// A link event (intra-process goto), by name.
    Link {
        /// Link name.
        name: Option<String>,
    },
    /// Transaction cancel.
    Cancel,
    /// Compensation: thrown, the completed activities of the scope (or only `activity`) are
    /// compensated in reverse order of completion; caught by a boundary event, the activity has a
    /// compensation handler.
    Compensation {
        /// The one activity to compensate (`activityRef`), when thrown for one.
        activity: Option<String>,
    },
    /// Several event definitions on one event: any one of them (multiple).
    Multiple(Vec<EventTrigger>),
    /// Several event definitions that must all happen (`parallelMultiple`).
    ParallelMultiple(Vec<EventTrigger>),
}

/// A message reference with optional correlation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRef {
    /// Message name (resolved from its ref when the file defines one).
    pub name: Option<String>,
    /// Expression over instance variables that yields the correlation key.
    pub correlation_key: Option<Expr>,
}

/// A timer definition (ISO 8601 or cron), as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timer {
    /// Which of the three BPMN timer forms.
    pub kind: TimerKind,
    /// The definition text (`PT10M`, `2026-12-01T08:00:00Z`, `R5/PT10M`, `0 0 18 * * *`), or an
    /// expression producing it.
    pub expression: Expr,
    /// The business time zone of a cron expression or of a date without an offset (an IANA
    /// name such as `Asia/Shanghai`); UTC when absent. YAML `time_zone:`, BPMN
    /// `flowbot:timeZone` on the `timeCycle`/`timeDate` element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// The three BPMN timer forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerKind {
    /// `timeDuration`.
    Duration,
    /// `timeDate`.
    Date,
    /// `timeCycle` (ISO 8601 repeating interval or cron).
    Cycle,
}

/// A sequence flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceFlow {
    /// Flow id.
    pub id: String,
    /// Name / label.
    pub name: Option<String>,
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
    /// Condition, when the flow is conditional.
    pub condition: Option<Expr>,
    /// Where the flow element starts.
    pub span: Span,
}

/// A business rule attached to a node or a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleAttachment {
    /// When the rule runs.
    pub point: AttachPoint,
    /// The rule script: a file under `rules/` or inline source.
    pub rule: RuleSource,
    /// Where the attachment is declared.
    pub span: Span,
}

/// Moments a rule can attach to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachPoint {
    /// Must pass before the node's task is completed.
    GuardComplete,
    /// Must pass before a message is correlated to the node.
    GuardMessage,
    /// Must pass before the named variable is changed (a name, or a prefix ending in `*`).
    GuardVariable(String),
    /// Runs when a token enters the node.
    OnEnter,
    /// Runs when a token leaves the node.
    OnLeave,
    /// Runs when the instance starts.
    OnStart,
    /// Runs when the named variable changes (a name, or a prefix ending in `*`).
    OnVariableChange(String),
    /// Runs when the instance status changes (running, waiting, completed, failed, ...).
    OnStatusChange,
}

impl AttachPoint {
    /// The names front ends accept for attachment points (YAML `on:`, BPMN `point=`); the ones
    /// `guard_variable` and `on_variable_change` need a variable name (a name, or a prefix ending in `*`).
    pub const NAMES: [&'static str; 8] = [
        "guard_complete",
        "guard_message",
        "guard_variable",
        "on_start",
        "on_enter",
        "on_leave",
        "on_variable_change",
        "on_status_change",
    ];

    /// Reads an attachment point as written in YAML or BPMN: `name` is one of
    /// [`AttachPoint::NAMES`] (BPMN's `point=`), or the same without its `on_` prefix (YAML's
    /// `on: enter`); `variable` is the variable for `guard_variable` and `on_variable_change`.
    /// The error says what is accepted.
    pub fn parse(name: &str, variable: Option<&str>) -> Result<Self, String> {
        let needs_variable = |make: fn(String) -> AttachPoint| match variable.map(str::trim) {
            Some(v) if !v.is_empty() => Ok(make(v.to_string())),
            _ => Err(format!("rule point `{name}` needs a `variable`")),
        };
        let trimmed = name.trim();
        let point = match trimmed.strip_prefix("on_").unwrap_or(trimmed) {
            "guard_complete" => AttachPoint::GuardComplete,
            "guard_message" => AttachPoint::GuardMessage,
            "guard_variable" => return needs_variable(AttachPoint::GuardVariable),
            "start" => AttachPoint::OnStart,
            "enter" => AttachPoint::OnEnter,
            "leave" => AttachPoint::OnLeave,
            "variable_change" => return needs_variable(AttachPoint::OnVariableChange),
            "status_change" => AttachPoint::OnStatusChange,
            _ => {
                return Err(format!(
                    "unknown rule point `{trimmed}`; expected one of: {}",
                    Self::NAMES.join(", ")
                ))
            }
        };
        match variable {
            Some(_) => Err(format!("rule point `{name}` takes no `variable`")),
            None => Ok(point),
        }
    }

    /// The name of this point as written in YAML and BPMN (the inverse of [`AttachPoint::parse`]).
    pub fn name(&self) -> &'static str {
        match self {
            AttachPoint::GuardComplete => "guard_complete",
            AttachPoint::GuardMessage => "guard_message",
            AttachPoint::GuardVariable(_) => "guard_variable",
            AttachPoint::OnStart => "on_start",
            AttachPoint::OnEnter => "on_enter",
            AttachPoint::OnLeave => "on_leave",
            AttachPoint::OnVariableChange(_) => "on_variable_change",
            AttachPoint::OnStatusChange => "on_status_change",
        }
    }

    /// Whether a rule at this point is a guard (it may refuse the action).
    pub fn is_guard(&self) -> bool {
        matches!(
            self,
            AttachPoint::GuardComplete | AttachPoint::GuardMessage | AttachPoint::GuardVariable(_)
        )
    }
}

/// Where a rule's source lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleSource {
    /// A file under the rules folder (relative path, no escapes).
    File(String),
    /// Inline Rhai source.
    Inline(String),
}
