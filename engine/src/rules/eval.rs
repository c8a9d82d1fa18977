//! Running rules at their attachment points: guards (which may refuse an action) and event
//! policies (which may change variables and ask for effects), plus the two list rules the order
//! case needs: sort keys (processing order of imported orders) and selections (orders to settle).
//!
//! A rule sees the instance variables as top-level Rhai variables and the triggering event as the
//! constant `event` (`event.kind`, `event.node`, `event.name`, `event.old`, `event.new`, ...).
//! Rules do no I/O: what they ask for comes back as [`Effect`]s for the caller to write through
//! the outbox in the step's transaction.

use super::effects::{collecting, Effect};
use super::error::RuleError;
use super::ruleset::{describe, CompiledRule, RuleSet};
use crate::model::{AttachPoint, RuleAttachment, RuleSource, Span};
use crate::script::{scope_from, to_dynamic, to_json};
use rhai::Dynamic;
use serde_json::{json, Map, Value};
use std::cell::OnceCell;
use std::cmp::Ordering;

/// Something that happens to an instance, to which rules may attach.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEvent {
    /// Guard: a user task (or other wait) of `node` is about to be completed with `output`.
    CompleteTask {
        /// The node id.
        node: String,
        /// The variables the completion would set.
        output: Map<String, Value>,
    },
    /// Guard: `message` is about to be correlated to the wait at `node`.
    CorrelateMessage {
        /// The node id of the waiting receive task or catch event.
        node: String,
        /// The message name.
        message: String,
        /// The message payload.
        payload: Value,
    },
    /// Guard: variable `name` is about to change from `old` to `new`.
    ChangeVariable {
        /// The variable.
        name: String,
        /// The current value (`null` when unset).
        old: Value,
        /// The value it would get.
        new: Value,
    },
    /// Policy: the instance has started.
    InstanceStarted,
    /// Policy: a token entered `node`.
    NodeEntered {
        /// The node id.
        node: String,
    },
    /// Policy: a token left `node` (its work is done).
    NodeLeft {
        /// The node id.
        node: String,
    },
    /// Policy: variable `name` changed from `old` to `new`.
    VariableChanged {
        /// The variable.
        name: String,
        /// The previous value (`null` when it was unset).
        old: Value,
        /// The new value.
        new: Value,
    },
    /// Policy: the instance status changed (`running`, `waiting`, `completed`, `failed`, ...).
    StatusChanged {
        /// The previous status.
        old: String,
        /// The new status.
        new: String,
    },
}

/// Whether `pattern` (a variable name, or a prefix ending in `*`) names `variable`.
pub fn variable_matches(pattern: &str, variable: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => variable.starts_with(prefix),
        None => pattern == variable,
    }
}

impl RuleEvent {
    /// The event's name as rules see it in `event.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleEvent::CompleteTask { .. } => "complete_task",
            RuleEvent::CorrelateMessage { .. } => "correlate_message",
            RuleEvent::ChangeVariable { .. } => "change_variable",
            RuleEvent::InstanceStarted => "instance_started",
            RuleEvent::NodeEntered { .. } => "node_entered",
            RuleEvent::NodeLeft { .. } => "node_left",
            RuleEvent::VariableChanged { .. } => "variable_changed",
            RuleEvent::StatusChanged { .. } => "status_changed",
        }
    }

    /// Whether this event is one a guard checks (the action can still be refused).
    pub fn is_guarded_action(&self) -> bool {
        matches!(
            self,
            RuleEvent::CompleteTask { .. }
                | RuleEvent::CorrelateMessage { .. }
                | RuleEvent::ChangeVariable { .. }
        )
    }

    /// Whether a rule attached at `point` runs for this event.
    pub fn triggers(&self, point: &AttachPoint) -> bool {
        match (self, point) {
            (RuleEvent::CompleteTask { .. }, AttachPoint::GuardComplete)
            | (RuleEvent::CorrelateMessage { .. }, AttachPoint::GuardMessage)
            | (RuleEvent::InstanceStarted, AttachPoint::OnStart)
            | (RuleEvent::NodeEntered { .. }, AttachPoint::OnEnter)
            | (RuleEvent::NodeLeft { .. }, AttachPoint::OnLeave)
            | (RuleEvent::StatusChanged { .. }, AttachPoint::OnStatusChange) => true,
            (RuleEvent::ChangeVariable { name, .. }, AttachPoint::GuardVariable(pattern))
            | (RuleEvent::VariableChanged { name, .. }, AttachPoint::OnVariableChange(pattern)) => {
                variable_matches(pattern, name)
            }
            _ => false,
        }
    }

    /// The `event` map a rule sees.
    pub fn to_json(&self) -> Value {
        let mut map = match self {
            RuleEvent::CompleteTask { node, output } => json!({ "node": node, "output": output }),
            RuleEvent::CorrelateMessage {
                node,
                message,
                payload,
            } => {
                json!({ "node": node, "message": message, "payload": payload })
            }
            RuleEvent::ChangeVariable { name, old, new }
            | RuleEvent::VariableChanged { name, old, new } => {
                json!({ "name": name, "previous": old, "value": new })
            }
            RuleEvent::InstanceStarted => json!({}),
            RuleEvent::NodeEntered { node } | RuleEvent::NodeLeft { node } => {
                json!({ "node": node })
            }
            RuleEvent::StatusChanged { old, new } => json!({ "previous": old, "value": new }),
        };
        if let Some(object) = map.as_object_mut() {
            object.insert("kind".into(), Value::String(self.kind().into()));
        }
        map
    }
}

/// What event policies (or a passing guard) produced: variable changes and effects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleOutcome {
    /// Variables to set (new or changed values only), in the order the rules set them.
    pub updates: Map<String, Value>,
    /// Effects to write through the outbox with the step.
    pub effects: Vec<Effect>,
}

/// What a selection rule chose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// The items the rule returned `true` for, in input order.
    pub selected: Vec<Value>,
    /// Effects the rule asked for while selecting.
    pub effects: Vec<Effect>,
}

/// One run of one rule.
struct Run {
    value: Dynamic,
    updates: Map<String, Value>,
    effects: Vec<Effect>,
}

/// The name of the constant holding the triggering event.
const EVENT: &str = "event";

impl RuleSet {
    /// Runs `rule` with `variables` in scope plus the given constants. Variables change only
    /// through `set(name, value)` (local `let`s stay local); a `reject` makes the run an error.
    fn run(
        &self,
        rule: &CompiledRule,
        variables: &Map<String, Value>,
        constants: &[(&str, &Value)],
    ) -> Result<Run, RuleError> {
        let runtime_error = |message: String, line: u32, col: u32| RuleError::Runtime {
            rule: rule.name.clone(),
            location: rule.location(line, col),
            message,
        };
        let conversion = |e: crate::script::ScriptError| runtime_error(e.to_string(), 0, 0);
        let mut scope = scope_from(variables).map_err(conversion)?;
        for (name, value) in constants {
            scope.push_constant_dynamic(*name, to_dynamic(value).map_err(conversion)?);
        }
        let engine = self.runtime().engine();
        let (result, collected) = collecting(&rule.name, || {
            engine.eval_ast_with_scope::<Dynamic>(&mut scope, &rule.ast)
        });
        if let Some(message) = collected.rejection {
            return Err(RuleError::Rejected {
                rule: rule.name.clone(),
                message,
            });
        }
        let value = result.map_err(|error| {
            let (message, line, col) = describe(&error);
            runtime_error(message, line, col)
        })?;
        Ok(Run {
            value,
            updates: collected.updates,
            effects: collected.effects,
        })
    }

    /// Runs every guard among `attachments` that `event` triggers. The action may go ahead when
    /// this returns `Ok` (with the effects passing guards asked for); a guard that calls
    /// `reject(message)` or returns `false` refuses it with [`RuleError::Rejected`]. Guards cannot
    /// change variables (their `set` calls are discarded).
    pub fn check_guards<'a>(
        &self,
        attachments: impl IntoIterator<Item = &'a RuleAttachment>,
        event: &RuleEvent,
        variables: &Map<String, Value>,
    ) -> Result<Vec<Effect>, RuleError> {
        // Built only when a rule is triggered: most events trigger none.
        let event_json = OnceCell::new();
        let mut effects = Vec::new();
        for attachment in attachments
            .into_iter()
            .filter(|a| a.point.is_guard() && event.triggers(&a.point))
        {
            let rule = self.resolve(&attachment.rule, attachment.span)?;
            let event_json = event_json.get_or_init(|| event.to_json());
            let run = self.run(&rule, variables, &[(EVENT, event_json)])?;
            if run.value.as_bool() == Ok(false) {
                return Err(RuleError::Rejected {
                    rule: rule.name.clone(),
                    message: format!("guard `{}` did not pass", rule.name),
                });
            }
            effects.extend(run.effects);
        }
        Ok(effects)
    }

    /// Runs every event policy among `attachments` that `event` triggers, in order; each sees the
    /// variable changes of the ones before it. The outcome is applied by the caller in the same
    /// transaction as the step.
    pub fn run_policies<'a>(
        &self,
        attachments: impl IntoIterator<Item = &'a RuleAttachment>,
        event: &RuleEvent,
        variables: &Map<String, Value>,
    ) -> Result<RuleOutcome, RuleError> {
        // Built only when a rule is triggered: most events trigger none.
        let event_json = OnceCell::new();
        let mut outcome = RuleOutcome::default();
        let mut working: Option<Map<String, Value>> = None;
        for attachment in attachments
            .into_iter()
            .filter(|a| !a.point.is_guard() && event.triggers(&a.point))
        {
            let rule = self.resolve(&attachment.rule, attachment.span)?;
            let event_json = event_json.get_or_init(|| event.to_json());
            let run = self.run(
                &rule,
                working.as_ref().unwrap_or(variables),
                &[(EVENT, event_json)],
            )?;
            if !run.updates.is_empty() {
                let vars = working.get_or_insert_with(|| variables.clone());
                for (name, value) in run.updates {
                    vars.insert(name.clone(), value.clone());
                    outcome.updates.insert(name, value);
                }
            }
            outcome.effects.extend(run.effects);
        }
        Ok(outcome)
    }

    /// Runs a rule once over `variables` (with an `event` of kind `"evaluate"`) and returns its
    /// value and outcome: for rules called from a business-rule task or a scheduled job.
    pub fn evaluate(
        &self,
        rule: &RuleSource,
        variables: &Map<String, Value>,
    ) -> Result<(Value, RuleOutcome), RuleError> {
        let rule = self.resolve(rule, Span::default())?;
        let event = json!({ "kind": "evaluate" });
        let run = self.run(&rule, variables, &[(EVENT, &event)])?;
        let value = to_json(&run.value).map_err(|e| RuleError::BadResult {
            rule: rule.name.clone(),
            location: rule.location(0, 0),
            found: e.to_string(),
            expected: "a value that converts to JSON".into(),
        })?;
        Ok((
            value,
            RuleOutcome {
                updates: run.updates,
                effects: run.effects,
            },
        ))
    }

    /// Sorts `items` by the key the rule computes for each (`item` in scope, plus `params`); the
    /// key must be a number or a string, and items with equal keys keep their order.
    pub fn sort_by_rule(
        &self,
        rule: &RuleSource,
        items: Vec<Value>,
        params: &Map<String, Value>,
    ) -> Result<Vec<Value>, RuleError> {
        let rule = self.resolve(rule, Span::default())?;
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            let run = self.run(&rule, params, &[("item", &item)])?;
            let key = SortKey::from_dynamic(&run.value).ok_or_else(|| RuleError::BadResult {
                rule: rule.name.clone(),
                location: rule.location(0, 0),
                found: run.value.type_name().to_string(),
                expected: "a sort key (number or string)".into(),
            })?;
            keyed.push((key, item));
        }
        if let Some(window) = keyed
            .windows(2)
            .find(|w| w[0].0.partial_cmp(&w[1].0).is_none())
        {
            return Err(RuleError::BadResult {
                rule: rule.name.clone(),
                location: rule.location(0, 0),
                found: format!(
                    "keys that cannot be compared ({:?} and {:?})",
                    window[0].0, window[1].0
                ),
                expected: "keys of one kind".into(),
            });
        }
        keyed.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(Ordering::Equal));
        Ok(keyed.into_iter().map(|(_, item)| item).collect())
    }

    /// Keeps the `items` for which the rule returns `true` (`item` in scope, plus `params`), and
    /// collects the effects it asked for along the way.
    pub fn select_by_rule(
        &self,
        rule: &RuleSource,
        items: Vec<Value>,
        params: &Map<String, Value>,
    ) -> Result<Selection, RuleError> {
        let rule = self.resolve(rule, Span::default())?;
        let mut selection = Selection::default();
        for item in items {
            let run = self.run(&rule, params, &[("item", &item)])?;
            let chosen = run.value.as_bool().map_err(|found| RuleError::BadResult {
                rule: rule.name.clone(),
                location: rule.location(0, 0),
                found: found.to_string(),
                expected: "a boolean".into(),
            })?;
            selection.effects.extend(run.effects);
            if chosen {
                selection.selected.push(item);
            }
        }
        Ok(selection)
    }
}

/// A sort key computed by a rule.
#[derive(Debug, Clone, PartialEq)]
enum SortKey {
    Number(f64),
    Text(String),
}

impl SortKey {
    fn from_dynamic(value: &Dynamic) -> Option<Self> {
        if let Ok(i) = value.as_int() {
            return Some(SortKey::Number(i as f64));
        }
        if let Ok(f) = value.as_float() {
            return (!f.is_nan()).then_some(SortKey::Number(f));
        }
        value
            .read_lock::<rhai::ImmutableString>()
            .map(|s| SortKey::Text(s.to_string()))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (SortKey::Number(a), SortKey::Number(b)) => a.partial_cmp(b),
            (SortKey::Text(a), SortKey::Text(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}
