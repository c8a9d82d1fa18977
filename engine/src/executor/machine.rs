//! The token machine behind [`Instance`]'s driving calls: token arrival, joins, node behaviour,
//! flow selection, scopes and variables.

use super::{
    joined_id, AfterCompensation, Compensable, CompensationRun, Event, ExecError, ExecutionHooks,
    HookContext, Incident, Instance, InstanceStatus, JoinState, LoopState, MultiState, RunOf,
    ScopeState, Step, Wait, WaitKind,
};
use crate::feel::Value as FeelValue;
use crate::graph::{
    Behavior, BoundarySpec, BoundaryTrigger, CompiledCode, CompiledProcess, DecisionSpec,
    EndBehavior, EventStart, IoSpec, LoopSpec, MultiSpec, ScopeId, ThrownEvent, WaitSpec,
};
use crate::model::{DecisionResultMapping, GatewayKind, Span};
use crate::script::ScriptError;
use petgraph::graph::{EdgeIndex, NodeIndex};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::VecDeque;

/// Most runs one multi-instance task may have.
pub const MAX_RUNS: usize = 10_000;

/// Most nodes one call may enter before it is taken for an endless loop.
pub const MAX_ENTRIES_PER_CALL: usize = 100_000;

/// The machine for one driving call.
pub(super) struct Machine<'a> {
    process: &'a CompiledProcess,
    hooks: &'a dyn ExecutionHooks,
    inst: &'a mut Instance,
    /// Tokens on their way into a node. Empty between calls (every live token is parked in a
    /// wait, a join or a running scope), so it lives only as long as the call.
    queue: VecDeque<Token>,
    step: Step,
    entries: usize,
}

/// A token on its way into a node.
struct Token {
    /// The node it enters.
    node: NodeIndex,
    /// The scope instance it lives in.
    scope: u64,
    /// The flow it came along (`None` for start events).
    via: Option<EdgeIndex>,
    /// The activation of the event-based gateway it left, when it races the gateway's other
    /// events.
    race: Option<u64>,
}

/// What became of a thrown escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escalated {
    /// Nothing caught it (or it was not an escalation).
    NotCaught,
    /// A non-interrupting boundary event caught it; the throwing token goes on.
    Caught,
    /// An interrupting boundary event caught it; the throwing token is gone.
    Interrupted,
}

/// A stop: an incident was raised, the current call unwinds.
struct Stop;

type Flowing = Result<(), Stop>;

impl<'a> Machine<'a> {
    pub(super) fn new(
        process: &'a CompiledProcess,
        hooks: &'a dyn ExecutionHooks,
        inst: &'a mut Instance,
    ) -> Self {
        // A short process produces a few dozen events per call; start with room for them.
        let step = Step {
            events: Vec::with_capacity(64),
            ..Step::default()
        };
        Self {
            process,
            hooks,
            inst,
            queue: VecDeque::new(),
            step,
            entries: 0,
        }
    }

    pub(super) fn start(mut self, starts: &[NodeIndex]) -> Result<Step, ExecError> {
        let updates = {
            let ctx = HookContext {
                process: self.process,
                instance_id: &self.inst.id,
                node: None,
                activation: None,
                variables: &self.inst.scopes[0].variables,
            };
            self.hooks
                .on_start(&ctx)
                .map_err(ExecError::StartRejected)?
        };
        self.step.events.push(Event::InstanceStarted {
            variables: self.inst.scopes[0].variables.clone(),
        });
        if !updates.is_empty() {
            let start = starts[0];
            if self
                .write_variables(0, start, None, updates, false)
                .is_err()
            {
                return Ok(self.finish());
            }
        }
        for &start in starts {
            self.queue.push_back(Token {
                node: start,
                scope: 0,
                via: None,
                race: None,
            });
        }
        let _ = self
            .arm_event_subprocesses(0, 0)
            .and_then(|()| self.drain());
        Ok(self.finish())
    }

    /// Completes several waits as one step: every guard is asked first (one refusal refuses all
    /// and changes nothing), then each wait completes in the given order and moves its token on,
    /// and only then do tokens run.
    pub(super) fn complete(
        mut self,
        completions: Vec<(u64, Map<String, Value>)>,
    ) -> Result<Step, ExecError> {
        let mut resolved = Vec::with_capacity(completions.len());
        for (activation, outputs) in completions {
            let position = self.find_wait(activation)?;
            if resolved
                .iter()
                .any(|(_, w, _): &(NodeIndex, Wait, _)| w.activation == activation)
            {
                return Err(ExecError::UnknownActivation(activation));
            }
            let wait = self.inst.waits[position].clone();
            let node = self
                .process
                .node_index(&wait.node)
                .ok_or(ExecError::UnknownActivation(activation))?;
            let variables = self.visible(wait.scope);
            let ctx = HookContext {
                process: self.process,
                instance_id: &self.inst.id,
                node: Some(self.process.node(node)),
                activation: Some(activation),
                variables: &variables,
            };
            if let Err(reason) = self.hooks.guard_complete(&ctx, &wait, &outputs) {
                return Err(ExecError::Rejected {
                    node: wait.node.clone(),
                    reason,
                });
            }
            drop(variables);
            resolved.push((node, wait, outputs));
        }
        self.inst.status = InstanceStatus::Running;
        let _ = self.complete_resolved(resolved);
        Ok(self.finish())
    }

    fn complete_resolved(
        &mut self,
        resolved: Vec<(NodeIndex, Wait, Map<String, Value>)>,
    ) -> Flowing {
        for (node, wait, outputs) in resolved {
            self.complete_wait(node, wait, outputs)?;
        }
        self.drain()
    }

    /// Completes one wait (unless an earlier completion cancelled it) and moves its token on;
    /// tokens run later, in `drain`.
    fn complete_wait(
        &mut self,
        node: NodeIndex,
        wait: Wait,
        outputs: Map<String, Value>,
    ) -> Flowing {
        if !self
            .inst
            .waits
            .iter()
            .any(|w| w.activation == wait.activation)
        {
            return Ok(()); // cancelled by an earlier completion of the same batch
        }
        self.inst.waits.retain(|w| w.activation != wait.activation);
        self.step.events.push(Event::WaitCompleted {
            node: wait.node.clone(),
            activation: wait.activation,
        });
        if let Some(race) = wait.race {
            if self.waits_for_all(node) {
                // Parallel multiple: it completes with the last of its triggers.
                if self.inst.waits.iter().any(|w| w.race == Some(race)) {
                    if !outputs.is_empty() {
                        self.write_variables(
                            wait.scope,
                            node,
                            Some(wait.activation),
                            outputs,
                            true,
                        )?;
                    }
                    return Ok(());
                }
            } else {
                let losers: Vec<u64> = self
                    .inst
                    .waits
                    .iter()
                    .filter(|w| w.race == Some(race))
                    .map(|w| w.activation)
                    .collect();
                for loser in losers {
                    self.cancel_waits(|w| w.activation == loser);
                    self.cancel_boundaries(loser);
                }
            }
        }
        match wait.attached_to {
            Some(activity) => {
                if matches!(&self.process.node(node).behavior, Behavior::Boundary(spec) if spec.interrupting)
                {
                    self.cancel_activity(activity);
                }
                if !outputs.is_empty() {
                    self.write_variables(wait.scope, node, Some(wait.activation), outputs, true)?;
                }
                self.fire_boundary(node, wait.scope, wait.activation)
            }
            None if matches!(self.process.node(node).behavior, Behavior::EventStart(_)) => {
                if !outputs.is_empty() {
                    self.write_variables(wait.scope, node, Some(wait.activation), outputs, true)?;
                }
                self.event_start_triggered(node, &wait)
            }
            None => {
                self.cancel_boundaries(wait.activation);
                if !outputs.is_empty() {
                    self.write_variables(wait.scope, node, Some(wait.activation), outputs, true)?;
                }
                if self.run_of(wait.scope).is_some() {
                    self.finish_run(node, wait.scope)
                } else {
                    self.leave(node, wait.scope, wait.activation)
                }
            }
        }
    }

    /// A non-interrupting boundary timer ticks: a new token leaves the boundary event (with an
    /// activation of its own) and the timer wait stays open.
    pub(super) fn tick_boundary(mut self, activation: u64) -> Result<Step, ExecError> {
        let wait = self.inst.waits[self.find_wait(activation)?].clone();
        let node = self
            .process
            .node_index(&wait.node)
            .ok_or(ExecError::UnknownActivation(activation))?;
        if !wait.is_non_interrupting_boundary_timer(self.process) {
            return Err(ExecError::NotARepeatingBoundary {
                activation,
                node: wait.node,
            });
        }
        self.inst.status = InstanceStatus::Running;
        let ticked = if let Some(esp) = self.event_subprocess_of(node) {
            self.launch_event_subprocess(esp, wait.scope)
        } else {
            let fired = self.inst.next_activation;
            self.inst.next_activation += 1;
            self.fire_boundary(node, wait.scope, fired)
        };
        let _ = ticked.and_then(|()| self.drain());
        Ok(self.finish())
    }

    /// Variables set from outside: refused as a whole when a `guard_variable` rule refuses them,
    /// else written in the process scope (as if by its first node, for the hooks), then
    /// conditional events are evaluated.
    pub(super) fn update_variables(
        mut self,
        updates: Map<String, Value>,
    ) -> Result<Step, ExecError> {
        let guard = {
            let variables = self.visible(0);
            let ctx = self.context_of(None, None, &variables);
            self.hooks.guard_variables(&ctx, &updates)
        };
        guard.map_err(ExecError::VariablesRejected)?;
        self.inst.status = InstanceStatus::Running;
        let _ = self
            .write_variables_from(0, None, None, updates, true)
            .and_then(|()| self.drain());
        Ok(self.finish())
    }

    pub(super) fn job_error(
        mut self,
        activation: u64,
        code: Option<&str>,
    ) -> Result<Step, ExecError> {
        let position = self.find_wait(activation)?;
        let wait = &self.inst.waits[position];
        if !matches!(
            wait.kind,
            WaitKind::Job { .. } | WaitKind::Llm { .. } | WaitKind::Call { .. }
        ) {
            return Err(ExecError::NotAJob {
                activation,
                node: wait.node.clone(),
                kind: wait.kind.name(),
            });
        }
        let node = self
            .process
            .node_index(&wait.node)
            .ok_or(ExecError::UnknownActivation(activation))?;
        let wait = self.inst.waits.remove(position);
        self.inst.status = InstanceStatus::Running;
        self.step.events.push(Event::WaitCompleted {
            node: wait.node.clone(),
            activation,
        });
        self.cancel_boundaries(activation);
        self.forget_loop(activation);
        // The task's local variables end with it.
        let outer = self.outside_io_scope(node, wait.scope);
        if outer != wait.scope {
            self.drop_scope_tree(wait.scope, true);
        }
        // An error in one run of a multi-instance task ends the whole task.
        let mut scope = outer;
        if let Some(run) = self.run_of(wait.scope) {
            scope = self
                .inst
                .multi
                .iter()
                .find(|m| m.activation == run.activity)
                .map(|m| m.scope)
                .unwrap_or(0);
            self.cancel_activity(run.activity);
        }
        let _ = match self.error_boundary(node, code) {
            Some(boundary) => {
                let fired = self.inst.next_activation;
                self.inst.next_activation += 1;
                self.step.events.push(Event::ErrorThrown {
                    node: wait.node.clone(),
                    code: code.map(str::to_string),
                });
                self.fire_boundary(boundary, scope, fired)
                    .and_then(|()| self.drain())
            }
            None => self
                .raise_error(node, Some(activation), scope, code)
                .and_then(|()| self.drain()),
        };
        Ok(self.finish())
    }

    pub(super) fn fail_job(mut self, activation: u64, message: &str) -> Result<Step, ExecError> {
        let position = self.find_wait(activation)?;
        let wait = &self.inst.waits[position];
        if !matches!(
            wait.kind,
            WaitKind::Job { .. } | WaitKind::Llm { .. } | WaitKind::Call { .. }
        ) {
            return Err(ExecError::NotAJob {
                activation,
                node: wait.node.clone(),
                kind: wait.kind.name(),
            });
        }
        let wait = self.inst.waits.remove(position);
        let span = self
            .node_index(&wait.node)
            .map(|n| self.process.node(n).span)
            .unwrap_or_default();
        let message = match wait.kind {
            WaitKind::Call { .. } => message.to_string(),
            _ => format!("job failed: {message}"),
        };
        let _ = self.incident(&wait.node, Some(activation), span, message);
        Ok(self.finish())
    }

    fn find_wait(&self, activation: u64) -> Result<usize, ExecError> {
        self.inst
            .waits
            .iter()
            .position(|w| w.activation == activation)
            .ok_or(ExecError::UnknownActivation(activation))
    }

    /// Settles the status and hands the step back.
    fn finish(mut self) -> Step {
        if self.inst.status == InstanceStatus::Running {
            self.inst.status = InstanceStatus::Waiting;
        }
        self.step.ended = !self.inst.status.is_active();
        self.step
    }

    // ---- the token loop ------------------------------------------------------------------------

    /// Moves tokens until none can move: FIFO queue first, then inclusive joins that became ready,
    /// then checks for a stuck instance.
    fn drain(&mut self) -> Flowing {
        loop {
            while let Some(token) = self.queue.pop_front() {
                self.arrive(token)?;
            }
            if self.fire_ready_inclusive_join()? {
                continue;
            }
            if !self.fire_satisfied_condition()? {
                break;
            }
        }
        if self.inst.status == InstanceStatus::Running && self.inst.waits.is_empty() {
            if let Some(join) = self.inst.joins.first().cloned() {
                let span = self
                    .node_index(&join.node)
                    .map(|n| self.process.node(n).span)
                    .unwrap_or_default();
                return self.incident(
                    &join.node,
                    None,
                    span,
                    "instance is stuck: this join waits for tokens that can no longer arrive"
                        .to_string(),
                );
            }
        }
        Ok(())
    }

    fn arrive(&mut self, token: Token) -> Flowing {
        let index = token.node;
        let node = self.process.node(index);
        match node.behavior {
            Behavior::Gateway(GatewayKind::Parallel) if node.incoming.len() > 1 => {
                self.record_arrival(&token);
                if self.parallel_join_ready(index, token.scope) {
                    self.consume_arrivals(index, token.scope);
                    return self.enter(index, token.scope, None);
                }
                Ok(())
            }
            Behavior::Gateway(GatewayKind::Inclusive) if node.incoming.len() > 1 => {
                self.record_arrival(&token);
                if self.inclusive_join_ready(index, token.scope) {
                    self.consume_arrivals(index, token.scope);
                    return self.enter(index, token.scope, None);
                }
                Ok(())
            }
            Behavior::Gateway(GatewayKind::Complex) if node.incoming.len() > 1 => {
                self.record_arrival(&token);
                self.complex_join(index, token.scope).map(|_| ())
            }
            _ => self.enter(index, token.scope, token.race),
        }
    }

    // ---- joins -----------------------------------------------------------------------------------

    fn record_arrival(&mut self, token: &Token) {
        let flow = token
            .via
            .map(|edge| self.process.flow(edge).id.clone())
            .unwrap_or_default();
        let node = &self.process.node(token.node).id;
        let position = match self
            .inst
            .joins
            .iter()
            .position(|j| &j.node == node && j.scope == token.scope)
        {
            Some(p) => p,
            None => {
                self.inst.joins.push(JoinState {
                    node: node.clone(),
                    scope: token.scope,
                    arrivals: Vec::new(),
                    fired: false,
                });
                self.inst.joins.len() - 1
            }
        };
        let arrivals = &mut self.inst.joins[position].arrivals;
        match arrivals.iter_mut().find(|(f, _)| *f == flow) {
            Some((_, count)) => *count += 1,
            None => arrivals.push((flow, 1)),
        }
    }

    fn join_state(&self, node: NodeIndex, scope: u64) -> Option<&JoinState> {
        let id = &self.process.node(node).id;
        self.inst
            .joins
            .iter()
            .find(|j| &j.node == id && j.scope == scope)
    }

    fn parallel_join_ready(&self, node: NodeIndex, scope: u64) -> bool {
        let Some(join) = self.join_state(node, scope) else {
            return false;
        };
        self.process.node(node).incoming.iter().all(|&edge| {
            let flow = &self.process.flow(edge).id;
            join.arrivals
                .iter()
                .any(|(f, count)| f == flow && *count > 0)
        })
    }

    /// An inclusive join fires once no other token of its scope can still reach it.
    fn inclusive_join_ready(&self, join: NodeIndex, scope: u64) -> bool {
        if self
            .join_state(join, scope)
            .is_none_or(|j| j.arrivals.iter().all(|(_, c)| *c == 0))
        {
            return false;
        }
        let join_id = &self.process.node(join).id;
        let reaches = |n: NodeIndex| n == join || self.process.can_reach_join(n, join);
        let blocks = |node: &str| self.process.node_index(node).is_some_and(reaches);
        let queued = self
            .queue
            .iter()
            .any(|t| t.scope == scope && reaches(t.node));
        let waiting = self
            .inst
            .waits
            .iter()
            .any(|w| w.scope == scope && blocks(&w.node));
        let other_joins = self.inst.joins.iter().any(|j| {
            j.scope == scope
                && &j.node != join_id
                && j.arrivals.iter().any(|(_, c)| *c > 0)
                && blocks(&j.node)
        });
        let subprocesses = self
            .inst
            .scopes
            .iter()
            .any(|s| s.parent == Some(scope) && s.subprocess.as_deref().is_some_and(&blocks));
        !(queued || waiting || other_joins || subprocesses)
    }

    /// Takes one token per incoming flow that has one (parallel joins have one on every flow).
    fn consume_arrivals(&mut self, node: NodeIndex, scope: u64) {
        let id = &self.process.node(node).id;
        if let Some(position) = self
            .inst
            .joins
            .iter()
            .position(|j| &j.node == id && j.scope == scope)
        {
            let join = &mut self.inst.joins[position];
            for (_, count) in join.arrivals.iter_mut() {
                *count = count.saturating_sub(1);
            }
            join.arrivals.retain(|(_, c)| *c > 0);
            if join.arrivals.is_empty() {
                self.inst.joins.remove(position);
            }
        }
    }

    /// Fires the first inclusive join (in the order joins were reached) that became ready, or
    /// settles the first complex join no more tokens can reach.
    fn fire_ready_inclusive_join(&mut self) -> Result<bool, Stop> {
        let ready = self.inst.joins.iter().find_map(|j| {
            let node = self.process.node_index(&j.node)?;
            let kind = match self.process.node(node).behavior {
                Behavior::Gateway(kind @ (GatewayKind::Inclusive | GatewayKind::Complex)) => kind,
                _ => return None,
            };
            self.inclusive_join_ready(node, j.scope)
                .then_some((node, j.scope, kind))
        });
        match ready {
            Some((node, scope, GatewayKind::Complex)) => self.complex_join(node, scope),
            Some((node, scope, _)) => {
                self.consume_arrivals(node, scope);
                self.enter(node, scope, None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A complex gateway's join after an arrival (or when no more tokens can reach it): with an
    /// activation condition it fires once the condition holds (`activationCount` = the tokens
    /// arrived) and absorbs the rest of the wave; without one it fires like an inclusive join.
    /// Returns whether it fired or settled.
    fn complex_join(&mut self, index: NodeIndex, scope: u64) -> Result<bool, Stop> {
        let node = self.process.node(index);
        let Some(join) = self.join_state(index, scope).cloned() else {
            return Ok(false);
        };
        let arrived: u32 = join.arrivals.iter().map(|(_, c)| c).sum();
        let complete = self.inclusive_join_ready(index, scope);
        let fire = match &node.activation {
            Some(_) if join.fired => false,
            Some(code) => {
                let result = {
                    let mut variables = self.visible(scope).into_owned();
                    variables.insert("activationCount".into(), Value::from(arrived));
                    self.process.scripts().eval_condition(&code.ast, &variables)
                };
                match result {
                    Ok(holds) => holds,
                    Err(err) => {
                        self.script_incident(index, 0, code, "activation condition", &err)?;
                        return Err(Stop);
                    }
                }
            }
            None => complete,
        };
        if complete {
            // The wave is over: its tokens are consumed.
            self.inst
                .joins
                .retain(|j| !(j.node == node.id && j.scope == scope));
            if !fire && !join.fired {
                let message = format!(
                    "complex gateway `{}`: its activation condition did not hold for the {arrived} token(s) that arrived, and no more can arrive",
                    node.id
                );
                self.incident(&node.id, None, node.span, message)?;
            }
            if !fire {
                // The absorbed tokens end here; their scope may be done.
                self.token_ended(scope)?;
            }
        } else if fire {
            if let Some(state) = self
                .inst
                .joins
                .iter_mut()
                .find(|j| j.node == node.id && j.scope == scope)
            {
                state.fired = true;
            }
        }
        if fire {
            self.enter(index, scope, None)?;
        }
        Ok(fire || complete)
    }

    // ---- nodes -----------------------------------------------------------------------------------

    fn enter(&mut self, index: NodeIndex, scope: u64, race: Option<u64>) -> Flowing {
        let node = self.process.node(index);
        self.entries += 1;
        if self.entries > MAX_ENTRIES_PER_CALL {
            return self.incident(
                &node.id,
                None,
                node.span,
                format!("more than {MAX_ENTRIES_PER_CALL} nodes entered in one step: the process loops without end"),
            );
        }
        let activation = self.inst.next_activation;
        self.inst.next_activation += 1;
        self.count_activation(&node.id);
        self.step.events.push(Event::NodeEntered {
            node: node.id.clone(),
            activation,
        });
        self.hook(index, scope, Some(activation), |hooks, ctx| {
            hooks.on_enter(ctx)
        })?;
        if let Some(spec) = &node.multi {
            return self.start_multi(index, scope, activation, spec);
        }
        if let Some(spec) = &node.standard_loop {
            match self
                .inst
                .loops
                .iter_mut()
                .find(|l| l.node == node.id && l.scope == scope)
            {
                Some(state) => state.activation = activation,
                None => {
                    self.inst.loops.push(LoopState {
                        node: node.id.clone(),
                        scope,
                        count: 0,
                        activation,
                    });
                    if spec.test_before && !self.loop_continues(index, scope, 0, spec)? {
                        self.forget_loop(activation);
                        return self.move_on(index, scope, activation);
                    }
                }
            }
        }

        // An activity with input/output mappings runs in a scope of its own local variables (a
        // subprocess's own scope holds them).
        let scope = match &node.io {
            Some(io) if !matches!(node.behavior, Behavior::SubProcess { .. }) => {
                self.open_io_scope(index, scope, activation, io)?
            }
            _ => scope,
        };
        match &node.behavior {
            Behavior::Start
            | Behavior::PassThrough
            | Behavior::Gateway(_)
            | Behavior::EventStart(_) => self.leave(index, scope, activation),
            Behavior::LinkThrow { target } => {
                self.hook(index, scope, Some(activation), |hooks, ctx| {
                    hooks.on_leave(ctx)
                })?;
                self.inst.path.push(node.id.clone());
                self.step.events.push(Event::NodeCompleted {
                    node: node.id.clone(),
                    activation,
                });
                self.queue.push_back(Token {
                    node: *target,
                    scope,
                    via: None,
                    race: None,
                });
                Ok(())
            }
            Behavior::EventSubProcess(_) => {
                let message = format!("event subprocess {} was reached along a flow", node.id);
                self.incident(&node.id, Some(activation), node.span, message)
            }
            Behavior::Compensate { activity } => self.compensate(
                index,
                scope,
                activation,
                *activity,
                AfterCompensation::Continue,
            ),
            Behavior::Throw(events) => {
                for event in events {
                    self.step.events.push(Event::EventThrown {
                        node: node.id.clone(),
                        event: event.clone(),
                    });
                }
                // The throw event completes, then a catching boundary event fires (an interrupting
                // one also drops the token that just left the throw event).
                self.leave(index, scope, activation)?;
                for event in events {
                    if self.escalate(event, scope)? == Escalated::Interrupted {
                        break;
                    }
                }
                self.catch_own_signals(events)?;
                Ok(())
            }
            Behavior::Script(code) => {
                self.run_script(index, scope, activation, code)?;
                self.leave(index, scope, activation)
            }
            Behavior::Decision(spec) => {
                self.run_decision(index, scope, activation, spec)?;
                self.leave(index, scope, activation)
            }
            Behavior::Wait(spec) => self.begin_wait(index, scope, activation, spec, race),
            Behavior::SubProcess { scope: child } => {
                let scope_id = self.inst.next_scope;
                self.inst.next_scope += 1;
                self.inst.scopes.push(ScopeState {
                    id: scope_id,
                    parent: Some(scope),
                    subprocess: Some(node.id.clone()),
                    activation: Some(activation),
                    variables: Map::new(),
                    run: None,
                    io: false,
                });
                for &start in &self.process.scopes[*child].starts {
                    self.queue.push_back(Token {
                        node: start,
                        scope: scope_id,
                        via: None,
                        race: None,
                    });
                }
                if self.process.scopes[*child].starts.is_empty() {
                    return self.incident(
                        &node.id,
                        Some(activation),
                        node.span,
                        "subprocess has no none start event".into(),
                    );
                }
                if let Some(io) = &node.io {
                    self.fill_io_scope(index, scope, scope_id, activation, io)?;
                }
                self.arm_event_subprocesses(*child, scope_id)?;
                self.arm_boundaries(index, scope, activation)
            }
            Behavior::End(end) => {
                self.hook(index, scope, Some(activation), |hooks, ctx| {
                    hooks.on_leave(ctx)
                })?;
                self.inst.path.push(node.id.clone());
                self.step.events.push(Event::NodeCompleted {
                    node: node.id.clone(),
                    activation,
                });
                match end {
                    EndBehavior::None => self.token_ended(scope),
                    EndBehavior::Throw(events) => {
                        for event in events {
                            self.step.events.push(Event::EventThrown {
                                node: node.id.clone(),
                                event: event.clone(),
                            });
                        }
                        for event in events {
                            if self.escalate(event, scope)? == Escalated::Interrupted {
                                return Ok(());
                            }
                        }
                        self.catch_own_signals(events)?;
                        self.token_ended(scope)
                    }
                    EndBehavior::Terminate => self.terminate_scope(index, scope),
                    EndBehavior::Error { code } => {
                        self.raise_error(index, Some(activation), scope, code.as_deref())
                    }
                    EndBehavior::Compensate { activity } => {
                        self.compensate(index, scope, activation, *activity, AfterCompensation::End)
                    }
                    EndBehavior::Cancel => {
                        // Everything still running in the transaction ends; what completed in it
                        // is compensated; then its cancel boundary event fires.
                        self.drop_scope_tree(scope, false);
                        self.compensate(index, scope, activation, None, AfterCompensation::Cancel)
                    }
                }
            }
            Behavior::Boundary(_) => {
                let message = format!("boundary event {} was reached along a flow", node.id);
                self.incident(&node.id, Some(activation), node.span, message)
            }
            Behavior::Unsupported => {
                let message = format!("not supported yet: {} {}", node.element, node.id);
                self.incident(&node.id, Some(activation), node.span, message)
            }
        }
    }

    fn begin_wait(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        spec: &WaitSpec,
        race: Option<u64>,
    ) -> Flowing {
        if let WaitSpec::Multiple { specs, .. } = spec {
            // One wait per trigger, grouped by the event's activation (or the race of the
            // event-based gateway before it).
            let group = race.unwrap_or(activation);
            for spec in specs {
                let sub = self.inst.next_activation;
                self.inst.next_activation += 1;
                let kind = self.wait_kind(index, scope, sub, spec)?;
                self.add_wait(index, scope, sub, kind, Some(group), None);
            }
            return self.arm_boundaries(index, scope, activation);
        }
        let kind = self.wait_kind(index, scope, activation, spec)?;
        self.add_wait(index, scope, activation, kind, race, None);
        self.arm_boundaries(index, scope, activation)
    }

    /// Arms the wait(s) of `spec` at `node` (one per trigger of a multiple event, grouped as a
    /// race); conditions start as `satisfied` (a re-armed start must see its condition change).
    fn arm(
        &mut self,
        node: NodeIndex,
        scope: u64,
        spec: &WaitSpec,
        attached_to: Option<u64>,
        satisfied: bool,
    ) -> Flowing {
        let specs: &[WaitSpec] = match spec {
            WaitSpec::Multiple { specs, .. } => specs,
            single => std::slice::from_ref(single),
        };
        let group = (specs.len() > 1 || matches!(spec, WaitSpec::Multiple { .. }))
            .then_some(self.inst.next_activation);
        if group.is_some() {
            self.inst.next_activation += 1;
        }
        for spec in specs {
            let armed = self.inst.next_activation;
            self.inst.next_activation += 1;
            let mut kind = self.wait_kind(node, scope, armed, spec)?;
            if let WaitKind::Condition {
                satisfied: held, ..
            } = &mut kind
            {
                *held = satisfied;
            }
            self.add_wait(node, scope, armed, kind, group, attached_to);
        }
        Ok(())
    }

    /// Whether a multiple event waits for all of its triggers (parallel multiple).
    fn waits_for_all(&self, node: NodeIndex) -> bool {
        matches!(
            &self.process.node(node).behavior,
            Behavior::Wait(WaitSpec::Multiple { all: true, .. })
                | Behavior::Boundary(BoundarySpec {
                    trigger: BoundaryTrigger::Wait(WaitSpec::Multiple { all: true, .. }),
                    ..
                })
                | Behavior::EventStart(EventStart::Wait(WaitSpec::Multiple { all: true, .. }))
        )
    }

    fn add_wait(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        kind: WaitKind,
        race: Option<u64>,
        attached_to: Option<u64>,
    ) {
        let node = self.process.node(index);
        let wait = Wait {
            activation,
            node: node.id.clone(),
            scope,
            kind,
            idempotency_key: joined_id(&[&self.inst.id, "/", &node.id, "/"], activation),
            race,
            attached_to,
        };
        self.step
            .events
            .push(Event::WaitStarted { wait: wait.clone() });
        self.step.new_waits.push(wait.clone());
        self.inst.waits.push(wait);
    }

    fn wait_kind(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        spec: &WaitSpec,
    ) -> Result<WaitKind, Stop> {
        Ok(match spec {
            WaitSpec::Job { handler } => WaitKind::Job {
                handler: handler.clone(),
            },
            WaitSpec::User { manual } => WaitKind::User { manual: *manual },
            WaitSpec::Timer {
                timer,
                computed: None,
            } => WaitKind::Timer {
                definition: timer.clone(),
            },
            WaitSpec::Timer {
                timer,
                computed: Some(code),
            } => {
                let result = {
                    let variables = self.visible(scope);
                    self.process.scripts().eval_value(&code.ast, &variables)
                };
                let text = match result {
                    Ok(Value::String(text)) => text,
                    Ok(other) => other.to_string(),
                    Err(err) => {
                        self.script_incident(index, activation, code, "timer", &err)?;
                        return Err(Stop);
                    }
                };
                let mut definition = timer.clone();
                definition.expression.source = text;
                WaitKind::Timer { definition }
            }
            WaitSpec::Signal { name } => WaitKind::Signal { name: name.clone() },
            WaitSpec::Llm(task) => WaitKind::Llm { task: task.clone() },
            WaitSpec::Call { process, binding } => WaitKind::Call {
                process: process.clone(),
                binding: *binding,
                variables: self.visible(scope).into_owned(),
            },
            // Evaluated by `fire_satisfied_condition` at the end of the step: a condition that
            // already holds fires then.
            WaitSpec::Condition(code) => WaitKind::Condition {
                condition: code.source.clone(),
                satisfied: false,
            },
            WaitSpec::Multiple { .. } => {
                let node = self.process.node(index);
                let message = format!("multiple event `{}` is nested in another", node.id);
                self.incident(&node.id, Some(activation), node.span, message)?;
                return Err(Stop);
            }
            WaitSpec::Message {
                name,
                correlation_key,
            } => {
                let key = match correlation_key {
                    None => None,
                    Some(code) => {
                        let result = {
                            let variables = self.visible(scope);
                            self.process.scripts().eval_value(&code.ast, &variables)
                        };
                        match result {
                            Ok(Value::String(s)) => Some(s),
                            Ok(other) => Some(other.to_string()),
                            Err(err) => {
                                self.script_incident(
                                    index,
                                    activation,
                                    code,
                                    "correlation key",
                                    &err,
                                )?;
                                return Err(Stop);
                            }
                        }
                    }
                };
                WaitKind::Message {
                    name: name.clone(),
                    correlation_key: key,
                }
            }
        })
    }

    // ---- boundary events and errors --------------------------------------------------------------

    /// Arms the timer, message and signal boundary events of an activity that starts waiting
    /// (in the activity's enclosing scope, outside its local variables).
    fn arm_boundaries(&mut self, activity: NodeIndex, scope: u64, activation: u64) -> Flowing {
        let scope = self.outside_io_scope(activity, scope);
        for &boundary in &self.process.node(activity).boundaries {
            let Behavior::Boundary(BoundarySpec {
                trigger: BoundaryTrigger::Wait(spec),
                ..
            }) = &self.process.node(boundary).behavior
            else {
                continue;
            };
            self.arm(boundary, scope, spec, Some(activation), false)?;
        }
        Ok(())
    }

    /// Removes the waits matching `doomed`, telling the driver (timers to disarm).
    fn cancel_waits(&mut self, doomed: impl Fn(&Wait) -> bool) {
        let (cancelled, kept): (Vec<Wait>, Vec<Wait>) = std::mem::take(&mut self.inst.waits)
            .into_iter()
            .partition(|w| doomed(w));
        self.inst.waits = kept;
        for wait in cancelled {
            self.step.events.push(Event::WaitCancelled {
                node: wait.node,
                activation: wait.activation,
            });
        }
    }

    /// The activity with this activation ended: its boundary events are disarmed.
    fn cancel_boundaries(&mut self, activation: u64) {
        self.cancel_waits(|w| w.attached_to == Some(activation));
    }

    /// An interrupting boundary event fired: the activity (a waiting task or a running
    /// subprocess) is cancelled with its other boundary events.
    fn cancel_activity(&mut self, activation: u64) {
        self.forget_loop(activation);
        self.cancel_waits(|w| w.activation == activation);
        if let Some(position) = self
            .inst
            .multi
            .iter()
            .position(|m| m.activation == activation)
        {
            self.inst.multi.remove(position);
            self.drop_runs(activation);
        }
        if let Some(scope) = self
            .inst
            .scopes
            .iter()
            .find(|s| s.activation == Some(activation))
            .map(|s| s.id)
        {
            self.drop_scope_tree(scope, true);
        }
        self.cancel_boundaries(activation);
    }

    /// Drops every token, wait and join of `scope` and the scopes inside it; the scope itself is
    /// removed too when `remove_root`.
    fn drop_scope_tree(&mut self, scope: u64, remove_root: bool) {
        let mut doomed = vec![scope];
        let mut i = 0;
        while i < doomed.len() {
            let parent = doomed[i];
            doomed.extend(
                self.inst
                    .scopes
                    .iter()
                    .filter(|s| s.parent == Some(parent))
                    .map(|s| s.id),
            );
            i += 1;
        }
        self.queue.retain(|t| !doomed.contains(&t.scope));
        self.cancel_waits(|w| doomed.contains(&w.scope));
        self.inst.joins.retain(|j| !doomed.contains(&j.scope));
        self.inst.multi.retain(|m| !doomed.contains(&m.scope));
        self.inst.loops.retain(|l| !doomed.contains(&l.scope));
        self.inst
            .compensable
            .retain(|r| !doomed.contains(&r.scope) || (r.scope == scope && !remove_root));
        self.inst
            .compensations
            .retain(|c| !doomed.contains(&c.scope));
        self.inst
            .scopes
            .retain(|s| (s.id == scope && !remove_root) || !doomed.contains(&s.id));
    }

    // ---- input/output mappings --------------------------------------------------------------------

    /// Opens the local scope of activity `index` entered in `scope`: its inputs (evaluated in
    /// `scope`) and its pre-script. Returns the new scope.
    fn open_io_scope(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        io: &IoSpec,
    ) -> Result<u64, Stop> {
        let local = self.inst.next_scope;
        self.inst.next_scope += 1;
        self.inst.scopes.push(ScopeState {
            id: local,
            parent: Some(scope),
            subprocess: Some(self.process.node(index).id.clone()),
            activation: Some(activation),
            variables: Map::new(),
            run: None,
            io: true,
        });
        self.fill_io_scope(index, scope, local, activation, io)?;
        Ok(local)
    }

    /// Sets the inputs of an activity (evaluated in `outer`) in its scope `local`, then runs its
    /// pre-script there.
    fn fill_io_scope(
        &mut self,
        index: NodeIndex,
        outer: u64,
        local: u64,
        activation: u64,
        io: &IoSpec,
    ) -> Flowing {
        let mut values = Map::new();
        for (name, code) in &io.inputs {
            let result = {
                let variables = self.visible(outer);
                self.process.scripts().eval_value(&code.ast, &variables)
            };
            match result {
                Ok(value) => {
                    values.insert(name.clone(), value);
                }
                Err(err) => {
                    return self.script_incident(index, activation, code, "input mapping", &err)
                }
            }
        }
        if let Some(state) = self.inst.scopes.iter_mut().find(|s| s.id == local) {
            state.variables.extend(values);
        }
        if let Some(code) = &io.pre_script {
            self.run_script(index, local, activation, code)?;
        }
        Ok(())
    }

    /// The outputs of activity `index` from its scope `local`: the post-script runs, then the
    /// output mappings are evaluated; without any, a task's variables other than its inputs
    /// (`keep_created`) are its outputs.
    fn io_outputs(
        &mut self,
        index: NodeIndex,
        local: u64,
        io: &IoSpec,
        keep_created: bool,
    ) -> Result<Map<String, Value>, Stop> {
        let activation = self
            .inst
            .scopes
            .iter()
            .find(|s| s.id == local)
            .and_then(|s| s.activation)
            .unwrap_or(0);
        if let Some(code) = &io.post_script {
            self.run_script(index, local, activation, code)?;
        }
        let mut changes = Map::new();
        if io.outputs.is_empty() {
            if keep_created {
                if let Some(state) = self.inst.scopes.iter().find(|s| s.id == local) {
                    for (name, value) in &state.variables {
                        if !io.inputs.iter().any(|(input, _)| input == name) {
                            changes.insert(name.clone(), value.clone());
                        }
                    }
                }
            }
            return Ok(changes);
        }
        for (name, code) in &io.outputs {
            let result = {
                let variables = self.visible(local);
                self.process.scripts().eval_value(&code.ast, &variables)
            };
            match result {
                Ok(value) => {
                    changes.insert(name.clone(), value);
                }
                Err(err) => {
                    self.script_incident(index, activation, code, "output mapping", &err)?;
                    return Err(Stop);
                }
            }
        }
        Ok(changes)
    }

    /// Closes the local scope of a task that completes in it: the outputs go to the enclosing
    /// scope, which is returned (`scope` itself when it is not the task's local scope).
    fn close_io_scope(&mut self, index: NodeIndex, scope: u64, io: &IoSpec) -> Result<u64, Stop> {
        let node = &self.process.node(index).id;
        let Some(state) = self
            .inst
            .scopes
            .iter()
            .find(|s| s.id == scope && s.io && s.subprocess.as_ref() == Some(node))
        else {
            return Ok(scope);
        };
        let (parent, activation) = (state.parent.unwrap_or(0), state.activation);
        let changes = self.io_outputs(index, scope, io, true)?;
        self.inst.scopes.retain(|s| s.id != scope);
        if !changes.is_empty() {
            self.write_variables(parent, index, activation, changes, true)?;
        }
        Ok(parent)
    }

    /// The scope an activity runs in, outside its local-variable scope when `scope` is that one.
    fn outside_io_scope(&self, activity: NodeIndex, scope: u64) -> u64 {
        if self.process.node(activity).io.is_none() {
            return scope;
        }
        let node = &self.process.node(activity).id;
        self.inst
            .scopes
            .iter()
            .find(|s| s.id == scope && s.io && s.subprocess.as_ref() == Some(node))
            .and_then(|s| s.parent)
            .unwrap_or(scope)
    }

    // ---- compensation ---------------------------------------------------------------------------

    /// A compensation throw at `thrower`: the completed activities of `scope` (or only
    /// `activity`) are compensated in reverse order of completion, one handler after another;
    /// then `then`.
    fn compensate(
        &mut self,
        thrower: NodeIndex,
        scope: u64,
        activation: u64,
        activity: Option<NodeIndex>,
        then: AfterCompensation,
    ) -> Flowing {
        let only = activity.map(|a| self.process.node(a).id.clone());
        let mut pending = Vec::new();
        let mut position = self.inst.compensable.len();
        while position > 0 {
            position -= 1;
            let record = &self.inst.compensable[position];
            if record.scope == scope && only.as_ref().is_none_or(|only| *only == record.node) {
                pending.push(self.inst.compensable.remove(position).handler);
            }
        }
        self.inst.compensations.push(CompensationRun {
            node: self.process.node(thrower).id.clone(),
            activation,
            scope,
            pending,
            running: None,
            then,
        });
        self.next_compensation_handler(self.inst.compensations.len() - 1)
    }

    /// Starts the next handler of compensation run `run`, or finishes it.
    fn next_compensation_handler(&mut self, run: usize) -> Flowing {
        let state = &mut self.inst.compensations[run];
        if state.pending.is_empty() {
            let done = self.inst.compensations.remove(run);
            return self.compensation_done(done);
        }
        let handler = state.pending.remove(0);
        state.running = Some(handler.clone());
        let scope = state.scope;
        let index = self.node_index(&handler)?;
        self.queue.push_back(Token {
            node: index,
            scope,
            via: None,
            race: None,
        });
        Ok(())
    }

    /// A compensation handler completed in `scope`: its compensation goes on with the next one.
    fn compensation_step(&mut self, handler: NodeIndex, scope: u64) -> Flowing {
        let id = &self.process.node(handler).id;
        match self
            .inst
            .compensations
            .iter()
            .rposition(|c| c.running.as_ref() == Some(id))
        {
            Some(run) => {
                self.inst.compensations[run].running = None;
                self.next_compensation_handler(run)
            }
            // A handler reached along a flow of its own: its token ends.
            None => self.token_ended(scope),
        }
    }

    fn compensation_done(&mut self, run: CompensationRun) -> Flowing {
        let thrower = self.node_index(&run.node)?;
        match run.then {
            AfterCompensation::Continue => self.leave(thrower, run.scope, run.activation),
            AfterCompensation::End => self.token_ended(run.scope),
            AfterCompensation::Cancel => {
                let Some(state) = self.inst.scopes.iter().find(|s| s.id == run.scope).cloned()
                else {
                    return Ok(());
                };
                let (Some(sub), Some(sub_activation), Some(parent)) =
                    (state.subprocess, state.activation, state.parent)
                else {
                    return Ok(());
                };
                let transaction = self.node_index(&sub)?;
                self.drop_scope_tree(run.scope, true);
                self.cancel_boundaries(sub_activation);
                self.forget_loop(sub_activation);
                let boundary = self
                    .process
                    .node(transaction)
                    .boundaries
                    .iter()
                    .copied()
                    .find(|&b| {
                        matches!(
                            self.process.node(b).behavior,
                            Behavior::Boundary(BoundarySpec {
                                trigger: BoundaryTrigger::Cancel,
                                ..
                            })
                        )
                    });
                match boundary {
                    Some(boundary) => {
                        let fired = self.inst.next_activation;
                        self.inst.next_activation += 1;
                        self.fire_boundary(boundary, parent, fired)
                    }
                    None => {
                        let node = self.process.node(transaction);
                        let message = format!(
                            "transaction `{}` was cancelled and has no cancel boundary event",
                            node.id
                        );
                        self.incident(&node.id, Some(sub_activation), node.span, message)
                    }
                }
            }
        }
    }

    // ---- event subprocesses and conditional events ---------------------------------------------

    /// Arms the message, timer, signal and conditional starts of the event subprocesses of the
    /// compiled scope `compiled`, for its instance `scope`.
    fn arm_event_subprocesses(&mut self, compiled: ScopeId, scope: u64) -> Flowing {
        for &esp in &self.process.scopes[compiled].event_subprocesses {
            let Behavior::EventSubProcess(spec) = &self.process.node(esp).behavior else {
                continue;
            };
            let start = spec.start;
            let Behavior::EventStart(EventStart::Wait(wait)) = &self.process.node(start).behavior
            else {
                continue;
            };
            self.arm(start, scope, wait, None, false)?;
        }
        Ok(())
    }

    /// The event subprocess whose start event is `start`, when it is one.
    fn event_subprocess_of(&self, start: NodeIndex) -> Option<NodeIndex> {
        let scope = self.process.node(start).scope;
        let esp = self.process.scopes[scope].subprocess?;
        matches!(
            self.process.node(esp).behavior,
            Behavior::EventSubProcess(_)
        )
        .then_some(esp)
    }

    fn esp_interrupts(&self, esp: NodeIndex) -> bool {
        matches!(&self.process.node(esp).behavior, Behavior::EventSubProcess(spec) if spec.interrupting)
    }

    /// The armed start of an event subprocess was triggered: a non-interrupting message, signal
    /// or conditional start is armed again, then the event subprocess starts.
    fn event_start_triggered(&mut self, start: NodeIndex, wait: &Wait) -> Flowing {
        let Some(esp) = self.event_subprocess_of(start) else {
            return Ok(());
        };
        // A non-interrupting start can happen again (a timer ticks through `tick_boundary`
        // instead): its waits are armed anew, conditions marked as holding.
        let repeats = !self.esp_interrupts(esp) && !matches!(wait.kind, WaitKind::Timer { .. });
        if let (true, Behavior::EventStart(EventStart::Wait(spec))) =
            (repeats, &self.process.node(start).behavior)
        {
            if let Some(group) = wait.race {
                // The other triggers of a multiple start are armed anew with it.
                self.cancel_waits(|w| w.race == Some(group));
            }
            self.arm(start, wait.scope, spec, None, true)?;
        }
        self.launch_event_subprocess(esp, wait.scope)
    }

    /// Starts an instance of the event subprocess `esp` inside the scope instance `enclosing`;
    /// an interrupting one first ends everything else in `enclosing`.
    fn launch_event_subprocess(&mut self, esp: NodeIndex, enclosing: u64) -> Flowing {
        let Behavior::EventSubProcess(spec) = &self.process.node(esp).behavior else {
            return Ok(());
        };
        if spec.interrupting {
            self.drop_scope_tree(enclosing, false);
        }
        let node = self.process.node(esp);
        let activation = self.inst.next_activation;
        self.inst.next_activation += 1;
        self.count_activation(&node.id);
        self.step.events.push(Event::NodeEntered {
            node: node.id.clone(),
            activation,
        });
        let scope_id = self.inst.next_scope;
        self.inst.next_scope += 1;
        self.inst.scopes.push(ScopeState {
            id: scope_id,
            parent: Some(enclosing),
            subprocess: Some(node.id.clone()),
            activation: Some(activation),
            variables: Map::new(),
            run: None,
            io: false,
        });
        self.hook(esp, scope_id, Some(activation), |hooks, ctx| {
            hooks.on_enter(ctx)
        })?;
        self.arm_event_subprocesses(spec.scope, scope_id)?;
        self.queue.push_back(Token {
            node: spec.start,
            scope: scope_id,
            via: None,
            race: None,
        });
        Ok(())
    }

    /// The compiled scope an instance scope runs (`None` for a multi-instance run).
    fn compiled_scope(&self, scope: u64) -> Option<ScopeId> {
        if scope == 0 {
            return Some(0);
        }
        let state = self.inst.scopes.iter().find(|s| s.id == scope)?;
        if state.run.is_some() {
            return None;
        }
        let node = self.process.node_index(state.subprocess.as_deref()?)?;
        match &self.process.node(node).behavior {
            Behavior::SubProcess { scope } => Some(*scope),
            Behavior::EventSubProcess(spec) => Some(spec.scope),
            _ => None,
        }
    }

    /// The event subprocess of instance scope `scope` whose error (`error`) or escalation start
    /// catches `code`: the exact code first, then a catch-all.
    fn catching_event_subprocess(
        &self,
        scope: u64,
        code: Option<&str>,
        error: bool,
    ) -> Option<NodeIndex> {
        let compiled = self.compiled_scope(scope)?;
        let caught = |esp: &NodeIndex| -> Option<Option<String>> {
            let Behavior::EventSubProcess(spec) = &self.process.node(*esp).behavior else {
                return None;
            };
            match (&self.process.node(spec.start).behavior, error) {
                (Behavior::EventStart(EventStart::Error { code }), true)
                | (Behavior::EventStart(EventStart::Escalation { code }), false) => {
                    Some(code.clone())
                }
                _ => None,
            }
        };
        let esps = &self.process.scopes[compiled].event_subprocesses;
        esps.iter()
            .find(|esp| matches!(caught(esp), Some(Some(c)) if Some(c.as_str()) == code))
            .or_else(|| esps.iter().find(|esp| matches!(caught(esp), Some(None))))
            .copied()
    }

    /// The condition `source` of a conditional event node (one of the triggers of a multiple
    /// event).
    fn condition_code(&self, node: NodeIndex, source: &str) -> Option<&'a CompiledCode> {
        let spec = match &self.process.node(node).behavior {
            Behavior::Wait(spec)
            | Behavior::Boundary(BoundarySpec {
                trigger: BoundaryTrigger::Wait(spec),
                ..
            })
            | Behavior::EventStart(EventStart::Wait(spec)) => spec,
            _ => return None,
        };
        let specs: &[WaitSpec] = match spec {
            WaitSpec::Multiple { specs, .. } => specs,
            single => std::slice::from_ref(single),
        };
        specs.iter().find_map(|spec| match spec {
            WaitSpec::Condition(code) if code.source == source => Some(code),
            _ => None,
        })
    }

    /// Evaluates the conditions of the conditional waits, in order; the first that became true
    /// fires (its token is queued). Returns whether one fired.
    fn fire_satisfied_condition(&mut self) -> Result<bool, Stop> {
        if !self
            .inst
            .waits
            .iter()
            .any(|w| matches!(w.kind, WaitKind::Condition { .. }))
        {
            return Ok(false);
        }
        let conditional: Vec<(u64, u64, String, String, bool)> = self
            .inst
            .waits
            .iter()
            .filter_map(|w| match &w.kind {
                WaitKind::Condition {
                    condition,
                    satisfied,
                } => Some((
                    w.activation,
                    w.scope,
                    w.node.clone(),
                    condition.clone(),
                    *satisfied,
                )),
                _ => None,
            })
            .collect();
        for (activation, scope, node_id, source, satisfied) in conditional {
            let node = self.node_index(&node_id)?;
            let Some(code) = self.condition_code(node, &source) else {
                continue;
            };
            let result = {
                let variables = self.visible(scope);
                self.process.scripts().eval_condition(&code.ast, &variables)
            };
            match result {
                Ok(true) if !satisfied => {
                    let Some(wait) = self.inst.wait(activation).cloned() else {
                        continue;
                    };
                    self.complete_wait(node, wait, Map::new())?;
                    return Ok(true);
                }
                Ok(holds) => {
                    if let Some(wait) = self
                        .inst
                        .waits
                        .iter_mut()
                        .find(|w| w.activation == activation)
                    {
                        if let WaitKind::Condition { satisfied, .. } = &mut wait.kind {
                            *satisfied = holds;
                        }
                    }
                }
                Err(err) => {
                    self.script_incident(node, activation, code, "condition", &err)?;
                    return Err(Stop);
                }
            }
        }
        Ok(false)
    }

    // ---- multi-instance tasks ----------------------------------------------------------------------

    /// Starts a multi-instance task: evaluates its items, then starts one run (sequential) or all.
    fn start_multi(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        spec: &MultiSpec,
    ) -> Flowing {
        let node = self.process.node(index);
        let items = if let Some(code) = &spec.collection {
            let result = {
                let variables = self.visible(scope);
                self.process.scripts().eval_value(&code.ast, &variables)
            };
            match result {
                Ok(Value::Array(items)) => items,
                Ok(other) => {
                    let message = format!(
                        "collection of multi-instance `{}` is not a list: {other}",
                        node.id
                    );
                    return self.incident(&node.id, Some(activation), code.span, message);
                }
                Err(err) => {
                    return self.script_incident(index, activation, code, "collection", &err)
                }
            }
        } else if let Some(code) = &spec.cardinality {
            let result = {
                let variables = self.visible(scope);
                self.process.scripts().eval_value(&code.ast, &variables)
            };
            match result {
                Ok(value) if value.as_u64().is_some() => {
                    (1..=value.as_u64().unwrap_or(0)).map(Value::from).collect()
                }
                Ok(other) => {
                    let message = format!(
                        "cardinality of multi-instance `{}` is not a whole number: {other}",
                        node.id
                    );
                    return self.incident(&node.id, Some(activation), code.span, message);
                }
                Err(err) => {
                    return self.script_incident(index, activation, code, "cardinality", &err)
                }
            }
        } else {
            Vec::new()
        };
        if items.len() > MAX_RUNS {
            let message = format!(
                "multi-instance `{}` has {} items, more than {MAX_RUNS}",
                node.id,
                items.len()
            );
            return self.incident(&node.id, Some(activation), node.span, message);
        }
        let count = items.len();
        self.inst.multi.push(MultiState {
            node: node.id.clone(),
            scope,
            activation,
            items,
            started: 0,
            completed: 0,
            outputs: vec![Value::Null; count],
        });
        if count == 0 {
            return self.finish_multi(index, activation);
        }
        self.arm_boundaries(index, scope, activation)?;
        let first_batch = if spec.sequential { 1 } else { count };
        for item in 0..first_batch {
            if !self.inst.multi.iter().any(|m| m.activation == activation) {
                break; // ended early by its completion condition
            }
            self.start_run(index, activation, item)?;
        }
        Ok(())
    }

    /// Starts run `item` of the multi-instance task `activity` in a scope of its own.
    fn start_run(&mut self, index: NodeIndex, activity: u64, item: usize) -> Flowing {
        let node = self.process.node(index);
        let Some(state) = self
            .inst
            .multi
            .iter_mut()
            .find(|m| m.activation == activity)
        else {
            return Ok(());
        };
        state.started = state.started.max(item + 1);
        let (outer, value) = (
            state.scope,
            state.items.get(item).cloned().unwrap_or(Value::Null),
        );
        let mut variables = Map::new();
        if let Some(name) = node.multi.as_ref().and_then(|m| m.element_variable.clone()) {
            variables.insert(name, value);
        }
        variables.insert("loopCounter".into(), Value::from(item as u64 + 1));
        let (scope, run) = (self.inst.next_scope, self.inst.next_activation);
        self.inst.next_scope += 1;
        self.inst.next_activation += 1;
        self.inst.scopes.push(ScopeState {
            id: scope,
            parent: Some(outer),
            subprocess: Some(node.id.clone()),
            activation: Some(run),
            variables,
            run: Some(RunOf {
                activity,
                index: item,
            }),
            io: false,
        });
        self.step.events.push(Event::NodeEntered {
            node: node.id.clone(),
            activation: run,
        });
        match &node.behavior {
            Behavior::Script(code) => {
                self.run_script(index, scope, run, code)?;
                self.finish_run(index, scope)
            }
            Behavior::Decision(spec) => {
                self.run_decision(index, scope, run, spec)?;
                self.finish_run(index, scope)
            }
            Behavior::Wait(spec) => {
                let kind = self.wait_kind(index, scope, run, spec)?;
                self.add_wait(index, scope, run, kind, None, None);
                Ok(())
            }
            _ => self.finish_run(index, scope),
        }
    }

    /// The multi-instance run living in `scope`, if it is one.
    fn run_of(&self, scope: u64) -> Option<RunOf> {
        self.inst
            .scopes
            .iter()
            .find(|s| s.id == scope)
            .and_then(|s| s.run)
    }

    /// A run completed: its output is kept, and the task moves on once every run completed or
    /// its completion condition holds; a sequential task starts its next run.
    fn finish_run(&mut self, index: NodeIndex, scope: u64) -> Flowing {
        let node = self.process.node(index);
        let Some(run) = self.run_of(scope) else {
            return Ok(());
        };
        let output_name = node
            .multi
            .as_ref()
            .and_then(|m| m.output_element.clone().or(m.element_variable.clone()));
        let output = output_name
            .and_then(|name| self.visible(scope).get(&name).cloned())
            .unwrap_or(Value::Null);
        let run_activation = self
            .inst
            .scopes
            .iter()
            .find(|s| s.id == scope)
            .and_then(|s| s.activation)
            .unwrap_or(0);
        self.inst.scopes.retain(|s| s.id != scope);
        self.inst.path.push(node.id.clone());
        self.step.events.push(Event::NodeCompleted {
            node: node.id.clone(),
            activation: run_activation,
        });
        let Some(state) = self
            .inst
            .multi
            .iter_mut()
            .find(|m| m.activation == run.activity)
        else {
            return Ok(());
        };
        if let Some(slot) = state.outputs.get_mut(run.index) {
            *slot = output;
        }
        state.completed += 1;
        let (total, completed, started, outer) = (
            state.items.len(),
            state.completed,
            state.started,
            state.scope,
        );
        let active = started - completed;
        let early = match node
            .multi
            .as_ref()
            .and_then(|m| m.completion_condition.as_ref())
        {
            Some(code) if completed < total => {
                let mut variables = self.visible(outer).into_owned();
                variables.insert("nrOfInstances".into(), Value::from(total as u64));
                variables.insert(
                    "nrOfCompletedInstances".into(),
                    Value::from(completed as u64),
                );
                variables.insert("nrOfActiveInstances".into(), Value::from(active as u64));
                match self.process.scripts().eval_condition(&code.ast, &variables) {
                    Ok(done) => done,
                    Err(err) => {
                        return self.script_incident(
                            index,
                            run.activity,
                            code,
                            "completion condition",
                            &err,
                        )
                    }
                }
            }
            _ => false,
        };
        if completed == total || early {
            return self.finish_multi(index, run.activity);
        }
        if node.multi.as_ref().is_some_and(|m| m.sequential) && started < total {
            return self.start_run(index, run.activity, started);
        }
        Ok(())
    }

    /// Ends a multi-instance task: open runs are cancelled, the outputs collected, and the token
    /// moves on.
    fn finish_multi(&mut self, index: NodeIndex, activity: u64) -> Flowing {
        let Some(position) = self
            .inst
            .multi
            .iter()
            .position(|m| m.activation == activity)
        else {
            return Ok(());
        };
        let state = self.inst.multi.remove(position);
        self.drop_runs(activity);
        self.cancel_boundaries(activity);
        if let Some(name) = self
            .process
            .node(index)
            .multi
            .as_ref()
            .and_then(|m| m.output_collection.clone())
        {
            let mut changes = Map::new();
            changes.insert(name, Value::Array(state.outputs));
            self.write_variables(state.scope, index, Some(activity), changes, true)?;
        }
        self.hook(index, state.scope, Some(activity), |hooks, ctx| {
            hooks.on_leave(ctx)
        })?;
        self.step.events.push(Event::NodeCompleted {
            node: self.process.node(index).id.clone(),
            activation: activity,
        });
        self.move_on(index, state.scope, activity)
    }

    /// Drops the open runs of the multi-instance task `activity`.
    fn drop_runs(&mut self, activity: u64) {
        let runs: Vec<u64> = self
            .inst
            .scopes
            .iter()
            .filter(|s| s.run.is_some_and(|r| r.activity == activity))
            .map(|s| s.id)
            .collect();
        for run in runs {
            self.drop_scope_tree(run, true);
        }
    }

    /// The error boundary event of `activity` that catches `code` (an exact match first, then a
    /// catch-all).
    fn error_boundary(&self, activity: NodeIndex, code: Option<&str>) -> Option<NodeIndex> {
        self.process.error_boundary(activity, code)
    }

    /// A boundary event fires in `scope`: its token moves on along its flows.
    fn fire_boundary(&mut self, boundary: NodeIndex, scope: u64, activation: u64) -> Flowing {
        let node = self.process.node(boundary);
        self.count_activation(&node.id);
        self.step.events.push(Event::NodeEntered {
            node: node.id.clone(),
            activation,
        });
        self.hook(boundary, scope, Some(activation), |hooks, ctx| {
            hooks.on_enter(ctx)
        })?;
        self.leave(boundary, scope, activation)
    }

    /// An escalation thrown in `scope`: the nearest enclosing subprocess with a matching
    /// escalation boundary event fires it. An interrupting one ends the subprocess (and the
    /// throwing token with it); a non-interrupting one adds a token after the boundary. Uncaught
    /// escalations (and other thrown events) change nothing.
    /// A signal is broadcast, to the instance that throws it as well: its own catches of the
    /// signals in `events` (intermediate and boundary events, event-subprocess starts) fire in
    /// this step, before the throwing token ends. The engine's broadcast after the commit skips
    /// the thrower, so each catch fires once.
    fn catch_own_signals(&mut self, events: &[ThrownEvent]) -> Flowing {
        for event in events.iter().filter(|e| e.kind == "signal") {
            let caught: Vec<Wait> = self
                .inst
                .waits
                .iter()
                .filter(|w| matches!(&w.kind, WaitKind::Signal { name } if *name == event.name))
                .cloned()
                .collect();
            for wait in caught {
                let node = self.node_index(&wait.node)?;
                self.complete_wait(node, wait, Map::new())?;
            }
        }
        Ok(())
    }

    fn escalate(&mut self, event: &ThrownEvent, scope: u64) -> Result<Escalated, Stop> {
        if event.kind != "escalation" {
            return Ok(Escalated::NotCaught);
        }
        let code = event.name.as_deref();
        let mut current = scope;
        loop {
            if let Some(esp) = self.catching_event_subprocess(current, code, false) {
                let interrupting = self.esp_interrupts(esp);
                self.launch_event_subprocess(esp, current)?;
                return Ok(if interrupting {
                    Escalated::Interrupted
                } else {
                    Escalated::Caught
                });
            }
            if current == 0 {
                break;
            }
            let Some(state) = self.inst.scopes.iter().find(|s| s.id == current).cloned() else {
                break;
            };
            let (Some(sub), Some(sub_activation), Some(parent)) =
                (state.subprocess, state.activation, state.parent)
            else {
                break;
            };
            let sub_index = self.node_index(&sub)?;
            if let Some((boundary, interrupting)) = self.escalation_boundary(sub_index, code) {
                if interrupting {
                    self.drop_scope_tree(current, true);
                    self.cancel_boundaries(sub_activation);
                    self.forget_loop(sub_activation);
                }
                let fired = self.inst.next_activation;
                self.inst.next_activation += 1;
                self.fire_boundary(boundary, parent, fired)?;
                return Ok(if interrupting {
                    Escalated::Interrupted
                } else {
                    Escalated::Caught
                });
            }
            current = parent;
        }
        Ok(Escalated::NotCaught)
    }

    /// The escalation boundary event of `activity` that catches `code` (exact match first), and
    /// whether it interrupts.
    fn escalation_boundary(
        &self,
        activity: NodeIndex,
        code: Option<&str>,
    ) -> Option<(NodeIndex, bool)> {
        let catching = |exact: bool| {
            self.process
                .node(activity)
                .boundaries
                .iter()
                .find_map(|&b| match &self.process.node(b).behavior {
                    Behavior::Boundary(BoundarySpec {
                        trigger: BoundaryTrigger::Escalation { code: caught },
                        interrupting,
                        ..
                    }) if (exact && caught.is_some() && caught.as_deref() == code)
                        || (!exact && caught.is_none()) =>
                    {
                        Some((b, *interrupting))
                    }
                    _ => None,
                })
        };
        catching(true).or_else(|| catching(false))
    }

    /// A BPMN error thrown in `scope` by `thrower`: the nearest enclosing subprocess with a
    /// matching error boundary event is interrupted and the boundary takes over; uncaught, it is
    /// an incident.
    fn raise_error(
        &mut self,
        thrower: NodeIndex,
        activation: Option<u64>,
        scope: u64,
        code: Option<&str>,
    ) -> Flowing {
        self.step.events.push(Event::ErrorThrown {
            node: self.process.node(thrower).id.clone(),
            code: code.map(str::to_string),
        });
        let mut current = scope;
        loop {
            // An error event subprocess of the scope catches first, then the boundary events of
            // the subprocess that runs the scope.
            if let Some(esp) = self.catching_event_subprocess(current, code, true) {
                return self.launch_event_subprocess(esp, current);
            }
            if current == 0 {
                break;
            }
            let Some(state) = self.inst.scopes.iter().find(|s| s.id == current).cloned() else {
                break;
            };
            let (Some(sub), Some(sub_activation), Some(parent)) =
                (state.subprocess, state.activation, state.parent)
            else {
                break;
            };
            let sub_index = self.node_index(&sub)?;
            if let Some(boundary) = self.error_boundary(sub_index, code) {
                self.drop_scope_tree(current, true);
                self.cancel_boundaries(sub_activation);
                self.forget_loop(sub_activation);
                let fired = self.inst.next_activation;
                self.inst.next_activation += 1;
                return self.fire_boundary(boundary, parent, fired);
            }
            current = parent;
        }
        let node = self.process.node(thrower);
        let code = code.map(|c| format!(" `{c}`")).unwrap_or_default();
        self.incident(
            &node.id,
            activation,
            node.span,
            format!("error{code} thrown by `{}` was not caught", node.id),
        )
    }

    /// Completes a node and moves its token(s) on (or, for a standard loop whose condition
    /// still holds, into its next run).
    fn leave(&mut self, index: NodeIndex, scope: u64, activation: u64) -> Flowing {
        let node = self.process.node(index);
        let scope = match &node.io {
            Some(io) => self.close_io_scope(index, scope, io)?,
            None => scope,
        };
        self.hook(index, scope, Some(activation), |hooks, ctx| {
            hooks.on_leave(ctx)
        })?;
        self.inst.path.push(node.id.clone());
        self.step.events.push(Event::NodeCompleted {
            node: node.id.clone(),
            activation,
        });
        if node.compensation_handler {
            return self.compensation_step(index, scope);
        }
        if let Some(handler) = node.compensation {
            self.inst.compensable.push(Compensable {
                node: node.id.clone(),
                handler: self.process.node(handler).id.clone(),
                scope,
            });
        }
        if let Some(spec) = &node.standard_loop {
            if let Some(position) = self
                .inst
                .loops
                .iter()
                .position(|l| l.node == node.id && l.scope == scope)
            {
                let count = self.inst.loops[position].count + 1;
                self.inst.loops[position].count = count;
                if self.loop_continues(index, scope, count, spec)? {
                    // The next run is a token of its own, so long loops need no deep recursion.
                    self.queue.push_back(Token {
                        node: index,
                        scope,
                        via: None,
                        race: None,
                    });
                    return Ok(());
                }
                self.inst.loops.remove(position);
            }
        }
        self.move_on(index, scope, activation)
    }

    /// Whether a standard loop runs (again) after `count` runs: below its maximum and its
    /// condition (with `loopCounter` = `count`) holds.
    fn loop_continues(
        &mut self,
        index: NodeIndex,
        scope: u64,
        count: u64,
        spec: &LoopSpec,
    ) -> Result<bool, Stop> {
        if spec.maximum.is_some_and(|max| count >= max) {
            return Ok(false);
        }
        let Some(code) = &spec.condition else {
            return Ok(true);
        };
        let result = {
            let mut variables = self.visible(scope).into_owned();
            variables.insert("loopCounter".into(), Value::from(count));
            self.process.scripts().eval_condition(&code.ast, &variables)
        };
        match result {
            Ok(holds) => Ok(holds),
            Err(err) => {
                self.script_incident(index, 0, code, "loop condition", &err)?;
                Err(Stop)
            }
        }
    }

    /// The activity run with this activation was cancelled or failed: its loop ends too.
    fn forget_loop(&mut self, activation: u64) {
        self.inst.loops.retain(|l| l.activation != activation);
    }

    /// Sends the token(s) of a completed node along its selected outgoing flows.
    fn move_on(&mut self, index: NodeIndex, scope: u64, activation: u64) -> Flowing {
        let node = self.process.node(index);
        let flows = self.select_flows(index, scope, activation)?;
        if flows.is_empty() {
            return self.token_ended(scope);
        }
        // The events after an event-based gateway race each other.
        let race = matches!(node.behavior, Behavior::Gateway(GatewayKind::EventBased))
            .then_some(activation);
        for edge in flows {
            let flow = self.process.flow(edge);
            let target = self.process.node(flow.target);
            self.step.events.push(Event::TokenMoved {
                flow: flow.id.clone(),
                from: node.id.clone(),
                to: target.id.clone(),
            });
            self.queue.push_back(Token {
                node: flow.target,
                scope,
                via: Some(edge),
                race,
            });
        }
        Ok(())
    }

    /// The outgoing flows a completing node sends tokens along, in document order.
    fn select_flows(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
    ) -> Result<Vec<EdgeIndex>, Stop> {
        let node = self.process.node(index);
        let kind = match node.behavior {
            Behavior::Gateway(kind) => Some(kind),
            _ => None,
        };
        if kind == Some(GatewayKind::Parallel) {
            return Ok(node.outgoing.clone());
        }
        let mut chosen = Vec::new();
        let mut conditional_taken = false;
        for &edge in &node.outgoing {
            let flow = self.process.flow(edge);
            if flow.is_default {
                continue;
            }
            let taken = match &flow.condition {
                None => true,
                Some(code) => {
                    let result = {
                        let variables = self.visible(scope);
                        self.process.scripts().eval_condition(&code.ast, &variables)
                    };
                    match result {
                        Ok(value) => {
                            conditional_taken |= value;
                            value
                        }
                        Err(err) => {
                            let what = format!("condition of flow {}", flow.id);
                            self.script_incident(index, activation, code, &what, &err)?;
                            return Err(Stop);
                        }
                    }
                }
            };
            if taken {
                chosen.push(edge);
                if kind == Some(GatewayKind::Exclusive) {
                    return Ok(chosen);
                }
            }
        }
        let take_default = match kind {
            Some(_) => chosen.is_empty(),
            None => !conditional_taken,
        };
        if take_default {
            if let Some(default) = node.default_flow {
                chosen.push(default);
            }
        }
        if chosen.is_empty() && !node.outgoing.is_empty() {
            let message = format!(
                "no outgoing flow of {} `{}` matched and it has no default flow",
                node.element, node.id
            );
            self.incident(&node.id, Some(activation), node.span, message)?;
        }
        Ok(chosen)
    }

    // ---- scopes ----------------------------------------------------------------------------------

    /// A token ended in `scope`; when the scope has nothing left, it completes.
    fn token_ended(&mut self, scope: u64) -> Flowing {
        if !self.scope_idle(scope) {
            return Ok(());
        }
        self.complete_scope(scope)
    }

    /// Whether nothing is left in `scope`: no token, no wait (the armed starts of its event
    /// subprocesses do not count), no join, no running subprocess.
    fn scope_idle(&self, scope: u64) -> bool {
        !(self.queue.iter().any(|t| t.scope == scope)
            || self
                .inst
                .waits
                .iter()
                .any(|w| w.scope == scope && !self.is_event_start_wait(w))
            || self.inst.joins.iter().any(|j| j.scope == scope)
            || self.inst.compensations.iter().any(|c| c.scope == scope)
            || self.inst.scopes.iter().any(|s| s.parent == Some(scope)))
    }

    /// Whether a wait is the armed start of an event subprocess.
    fn is_event_start_wait(&self, wait: &Wait) -> bool {
        wait.attached_to.is_none()
            && self
                .process
                .node_index(&wait.node)
                .is_some_and(|n| matches!(self.process.node(n).behavior, Behavior::EventStart(_)))
    }

    fn complete_scope(&mut self, scope: u64) -> Flowing {
        // What is left are the armed starts of the scope's event subprocesses.
        self.cancel_waits(|w| w.scope == scope);
        if scope == 0 {
            self.inst.compensable.clear();
            self.inst.status = InstanceStatus::Completed;
            self.step.events.push(Event::InstanceCompleted);
            return Ok(());
        }
        let Some(position) = self.inst.scopes.iter().position(|s| s.id == scope) else {
            return Ok(());
        };
        let outputs = match self.inst.scopes[position]
            .subprocess
            .as_deref()
            .and_then(|id| self.process.node_index(id))
        {
            Some(sub) => match &self.process.node(sub).io {
                Some(io) => Some((sub, self.io_outputs(sub, scope, io, false)?)),
                None => None,
            },
            None => None,
        };
        let Some(position) = self.inst.scopes.iter().position(|s| s.id == scope) else {
            return Ok(());
        };
        let state = self.inst.scopes.remove(position);
        if let (Some((sub, changes)), Some(parent)) = (outputs, state.parent) {
            if !changes.is_empty() {
                self.write_variables(parent, sub, state.activation, changes, true)?;
            }
        }
        let (Some(sub), Some(activation), Some(parent)) =
            (state.subprocess, state.activation, state.parent)
        else {
            return Ok(());
        };
        let index = self.node_index(&sub)?;
        self.cancel_boundaries(activation);
        // What completed inside is compensated by the subprocess's own handler when it has one,
        // else with the enclosing scope's other activities.
        if self.process.node(index).compensation.is_some() {
            self.inst.compensable.retain(|r| r.scope != scope);
        } else {
            for record in self
                .inst
                .compensable
                .iter_mut()
                .filter(|r| r.scope == scope)
            {
                record.scope = parent;
            }
        }
        self.leave(index, parent, activation)
    }

    /// A terminate end event: drops every token of `scope` and of the scopes inside it, then the
    /// scope completes (the instance, at the top level).
    fn terminate_scope(&mut self, index: NodeIndex, scope: u64) -> Flowing {
        self.drop_scope_tree(scope, false);
        self.step.events.push(Event::ScopeTerminated {
            node: self.process.node(index).id.clone(),
            scope,
        });
        self.complete_scope(scope)
    }

    // ---- variables -------------------------------------------------------------------------------

    /// The variables visible in `scope`: its own over those of the enclosing scopes.
    fn visible(&self, scope: u64) -> Cow<'_, Map<String, Value>> {
        if scope == 0 {
            return Cow::Borrowed(&self.inst.scopes[0].variables);
        }
        let mut chain = Vec::new();
        let mut current = Some(scope);
        while let Some(id) = current {
            match self.inst.scopes.iter().find(|s| s.id == id) {
                Some(state) => {
                    chain.push(state);
                    current = state.parent;
                }
                None => break,
            }
        }
        let mut merged = Map::new();
        for state in chain.into_iter().rev() {
            for (k, v) in &state.variables {
                merged.insert(k.clone(), v.clone());
            }
        }
        Cow::Owned(merged)
    }

    /// Writes `changes` from `scope`: a variable that exists in an enclosing scope is updated
    /// there, a new one is created in `scope` itself. Guards run first; `notify` calls
    /// `on_variables_changed` afterwards.
    fn write_variables(
        &mut self,
        scope: u64,
        index: NodeIndex,
        activation: Option<u64>,
        changes: Map<String, Value>,
        notify: bool,
    ) -> Flowing {
        self.write_variables_from(scope, Some(index), activation, changes, notify)
    }

    /// [`Self::write_variables`] by `index`, or from outside the process (`None`).
    fn write_variables_from(
        &mut self,
        scope: u64,
        index: Option<NodeIndex>,
        activation: Option<u64>,
        changes: Map<String, Value>,
        notify: bool,
    ) -> Flowing {
        let guard = {
            let variables = self.visible(scope);
            let ctx = self.context_of(index, activation, &variables);
            self.hooks.guard_variables(&ctx, &changes)
        };
        if let Err(reason) = guard {
            return self.node_incident(
                index,
                activation,
                format!("variable change refused: {reason}"),
            );
        }
        for (name, value) in &changes {
            let target = self.owner_scope(scope, name);
            if let Some(state) = self.inst.scopes.iter_mut().find(|s| s.id == target) {
                state.variables.insert(name.clone(), value.clone());
            }
        }
        self.step.events.push(Event::VariablesChanged {
            node: index.map(|i| self.process.node(i).id.clone()),
            scope,
            changes: changes.clone(),
        });
        if notify {
            let more = {
                let variables = self.visible(scope);
                let ctx = self.context_of(index, activation, &variables);
                self.hooks.on_variables_changed(&ctx, &changes)
            };
            match more {
                Ok(more) if more.is_empty() => {}
                Ok(more) => self.write_variables_from(scope, index, activation, more, false)?,
                Err(reason) => return self.node_incident(index, activation, reason),
            }
        }
        Ok(())
    }

    /// An incident at node `index`, or at the process when there is none.
    fn node_incident(
        &mut self,
        index: Option<NodeIndex>,
        activation: Option<u64>,
        message: String,
    ) -> Flowing {
        match index {
            Some(index) => {
                let node = self.process.node(index);
                self.incident(&node.id, activation, node.span, message)
            }
            None => {
                let (id, span) = (self.process.id.clone(), self.process.span);
                self.incident(&id, activation, span, message)
            }
        }
    }

    fn owner_scope(&self, scope: u64, name: &str) -> u64 {
        let mut current = Some(scope);
        while let Some(id) = current {
            match self.inst.scopes.iter().find(|s| s.id == id) {
                Some(state) if state.variables.contains_key(name) => return id,
                Some(state) => current = state.parent,
                None => break,
            }
        }
        // A new variable: created in the nearest scope that keeps its own variables.
        let mut owner = scope;
        while let Some(state) = self.inst.scopes.iter().find(|s| s.id == owner) {
            match state.parent {
                Some(parent) if self.shares_variables(state) => owner = parent,
                _ => break,
            }
        }
        owner
    }

    /// Whether a scope instance runs a called process that shares its caller's variables.
    fn shares_variables(&self, state: &ScopeState) -> bool {
        let Some(node) = state
            .subprocess
            .as_deref()
            .and_then(|id| self.process.node_index(id))
        else {
            return false;
        };
        match self.process.node(node).behavior {
            Behavior::SubProcess { scope } => {
                state.run.is_none()
                    && self
                        .process
                        .scopes
                        .get(scope)
                        .is_some_and(|s| s.shares_variables)
            }
            _ => false,
        }
    }

    // ---- hooks and incidents ---------------------------------------------------------------------

    fn context<'c>(
        &'c self,
        index: NodeIndex,
        activation: Option<u64>,
        variables: &'c Map<String, Value>,
    ) -> HookContext<'c> {
        self.context_of(Some(index), activation, variables)
    }

    fn context_of<'c>(
        &'c self,
        index: Option<NodeIndex>,
        activation: Option<u64>,
        variables: &'c Map<String, Value>,
    ) -> HookContext<'c> {
        HookContext {
            process: self.process,
            instance_id: &self.inst.id,
            node: index.map(|i| self.process.node(i)),
            activation,
            variables,
        }
    }

    /// Calls a hook for a node; an error becomes an incident, updates are written.
    fn hook(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: Option<u64>,
        call: impl Fn(&dyn ExecutionHooks, &HookContext<'_>) -> Result<Map<String, Value>, String>,
    ) -> Flowing {
        let result = {
            let variables = self.visible(scope);
            let ctx = self.context(index, activation, &variables);
            call(self.hooks, &ctx)
        };
        match result {
            Ok(updates) if updates.is_empty() => Ok(()),
            Ok(updates) => self.write_variables(scope, index, activation, updates, false),
            Err(reason) => {
                let node = self.process.node(index);
                self.incident(&node.id, activation, node.span, reason)
            }
        }
    }

    /// Counts one more activation of the node `id` (the id is copied only the first time).
    fn count_activation(&mut self, id: &str) {
        match self.inst.activations.get_mut(id) {
            Some(count) => *count += 1,
            None => {
                self.inst.activations.insert(id.to_string(), 1);
            }
        }
    }

    /// Runs a script task's code in `scope` and writes the variables it set; a failing script
    /// becomes an incident.
    fn run_script(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        code: &CompiledCode,
    ) -> Flowing {
        let result = {
            let variables = self.visible(scope);
            self.process.scripts().run_script(&code.ast, &variables)
        };
        match result {
            Ok(updates) if updates.is_empty() => Ok(()),
            Ok(updates) => self.write_variables(scope, index, Some(activation), updates, true),
            Err(err) => self.script_incident(index, activation, code, "script", &err),
        }
    }

    /// Evaluates a business-rule task's decision over the variables of `scope` and writes its
    /// result variable; a failing evaluation becomes an incident at the decision's rule (or at
    /// the task).
    fn run_decision(
        &mut self,
        index: NodeIndex,
        scope: u64,
        activation: u64,
        spec: &DecisionSpec,
    ) -> Flowing {
        let result = {
            let variables = self.visible(scope);
            spec.decisions
                .evaluate(&spec.decision, &*variables)
                .map_err(|err| (err.location().map(str::to_string), err.to_string()))
                .and_then(|evaluation| {
                    evaluation
                        .mapped(spec.mapping)
                        .map_err(|message| (None, message))
                })
        };
        match result {
            Ok(value) => {
                let mut changes = Map::new();
                match (spec.mapping, value) {
                    (DecisionResultMapping::MergeOutputs, FeelValue::Context(outputs)) => {
                        for (name, value) in outputs {
                            changes.insert(name, value.to_json());
                        }
                    }
                    (_, value) => {
                        changes.insert(spec.result_variable.clone(), value.to_json());
                    }
                }
                if changes.is_empty() {
                    return Ok(());
                }
                self.write_variables(scope, index, Some(activation), changes, true)
            }
            Err((at, message)) => {
                let node = self.process.node(index);
                let at = at.unwrap_or_else(|| self.process.location(node.span));
                let message = format!(
                    "decision `{}` failed in `{}`: {message}",
                    spec.decision, node.id
                );
                let id = node.id.clone();
                self.incident_at(&id, Some(activation), at, message)
            }
        }
    }

    fn script_incident(
        &mut self,
        index: NodeIndex,
        activation: u64,
        code: &CompiledCode,
        what: &str,
        err: &ScriptError,
    ) -> Flowing {
        let node = self.process.node(index);
        let span = err
            .position()
            .map(|(line, col)| crate::graph::offset_span(code.span, line, col))
            .unwrap_or(code.span);
        let mut message = match err {
            ScriptError::Compile { message, .. } | ScriptError::Runtime { message, .. } => {
                message.clone()
            }
            other => other.to_string(),
        };
        // Assignments create variables; a name that is only read must already exist.
        if message.starts_with("Variable not found") {
            message.push_str(" (neither an instance variable nor assigned before this point)");
        }
        self.incident(
            &node.id,
            Some(activation),
            span,
            format!("{what} failed in `{}`: {message}", node.id),
        )
    }

    /// Records an incident; the instance fails and the call unwinds.
    fn incident(
        &mut self,
        node: &str,
        activation: Option<u64>,
        span: Span,
        message: String,
    ) -> Flowing {
        let at = self.process.location(span);
        self.incident_at(node, activation, at, message)
    }

    /// Records an incident whose cause is at `at` (`file:line:col`, possibly another file).
    fn incident_at(
        &mut self,
        node: &str,
        activation: Option<u64>,
        at: String,
        message: String,
    ) -> Flowing {
        let incident = Incident {
            node: node.to_string(),
            message,
            at,
            activation,
        };
        tracing::warn!(instance = %self.inst.id, node, at = %incident.at, "incident: {}", incident.message);
        self.inst.incidents.push(incident.clone());
        self.step.events.push(Event::IncidentRaised { incident });
        self.inst.status = InstanceStatus::Failed;
        self.queue.clear();
        Err(Stop)
    }

    fn node_index(&mut self, id: &str) -> Result<NodeIndex, Stop> {
        match self.process.node_index(id) {
            Some(index) => Ok(index),
            None => {
                let message =
                    format!("instance refers to node `{id}`, which the process does not have");
                self.incident(id, None, Span::new(1, 1), message)?;
                Err(Stop)
            }
        }
    }
}
