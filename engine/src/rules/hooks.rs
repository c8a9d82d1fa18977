//! The rules as [`ExecutionHooks`]: the executor calls them at its hook points and they run the
//! rules attached to the node ([`FlowNode::rules`](crate::graph::FlowNode)) and to the process
//! ([`CompiledProcess::rules`]).
//!
//! Use one [`RuleHooks`] per step: build it from one [`RuleSet`] snapshot, pass it to the
//! executor call, then take its effects with [`RuleHooks::take_effects`] and write them through the
//! outbox in the same transaction as the instance checkpoint. When the call fails (e.g. a guard
//! refused a completion), drop the hooks and their effects with them.
//!
//! | executor hook | rules run |
//! |---|---|
//! | `on_start` | `on_start` policies of the process and of its nodes (they belong on the start event) |
//! | `on_enter` / `on_leave` | `on_enter` / `on_leave` policies |
//! | `guard_complete` | `guard_complete` (user tasks, jobs, timers, signals) or `guard_message` (message waits), then `guard_variable` guards for each output variable that would change, so a refused change refuses the completion and nothing changes |
//! | `guard_variables` | `guard_variable` guards (a refusal here is an incident at the node) |
//! | `on_variables_changed` | `on_variable_change` policies, once per variable whose value really changed |
//! | [`RuleHooks::status_changed`] (called by the driver) | `on_status_change` policies |
//!
//! A driver that keeps one hooks object for all instances (`Arc<dyn ExecutionHooks>`) uses
//! [`SharedRuleHooks`] instead: it opens a step (one snapshot, one effect buffer) per instance at
//! the first hook call and closes it when the driver calls [`SharedRuleHooks::finish_step`].

use super::effects::Effect;
use super::eval::RuleEvent;
use super::ruleset::{RuleEngine, RuleSet};
use crate::executor::{ExecutionHooks, HookContext, HookUpdates, InstanceStatus, Wait, WaitKind};
use crate::graph::CompiledProcess;
use crate::model::RuleAttachment;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Execution hooks that enforce the rules of one [`RuleSet`] snapshot for one step.
#[derive(Debug)]
pub struct RuleHooks {
    rules: Arc<RuleSet>,
    effects: Mutex<Vec<Effect>>,
    /// Values of variables just before a guarded change, to give policies the previous value.
    previous: Mutex<Map<String, Value>>,
}

impl RuleHooks {
    /// Hooks for one step, using `rules` throughout (take one snapshot per step).
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Self {
            rules,
            effects: Mutex::new(Vec::new()),
            previous: Mutex::new(Map::new()),
        }
    }

    /// The effects the rules asked for during the step, oldest first; the buffer is emptied.
    pub fn take_effects(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.effects.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs the `on_status_change` policies after the driver saw the instance status change from
    /// `old` to `new`. Their variable updates are returned for the driver to apply (an ended
    /// instance keeps them as its final variables); effects join [`RuleHooks::take_effects`].
    pub fn status_changed(
        &self,
        process: &CompiledProcess,
        variables: &Map<String, Value>,
        old: InstanceStatus,
        new: InstanceStatus,
    ) -> Result<HookUpdates, String> {
        let event = RuleEvent::StatusChanged {
            old: old.as_str().into(),
            new: new.as_str().into(),
        };
        self.policies(process.rules.iter(), &event, variables)
    }

    fn keep(&self, effects: Vec<Effect>) {
        if !effects.is_empty() {
            self.effects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(effects);
        }
    }

    fn policies<'a>(
        &self,
        attachments: impl IntoIterator<Item = &'a RuleAttachment>,
        event: &RuleEvent,
        variables: &Map<String, Value>,
    ) -> Result<HookUpdates, String> {
        let outcome = self
            .rules
            .run_policies(attachments, event, variables)
            .map_err(|e| e.to_string())?;
        self.keep(outcome.effects);
        Ok(outcome.updates)
    }

    fn guards<'a>(
        &self,
        attachments: impl IntoIterator<Item = &'a RuleAttachment>,
        event: &RuleEvent,
        variables: &Map<String, Value>,
    ) -> Result<(), String> {
        let effects = self
            .rules
            .check_guards(attachments, event, variables)
            .map_err(|e| e.to_string())?;
        self.keep(effects);
        Ok(())
    }

    /// Guards every variable in `changes` whose value differs from the current one.
    fn guard_changes(
        &self,
        ctx: &HookContext<'_>,
        changes: &Map<String, Value>,
    ) -> Result<(), String> {
        for (name, value) in changes {
            let old = ctx.variables.get(name).cloned().unwrap_or(Value::Null);
            if &old == value {
                continue;
            }
            let event = RuleEvent::ChangeVariable {
                name: name.clone(),
                old,
                new: value.clone(),
            };
            self.guards(attached(ctx), &event, ctx.variables)?;
        }
        Ok(())
    }
}

/// The rules that apply at `ctx`: the node's own, then the process-wide ones.
fn attached<'a>(ctx: &HookContext<'a>) -> impl Iterator<Item = &'a RuleAttachment> {
    ctx.node
        .into_iter()
        .flat_map(|node| node.rules.iter())
        .chain(ctx.process.rules.iter())
}

/// Whether no rule is attached at `ctx` (neither on its node nor on the process): O(1), unlike
/// [`CompiledProcess::has_rules`], which walks every node.
fn no_rules_at(ctx: &HookContext<'_>) -> bool {
    ctx.process.rules.is_empty() && ctx.node.is_none_or(|node| node.rules.is_empty())
}

fn node_id(ctx: &HookContext<'_>) -> String {
    ctx.node.map(|n| n.id.clone()).unwrap_or_default()
}

impl ExecutionHooks for RuleHooks {
    fn on_start(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        // `on_start` rules are written on the start event (or the process); they run once, when
        // the instance starts, before any token moves.
        let on_nodes = ctx
            .process
            .graph
            .node_weights()
            .flat_map(|node| node.rules.iter());
        let rules = on_nodes.chain(ctx.process.rules.iter());
        self.policies(rules, &RuleEvent::InstanceStarted, ctx.variables)
    }

    fn on_enter(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        self.policies(
            attached(ctx),
            &RuleEvent::NodeEntered { node: node_id(ctx) },
            ctx.variables,
        )
    }

    fn on_leave(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        self.policies(
            attached(ctx),
            &RuleEvent::NodeLeft { node: node_id(ctx) },
            ctx.variables,
        )
    }

    fn guard_variables(
        &self,
        ctx: &HookContext<'_>,
        changes: &Map<String, Value>,
    ) -> Result<(), String> {
        self.guard_changes(ctx, changes)?;
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        for name in changes.keys() {
            previous.insert(
                name.clone(),
                ctx.variables.get(name).cloned().unwrap_or(Value::Null),
            );
        }
        Ok(())
    }

    fn on_variables_changed(
        &self,
        ctx: &HookContext<'_>,
        changes: &Map<String, Value>,
    ) -> Result<HookUpdates, String> {
        let mut updates = HookUpdates::new();
        for (name, value) in changes {
            let old = self
                .previous
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name)
                .unwrap_or(Value::Null);
            if &old == value {
                continue;
            }
            let event = RuleEvent::VariableChanged {
                name: name.clone(),
                old,
                new: value.clone(),
            };
            updates.extend(self.policies(attached(ctx), &event, ctx.variables)?);
        }
        Ok(updates)
    }

    fn guard_complete(
        &self,
        ctx: &HookContext<'_>,
        wait: &Wait,
        outputs: &Map<String, Value>,
    ) -> Result<(), String> {
        let event = match &wait.kind {
            WaitKind::Message { name, .. } => RuleEvent::CorrelateMessage {
                node: wait.node.clone(),
                message: name.clone().unwrap_or_default(),
                payload: Value::Object(outputs.clone()),
            },
            _ => RuleEvent::CompleteTask {
                node: wait.node.clone(),
                output: outputs.clone(),
            },
        };
        self.guards(attached(ctx), &event, ctx.variables)?;
        self.guard_changes(ctx, outputs)
    }
}

/// Rule hooks shared by every instance of a driver: each instance's step gets its own
/// [`RuleHooks`] (one snapshot, one effect buffer), opened at the step's first hook call and closed
/// by [`SharedRuleHooks::finish_step`], which the driver calls once per step, after the executor
/// call and before committing (success: write the effects with the step; failure: drop them).
#[derive(Debug)]
pub struct SharedRuleHooks {
    engine: Arc<RuleEngine>,
    steps: Mutex<HashMap<String, Arc<RuleHooks>>>,
}

impl SharedRuleHooks {
    /// Hooks over the rules of `engine` (reloads take effect at the next step of each instance).
    pub fn new(engine: Arc<RuleEngine>) -> Self {
        Self {
            engine,
            steps: Mutex::new(HashMap::new()),
        }
    }

    /// Ends the current step of `instance_id` and returns the effects its rules asked for.
    pub fn finish_step(&self, instance_id: &str) -> Vec<Effect> {
        let step = {
            let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
            // A step of a process without rules never opened: skip hashing the id then.
            (!steps.is_empty())
                .then(|| steps.remove(instance_id))
                .flatten()
        };
        step.map(|hooks| hooks.take_effects()).unwrap_or_default()
    }

    /// The rule engine the hooks run.
    pub fn rule_engine(&self) -> &Arc<RuleEngine> {
        &self.engine
    }

    /// Runs the `on_status_change` policies inside the current step of `instance_id`.
    pub fn status_changed(
        &self,
        process: &CompiledProcess,
        instance_id: &str,
        variables: &Map<String, Value>,
        old: InstanceStatus,
        new: InstanceStatus,
    ) -> Result<HookUpdates, String> {
        if process.rules.is_empty() {
            return Ok(HookUpdates::new());
        }
        self.step(instance_id)
            .status_changed(process, variables, old, new)
    }

    fn step(&self, instance_id: &str) -> Arc<RuleHooks> {
        let mut steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps
            .entry(instance_id.to_string())
            .or_insert_with(|| Arc::new(RuleHooks::new(self.engine.snapshot())))
            .clone()
    }
}

/// A hook with no rule attached where it fires (the node's own and the process-wide ones) needs no
/// step: it answers at once, and the driver's `finish_step` finds nothing to close. `on_start` is
/// the exception: it runs the rules of every node, so it asks the whole process.
impl ExecutionHooks for SharedRuleHooks {
    fn on_start(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        if !ctx.process.has_rules() {
            return Ok(HookUpdates::new());
        }
        self.step(ctx.instance_id).on_start(ctx)
    }

    fn on_enter(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        if no_rules_at(ctx) {
            return Ok(HookUpdates::new());
        }
        self.step(ctx.instance_id).on_enter(ctx)
    }

    fn on_leave(&self, ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        if no_rules_at(ctx) {
            return Ok(HookUpdates::new());
        }
        self.step(ctx.instance_id).on_leave(ctx)
    }

    fn guard_variables(
        &self,
        ctx: &HookContext<'_>,
        changes: &Map<String, Value>,
    ) -> Result<(), String> {
        if no_rules_at(ctx) {
            return Ok(());
        }
        self.step(ctx.instance_id).guard_variables(ctx, changes)
    }

    fn on_variables_changed(
        &self,
        ctx: &HookContext<'_>,
        changes: &Map<String, Value>,
    ) -> Result<HookUpdates, String> {
        if no_rules_at(ctx) {
            return Ok(HookUpdates::new());
        }
        self.step(ctx.instance_id)
            .on_variables_changed(ctx, changes)
    }

    fn guard_complete(
        &self,
        ctx: &HookContext<'_>,
        wait: &Wait,
        outputs: &Map<String, Value>,
    ) -> Result<(), String> {
        if no_rules_at(ctx) {
            return Ok(());
        }
        self.step(ctx.instance_id)
            .guard_complete(ctx, wait, outputs)
    }
}
