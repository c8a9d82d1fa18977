//! Execution hooks: the points where business rules (or anything else) plug into the executor.
//!
//! The executor calls an [`ExecutionHooks`] implementation, passed to every driving call, at these
//! moments; every method has a no-op default, so an implementation overrides only what it needs:
//!
//! | method | when | `Err(reason)` means |
//! |---|---|---|
//! | [`on_start`](ExecutionHooks::on_start) | before the first token moves | the instance is not started ([`ExecError::StartRejected`](super::ExecError::StartRejected)) |
//! | [`on_enter`](ExecutionHooks::on_enter) | a token enters a node, before it runs | incident at the node |
//! | [`on_leave`](ExecutionHooks::on_leave) | a node completes, before its token moves on | incident at the node |
//! | [`guard_variables`](ExecutionHooks::guard_variables) | before variables change (script, completion output, hook) | incident at the node; the change is not applied |
//! | [`on_variables_changed`](ExecutionHooks::on_variables_changed) | after variables changed | incident at the node |
//! | [`guard_complete`](ExecutionHooks::guard_complete) | before a wait is completed | the completion is refused ([`ExecError::Rejected`](super::ExecError::Rejected)) and nothing changes |
//!
//! `on_start`, `on_enter`, `on_leave` and `on_variables_changed` may return variable updates
//! (`Ok(map)`); they are applied in the node's scope (passing `guard_variables`) but do not call
//! `on_variables_changed` again. The rules attached to a node ([`FlowNode::rules`]) are in
//! [`HookContext::node`]. Hooks must be deterministic (no clock, no randomness, no I/O whose
//! answer can change): the durable layer replays steps and expects the same outcome.

use crate::graph::{CompiledProcess, FlowNode};
use serde_json::{Map, Value};

use super::Wait;

/// What a hook sees.
#[derive(Debug, Clone, Copy)]
pub struct HookContext<'a> {
    /// The compiled process.
    pub process: &'a CompiledProcess,
    /// The instance id.
    pub instance_id: &'a str,
    /// The node concerned (`None` for instance start); its `rules` are the attached rules.
    pub node: Option<&'a FlowNode>,
    /// The activation of the node concerned, when there is one.
    pub activation: Option<u64>,
    /// The variables visible at the node (its scope over the enclosing ones).
    pub variables: &'a Map<String, Value>,
}

/// Variable updates a hook asks for (empty: none).
pub type HookUpdates = Map<String, Value>;

/// Callbacks the executor makes while it runs an instance. See the module documentation for
/// when each is called and what an error means.
pub trait ExecutionHooks {
    /// The instance is about to start.
    fn on_start(&self, _ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        Ok(Map::new())
    }

    /// A token entered `ctx.node`.
    fn on_enter(&self, _ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        Ok(Map::new())
    }

    /// `ctx.node` completed; its token is about to move on.
    fn on_leave(&self, _ctx: &HookContext<'_>) -> Result<HookUpdates, String> {
        Ok(Map::new())
    }

    /// `changes` are about to be written (after the script or completion that produced them).
    fn guard_variables(
        &self,
        _ctx: &HookContext<'_>,
        _changes: &Map<String, Value>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// `changes` were written.
    fn on_variables_changed(
        &self,
        _ctx: &HookContext<'_>,
        _changes: &Map<String, Value>,
    ) -> Result<HookUpdates, String> {
        Ok(Map::new())
    }

    /// `wait` is about to be completed with `outputs`; an error refuses the completion.
    fn guard_complete(
        &self,
        _ctx: &HookContext<'_>,
        _wait: &Wait,
        _outputs: &Map<String, Value>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl ExecutionHooks for NoHooks {}
