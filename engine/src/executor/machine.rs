//! The token machine behind [`Instance`]'s driving calls: token arrival, joins, node behaviour,
//! flow selection, scopes and variables.

use super::{
    Event, ExecError, ExecutionHooks, HookContext, Incident, Instance, InstanceStatus, JoinState,
    MultiState, RunOf, ScopeState, Step, Wait, WaitKind,
};
use crate::graph::{
    Behavior, BoundarySpec, BoundaryTrigger, CompiledCode, CompiledProcess, EndBehavior, MultiSpec,
    ThrownEvent, WaitSpec,
};
use crate::model::{GatewayKind, Span};
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
        let _ = self.drain();
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
            if !self
                .inst
                .waits
                .iter()
                .any(|w| w.activation == wait.activation)
            {
                continue; // cancelled by an earlier completion of the same batch
            }
            self.inst.waits.retain(|w| w.activation != wait.activation);
            self.step.events.push(Event::WaitCompleted {
                node: wait.node.clone(),
                activation: wait.activation,
            });
            if let Some(race) = wait.race {
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
            match wait.attached_to {
                Some(activity) => {
                    if matches!(&self.process.node(node).behavior, Behavior::Boundary(spec) if spec.interrupting)
                    {
                        self.cancel_activity(activity);
                    }
                    if !outputs.is_empty() {
                        self.write_variables(
                            wait.scope,
                            node,
                            Some(wait.activation),
                            outputs,
                            true,
                        )?;
                    }
                    self.fire_boundary(node, wait.scope, wait.activation)?;
                }
                None => {
                    self.cancel_boundaries(wait.activation);
                    if !outputs.is_empty() {
                        self.write_variables(
                            wait.scope,
                            node,
                            Some(wait.activation),
                            outputs,
                            true,
                        )?;
                    }
                    if self.run_of(wait.scope).is_some() {
                        self.finish_run(node, wait.scope)?;
                    } else {
                        self.leave(node, wait.scope, wait.activation)?;
                    }
                }
            }
        }
        self.drain()
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
        let fired = self.inst.next_activation;
        self.inst.next_activation += 1;
        let _ = self
            .fire_boundary(node, wait.scope, fired)
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
        if !matches!(wait.kind, WaitKind::Job { .. } | WaitKind::Llm { .. }) {
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
        // An error in one run of a multi-instance task ends the whole task.
        let mut scope = wait.scope;
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
        if !matches!(wait.kind, WaitKind::Job { .. } | WaitKind::Llm { .. }) {
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
        let _ = self.incident(
            &wait.node,
            Some(activation),
            span,
            format!("job failed: {message}"),
        );
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
            if !self.fire_ready_inclusive_join()? {
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

    /// Fires the first inclusive join (in the order joins were reached) that became ready.
    fn fire_ready_inclusive_join(&mut self) -> Result<bool, Stop> {
        let ready = self.inst.joins.iter().find_map(|j| {
            let node = self.process.node_index(&j.node)?;
            let inclusive = matches!(
                self.process.node(node).behavior,
                Behavior::Gateway(GatewayKind::Inclusive)
            );
            (inclusive && self.inclusive_join_ready(node, j.scope)).then_some((node, j.scope))
        });
        match ready {
            Some((node, scope)) => {
                self.consume_arrivals(node, scope);
                self.enter(node, scope, None)?;
                Ok(true)
            }
            None => Ok(false),
        }
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

        match &node.behavior {
            Behavior::Start | Behavior::PassThrough | Behavior::Gateway(_) => {
                self.leave(index, scope, activation)
            }
            Behavior::Throw(event) => {
                self.step.events.push(Event::EventThrown {
                    node: node.id.clone(),
                    event: event.clone(),
                });
                // The throw event completes, then a catching boundary event fires (an interrupting
                // one also drops the token that just left the throw event).
                self.leave(index, scope, activation)?;
                self.escalate(event, scope).map(|_| ())
            }
            Behavior::Script(code) => {
                self.run_script(index, scope, activation, code)?;
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
                    EndBehavior::Throw(event) => {
                        self.step.events.push(Event::EventThrown {
                            node: node.id.clone(),
                            event: event.clone(),
                        });
                        if self.escalate(event, scope)? == Escalated::Interrupted {
                            return Ok(());
                        }
                        self.token_ended(scope)
                    }
                    EndBehavior::Terminate => self.terminate_scope(index, scope),
                    EndBehavior::Error { code } => {
                        self.raise_error(index, Some(activation), scope, code.as_deref())
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
        let kind = self.wait_kind(index, scope, activation, spec)?;
        self.add_wait(index, scope, activation, kind, race, None);
        self.arm_boundaries(index, scope, activation)
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
            idempotency_key: format!("{}/{}/{}", self.inst.id, node.id, activation),
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
            WaitSpec::Timer(timer) => WaitKind::Timer {
                definition: timer.clone(),
            },
            WaitSpec::Signal { name } => WaitKind::Signal { name: name.clone() },
            WaitSpec::Llm(task) => WaitKind::Llm { task: task.clone() },
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

    /// Arms the timer, message and signal boundary events of an activity that starts waiting.
    fn arm_boundaries(&mut self, activity: NodeIndex, scope: u64, activation: u64) -> Flowing {
        for &boundary in &self.process.node(activity).boundaries {
            let Behavior::Boundary(BoundarySpec {
                trigger: BoundaryTrigger::Wait(spec),
                ..
            }) = &self.process.node(boundary).behavior
            else {
                continue;
            };
            let armed = self.inst.next_activation;
            self.inst.next_activation += 1;
            let kind = self.wait_kind(boundary, scope, armed, spec)?;
            self.add_wait(boundary, scope, armed, kind, None, Some(activation));
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
        self.inst
            .scopes
            .retain(|s| (s.id == scope && !remove_root) || !doomed.contains(&s.id));
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
        let catches =
            |boundary: &NodeIndex, exact: bool| match &self.process.node(*boundary).behavior {
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
        let boundaries = &self.process.node(activity).boundaries;
        boundaries
            .iter()
            .find(|b| catches(b, true))
            .or_else(|| boundaries.iter().find(|b| catches(b, false)))
            .copied()
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
    fn escalate(&mut self, event: &ThrownEvent, scope: u64) -> Result<Escalated, Stop> {
        if event.kind != "escalation" {
            return Ok(Escalated::NotCaught);
        }
        let code = event.name.as_deref();
        let mut current = scope;
        while current != 0 {
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
        while current != 0 {
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

    /// Completes a node and moves its token(s) on.
    fn leave(&mut self, index: NodeIndex, scope: u64, activation: u64) -> Flowing {
        let node = self.process.node(index);
        self.hook(index, scope, Some(activation), |hooks, ctx| {
            hooks.on_leave(ctx)
        })?;
        self.inst.path.push(node.id.clone());
        self.step.events.push(Event::NodeCompleted {
            node: node.id.clone(),
            activation,
        });
        self.move_on(index, scope, activation)
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

    fn scope_idle(&self, scope: u64) -> bool {
        !(self.queue.iter().any(|t| t.scope == scope)
            || self.inst.waits.iter().any(|w| w.scope == scope)
            || self.inst.joins.iter().any(|j| j.scope == scope)
            || self.inst.scopes.iter().any(|s| s.parent == Some(scope)))
    }

    fn complete_scope(&mut self, scope: u64) -> Flowing {
        if scope == 0 {
            self.inst.status = InstanceStatus::Completed;
            self.step.events.push(Event::InstanceCompleted);
            return Ok(());
        }
        let Some(position) = self.inst.scopes.iter().position(|s| s.id == scope) else {
            return Ok(());
        };
        let state = self.inst.scopes.remove(position);
        let (Some(sub), Some(activation), Some(parent)) =
            (state.subprocess, state.activation, state.parent)
        else {
            return Ok(());
        };
        let index = self.node_index(&sub)?;
        self.cancel_boundaries(activation);
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
        let guard = {
            let variables = self.visible(scope);
            let ctx = self.context(index, activation, &variables);
            self.hooks.guard_variables(&ctx, &changes)
        };
        if let Err(reason) = guard {
            let node = self.process.node(index);
            return self.incident(
                &node.id,
                activation,
                node.span,
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
            node: Some(self.process.node(index).id.clone()),
            scope,
            changes: changes.clone(),
        });
        if notify {
            let more = {
                let variables = self.visible(scope);
                let ctx = self.context(index, activation, &variables);
                self.hooks.on_variables_changed(&ctx, &changes)
            };
            match more {
                Ok(more) if more.is_empty() => {}
                Ok(more) => self.write_variables(scope, index, activation, more, false)?,
                Err(reason) => {
                    let node = self.process.node(index);
                    return self.incident(&node.id, activation, node.span, reason);
                }
            }
        }
        Ok(())
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
        HookContext {
            process: self.process,
            instance_id: &self.inst.id,
            node: Some(self.process.node(index)),
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
        // Scripts written for other engines assign new variables without `let`.
        if what == "script" && message.starts_with("Variable not found") {
            message.push_str(" (scripts are Rhai: create a variable with `let name = value;`)");
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
        let incident = Incident {
            node: node.to_string(),
            message,
            at: self.process.location(span),
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
