//! Call activities as child instances: a call activity's wait starts an instance of the called
//! process; the child's end continues (or fails) the caller; a call activity that ends without
//! its child cancels it.
//!
//! Invariant: a child's id is derived from its caller's wait (`<caller>.<activation>`), so that
//! starting it again (after a restart, or twice) finds the one already stored instead of making a
//! second; the child's snapshot names its caller, so that its end reaches the caller again after
//! a restart. The caller only moves on in a turn of its own, after the child's last turn is
//! durable.

use super::api::{ChildIncident, EngineError, InstanceInfo};
use super::record::{decode, CallerLink, HistoryEntry, StoredInstance};
use super::turn::Turn;
use super::versions::Deployed;
use super::Inner;
use crate::executor::{Event, ExecError, InstanceStatus, Wait, WaitKind};
use crate::model::CallBinding;
use std::sync::Arc;

/// How deep call activities may nest (a process calling itself without end stops here with an
/// incident at the call activity that would go deeper).
pub const MAX_CALL_DEPTH: u32 = 32;

/// The id of the child instance a call activity's wait `activation` of `caller` starts.
pub(super) fn child_instance_id(caller: &str, activation: u64) -> String {
    format!("{caller}.{activation}")
}

impl Inner {
    /// Starts the child instance of the call activity's `wait` in `caller`, unless it exists: a
    /// child that ended already (a restart between its end and its caller's turn) reports again.
    pub(super) async fn start_child(self: &Arc<Self>, caller: &str, wait: Wait) {
        let WaitKind::Call {
            process,
            binding,
            variables,
        } = &wait.kind
        else {
            return;
        };
        let id = child_instance_id(caller, wait.activation);
        let (depth, caller_version) = {
            let Ok(live) = self.live_instance(caller) else {
                return;
            };
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            if guard.stored.instance.wait(wait.activation).is_none() {
                // The call activity ended before its child started.
                return;
            }
            let depth = guard.stored.caller.as_ref().map_or(0, |c| c.depth) + 1;
            (depth, guard.deployed.clone())
        };
        let link = CallerLink {
            instance: caller.to_string(),
            activation: wait.activation,
            depth,
        };
        match self.store.instance(&id) {
            Ok(Some(bytes)) => {
                let ended = decode::<StoredInstance>(&bytes, "instance")
                    .map(|child| !child.instance.status().is_active())
                    .unwrap_or(false);
                if ended {
                    self.return_to_caller(&id, link).await;
                }
                return;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(instance = %caller, error = %err, "cannot look up a child instance");
                return;
            }
        }
        let refusal = if depth > MAX_CALL_DEPTH {
            Some(format!(
                "call depth limit {MAX_CALL_DEPTH} reached: `{}` would start a child of `{process}` {depth} calls deep",
                wait.node
            ))
        } else {
            match self.called_version(process, *binding, &caller_version) {
                Ok(deployed) => {
                    let _busy = self.busy();
                    match self.begin_instance_as(
                        deployed,
                        id.clone(),
                        Some(link),
                        None,
                        variables.clone(),
                        None,
                        Vec::new(),
                        Vec::new(),
                    ) {
                        Ok((ack, effects, _)) => match ack.durable().await {
                            Ok(()) => {
                                self.apply_effects(&id, effects);
                                None
                            }
                            Err(err) => Some(format!("starting `{id}` failed: {err}")),
                        },
                        Err(err) => Some(format!("starting the called process failed: {err}")),
                    }
                }
                Err(message) => Some(message),
            }
        };
        if let Some(message) = refusal {
            self.fail_call(caller, wait.activation, message).await;
        }
    }

    /// The deployed version of `process` that a call with `binding` from `caller` starts.
    fn called_version(
        &self,
        process: &str,
        binding: CallBinding,
        caller: &Deployed,
    ) -> Result<Arc<Deployed>, String> {
        let versions = self.versions.read().unwrap_or_else(|e| e.into_inner());
        let found = match binding {
            CallBinding::Latest => versions.latest(process).cloned(),
            CallBinding::Version(version) => versions.get(process, version).cloned(),
            CallBinding::Deployment => versions
                .all()
                .into_iter()
                .rfind(|d| d.process_id == process && d.deployed_ms <= caller.deployed_ms),
        };
        found.ok_or_else(|| match binding {
            CallBinding::Version(version) => {
                format!("called process `{process}` has no deployed version {version}")
            }
            CallBinding::Deployment => format!(
                "called process `{process}` was not deployed when version {} of `{}` was",
                caller.version, caller.process_id
            ),
            CallBinding::Latest => format!("called process `{process}` is not deployed"),
        })
    }

    /// The child instance `child` ended: its caller's call activity completes with the child's
    /// variables (its output mappings apply), takes the child's uncaught BPMN error, or fails with
    /// an incident that names the child.
    pub(super) async fn return_to_caller(self: &Arc<Self>, child: &str, caller: CallerLink) {
        let stored = match self.store.instance(child) {
            Ok(Some(bytes)) => match decode::<StoredInstance>(&bytes, "instance") {
                Ok(stored) => stored,
                Err(err) => {
                    tracing::error!(instance = %child, error = %err, "cannot read a child instance");
                    return;
                }
            },
            Ok(None) => return,
            Err(err) => {
                tracing::error!(instance = %child, error = %err, "cannot read a child instance");
                return;
            }
        };
        let is_call = |w: &Wait| matches!(w.kind, WaitKind::Call { .. });
        let activation = caller.activation;
        let result = match stored.instance.status() {
            InstanceStatus::Completed => {
                let outputs = stored.instance.variables().clone();
                self.drive(
                    &caller.instance,
                    activation,
                    "call",
                    is_call,
                    outputs,
                    Vec::new(),
                    Vec::new(),
                )
                .await
                .map(|_| ())
            }
            InstanceStatus::Failed => match self.uncaught_error(child, &stored) {
                Some(code) => self
                    .drive_with(
                        &caller.instance,
                        activation,
                        "call",
                        is_call,
                        Vec::new(),
                        Vec::new(),
                        move |instance, process, hooks| {
                            instance.throw_error(process, activation, code.as_deref(), hooks)
                        },
                    )
                    .await
                    .map(|_| ()),
                None => {
                    let why = stored
                        .instance
                        .incidents()
                        .last()
                        .map(|i| format!(": {} at {}", i.message, i.at))
                        .unwrap_or_default();
                    self.fail_call(
                        &caller.instance,
                        activation,
                        format!("called instance `{child}` failed{why}"),
                    )
                    .await;
                    Ok(())
                }
            },
            InstanceStatus::Terminated => {
                self.fail_call(
                    &caller.instance,
                    activation,
                    format!("called instance `{child}` was cancelled"),
                )
                .await;
                Ok(())
            }
            InstanceStatus::Running | InstanceStatus::Waiting => Ok(()),
        };
        match result {
            // The caller moved on without its child (cancelled, interrupted): nothing to do.
            Err(EngineError::NoSuchWait { .. })
            | Err(EngineError::UnknownInstance(_))
            | Err(EngineError::Exec(ExecError::NotActive(_))) => {}
            Err(err) => {
                tracing::error!(instance = %caller.instance, child, error = %err, "a call activity could not go on")
            }
            Ok(()) => {}
        }
    }

    /// The code of the BPMN error that ended `child` uncaught (`Some(None)`: an error without a
    /// code), when that is what ended it.
    fn uncaught_error(&self, child: &str, stored: &StoredInstance) -> Option<Option<String>> {
        let incident = stored.instance.incidents().last()?;
        if !incident.message.ends_with("was not caught") {
            return None;
        }
        let history = super::read_history(self.store.as_ref(), child).ok()?;
        history
            .into_iter()
            .rev()
            .find_map(|record| match record.entry {
                HistoryEntry::Executor {
                    event: Event::ErrorThrown { node, code },
                } if node == incident.node => Some(code),
                _ => None,
            })
    }

    /// Fails the call activity `activation` of `caller` with an incident saying `message`.
    async fn fail_call(self: &Arc<Self>, caller: &str, activation: u64, message: String) {
        let result = self
            .drive_with(
                caller,
                activation,
                "call",
                |w| matches!(w.kind, WaitKind::Call { .. }),
                Vec::new(),
                Vec::new(),
                move |instance, process, hooks| {
                    instance.fail_job(process, activation, &message, hooks)
                },
            )
            .await;
        if let Err(err) = result {
            tracing::debug!(instance = %caller, error = %err, "a call activity moved on before its failure");
        }
    }

    /// Cancels the child instance `child` when it still runs.
    pub(super) async fn cancel_child(self: &Arc<Self>, child: &str) {
        match self.cancel_instance(child).await {
            Ok(_)
            | Err(EngineError::UnknownInstance(_))
            | Err(EngineError::Exec(ExecError::NotActive(_))) => {}
            Err(err) => {
                tracing::error!(instance = %child, error = %err, "cancelling a child instance failed")
            }
        }
    }

    /// Cancels an instance: every wait is dropped, its timers and subscriptions removed, its
    /// child instances cancelled.
    pub(super) async fn cancel_instance(
        self: &Arc<Self>,
        instance: &str,
    ) -> Result<super::InstanceInfo, EngineError> {
        let live = self.live_instance(instance)?;
        let _busy = self.busy();
        let (ack, effects, info) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let before = super::open_waits(&guard.stored.instance);
            let previous = guard.stored.instance.status();
            let step = guard.stored.instance.terminate()?;
            let mut turn = Turn::new(instance);
            self.absorb(&mut guard, step, &before, previous, &mut turn);
            let (ack, effects) = self.finish_turn(&mut guard, turn)?;
            (ack, effects, super::InstanceInfo::of(&guard.stored))
        };
        ack.durable().await?;
        self.apply_effects(instance, effects);
        Ok(info)
    }
}

impl super::Engine {
    /// `info` with the incidents of the instances its call activities wait for, and of the
    /// instances those call in turn (ids grow with each level, so the walk ends by the call
    /// depth limit). A child that is not started yet, or not readable, adds nothing.
    pub(super) fn with_child_incidents(&self, mut info: InstanceInfo) -> InstanceInfo {
        for wait in &info.waiting_on {
            let Some(child_id) = &wait.child else {
                continue;
            };
            let Ok(child) = self.instance(child_id) else {
                continue;
            };
            // The child's own incidents (a failed step, or a job out of retries with its wait),
            // then those it shows of its own children, all under this call activity.
            let own = child.incidents.iter().map(|i| (&i.node, &i.message, None));
            let jobs =
                (child.engine_incidents.iter()).map(|i| (&i.node, &i.message, Some(i.activation)));
            let own = own
                .chain(jobs)
                .map(|(node, message, activation)| ChildIncident {
                    call: wait.node.clone(),
                    instance: child.id.clone(),
                    node: node.clone(),
                    message: message.clone(),
                    activation,
                });
            let deeper = child.child_incidents.iter().map(|incident| ChildIncident {
                call: wait.node.clone(),
                ..incident.clone()
            });
            info.child_incidents.extend(own.chain(deeper));
        }
        info
    }
}
