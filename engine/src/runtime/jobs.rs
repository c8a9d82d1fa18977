//! Jobs: service-task handlers and language-model steps, with retries, backoff and incidents.
//!
//! Invariant: a handler runs at least once per job (again after a crash when no completion is
//! recorded); its completion is recorded under the idempotency key in the completing turn, so it
//! is applied exactly once. Failed calls and their next due time are in the snapshot, so a
//! restart keeps the retry budget and the backoff.

use super::api::EngineError;
use super::handlers::{Handler, HandlerFailure, JobContext};
use super::llm_step;
use super::record::{encode, EngineIncident, HistoryEntry, JobAttempts};
use super::turn::Turn;
use super::versions::Deployed;
use super::Inner;
use crate::executor::{ExecError, Wait, WaitKind};
use crate::llm::{LlmError, INVALID_OUTPUT_ERROR};
use crate::model::{LlmTask, RetryPolicy};
use crate::store::Table;
use serde_json::Map;
use serde_json::Value;
use std::sync::Arc;

/// How a job ended: its outputs, or a BPMN error thrown on its task.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) enum JobOutcome {
    /// Completed with these variables.
    Completed(Map<String, Value>),
    /// The handler (or an LLM step's invalid output) threw the business error `code`, with
    /// `variables` for the path that catches it.
    ErrorThrown {
        /// The BPMN error code.
        code: String,
        /// Written to the process scope before the error is thrown.
        variables: Map<String, Value>,
    },
}

impl Inner {
    /// Runs a job's handler with retries; completes the wait exactly once.
    pub(super) async fn run_job(self: &Arc<Self>, instance: &str, wait: Wait) {
        let handler_name = match &wait.kind {
            WaitKind::Job { handler } => handler.clone(),
            // Auto-completed waits resumed after a restart (user tasks, receive tasks).
            WaitKind::User { .. } | WaitKind::Message { .. } => None,
            WaitKind::Llm { task } => {
                let task = task.clone();
                self.run_llm(instance, wait, &task).await;
                return;
            }
            _ => return,
        };
        let handler = self.handler_for(handler_name.as_deref()).cloned();
        let Some(handler) = handler else {
            if let Some(auto) = &self.options.auto_complete {
                let outputs = auto.outputs.get(&wait.node).cloned().unwrap_or_default();
                self.complete_job(instance, &wait, JobOutcome::Completed(outputs), Vec::new())
                    .await;
            } else {
                let message = format!(
                    "no handler is registered for `{}`",
                    handler_name.unwrap_or_default()
                );
                self.raise_incident(instance, &wait, message, 0).await;
            }
            return;
        };
        let policy = self.retry_policy(instance, &wait.node);
        let mut attempt = self.resume_attempts(instance, wait.activation).await;
        loop {
            let Some(variables) = self.variables_while_waiting(instance, wait.activation) else {
                return;
            };
            let ctx = JobContext {
                instance: instance.to_string(),
                node: wait.node.clone(),
                activation: wait.activation,
                idempotency_key: wait.idempotency_key.clone(),
                variables,
                attempt,
            };
            match handler(ctx).await {
                Ok(outputs) => {
                    self.complete_job(instance, &wait, JobOutcome::Completed(outputs), Vec::new())
                        .await;
                    return;
                }
                Err(err) => {
                    let retryable = match err.outcome() {
                        HandlerFailure::BpmnError { code } => {
                            let record = HistoryEntry::JobErrorThrown {
                                node: wait.node.clone(),
                                activation: wait.activation,
                                code: code.clone(),
                                message: err.message().to_string(),
                            };
                            let outcome = JobOutcome::ErrorThrown {
                                code: code.clone(),
                                variables: Map::new(),
                            };
                            self.complete_job(instance, &wait, outcome, vec![record])
                                .await;
                            return;
                        }
                        HandlerFailure::Retry => true,
                        HandlerFailure::Incident => false,
                    };
                    let retry_at = (retryable && attempt <= policy.retries)
                        .then(|| self.clock.now_ms() + backoff_ms(&policy, attempt));
                    let error = err.message().to_string();
                    if !self
                        .after_failed_call(instance, &wait, attempt, error, retry_at, "handler")
                        .await
                    {
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// After call number `attempt` of a job or LLM step (`what`) failed with `error`: records the
    /// failure, then sleeps until `retry_at` and returns `true` (call again), or, without a retry
    /// left, raises an incident and returns `false`.
    pub(super) async fn after_failed_call(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        attempt: u32,
        error: String,
        retry_at: Option<u64>,
        what: &str,
    ) -> bool {
        tracing::warn!(instance, node = %wait.node, attempt, %error, "{what} failed");
        let entry = HistoryEntry::JobFailed {
            node: wait.node.clone(),
            activation: wait.activation,
            attempt,
            error: error.clone(),
            retry_at_ms: retry_at,
        };
        if let Err(e) = self
            .record_failure(instance, wait.activation, attempt, retry_at, entry)
            .await
        {
            tracing::error!(instance, error = %e, "recording a {what} failure failed");
        }
        match retry_at {
            Some(at) => {
                self.clock.sleep_until(at).await;
                true
            }
            None => {
                self.raise_incident(instance, wait, error, attempt).await;
                false
            }
        }
    }

    /// The instance's variables while the wait `activation` is still open; `None` once the wait was
    /// completed or cancelled meanwhile, or the instance is gone (the caller then stops).
    pub(super) fn variables_while_waiting(
        &self,
        instance: &str,
        activation: u64,
    ) -> Option<Map<String, Value>> {
        let live = self.live_instance(instance).ok()?;
        let guard = live.lock().unwrap_or_else(|e| e.into_inner());
        guard.stored.instance.wait(activation)?;
        Some(guard.stored.instance.variables().clone())
    }

    /// Answers an LLM step with the generator (off the async threads), with the retries of the
    /// task's own retry policy (none when it declares none); the output and the call's record go
    /// into the completing turn. A task that cannot be rendered, or a request the generator
    /// rejects, becomes an incident at once. Output that is not valid, with no retry left, is
    /// thrown as `LLM_INVALID_OUTPUT` when an error boundary on the step catches it (with the
    /// fields completed and `llm_error`), else it becomes an incident too.
    pub(super) async fn run_llm(self: &Arc<Self>, instance: &str, wait: Wait, task: &LlmTask) {
        let Some(generator) = self.generator.clone() else {
            return;
        };
        let policy = self
            .declared_retry_policy(instance, &wait.node)
            .unwrap_or(RetryPolicy {
                retries: 0,
                initial_delay_ms: 0,
                max_delay_ms: 0,
            });
        let mut attempt = self.resume_attempts(instance, wait.activation).await;
        loop {
            let Some(variables) = self.variables_while_waiting(instance, wait.activation) else {
                return;
            };
            let request = match llm_step::build_request(task, &variables) {
                Ok(request) => request,
                Err(message) => {
                    self.raise_incident(instance, &wait, message, attempt).await;
                    return;
                }
            };
            let call = {
                let generator = generator.clone();
                let request = request.clone();
                tokio::task::spawn_blocking(move || generator.generate(&request)).await
            };
            let result = call
                .unwrap_or_else(|e| Err(LlmError::Backend(format!("the generator stopped: {e}"))));
            match result {
                Ok(response) => {
                    let outputs = llm_step::output_variables(task, &response);
                    tracing::info!(
                        instance,
                        node = %wait.node,
                        prompt_tokens = response.prompt_tokens,
                        completion_tokens = response.completion_tokens,
                        elapsed_ms = response.elapsed.as_millis() as u64,
                        "LLM step answered"
                    );
                    let record = HistoryEntry::llm_called(&wait, attempt, request.prompt, response);
                    self.complete_job(
                        instance,
                        &wait,
                        JobOutcome::Completed(outputs),
                        vec![record],
                    )
                    .await;
                    return;
                }
                Err(err) => {
                    let retryable =
                        matches!(err, LlmError::Backend(_) | LlmError::InvalidOutput { .. });
                    let retry_at = (retryable && attempt <= policy.retries)
                        .then(|| self.clock.now_ms() + backoff_ms(&policy, attempt));
                    if let LlmError::InvalidOutput { reason, output } = &err {
                        if retry_at.is_none()
                            && self.catches_error(instance, &wait.node, INVALID_OUTPUT_ERROR)
                        {
                            let record = HistoryEntry::JobErrorThrown {
                                node: wait.node.clone(),
                                activation: wait.activation,
                                code: INVALID_OUTPUT_ERROR.to_string(),
                                message: err.to_string(),
                            };
                            let outcome = JobOutcome::ErrorThrown {
                                code: INVALID_OUTPUT_ERROR.to_string(),
                                variables: llm_step::invalid_output_variables(
                                    task, &wait.node, reason, output,
                                ),
                            };
                            self.complete_job(instance, &wait, outcome, vec![record])
                                .await;
                            return;
                        }
                    }
                    if !self
                        .after_failed_call(
                            instance,
                            &wait,
                            attempt,
                            err.to_string(),
                            retry_at,
                            "LLM step",
                        )
                        .await
                    {
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Whether an error boundary on the instance's node `node` catches the error `code`.
    fn catches_error(&self, instance: &str, node: &str, code: &str) -> bool {
        self.live_deployed(instance).is_some_and(|deployed| {
            let process = &deployed.process;
            process
                .node_index(node)
                .and_then(|index| process.error_boundary(index, Some(code)))
                .is_some()
        })
    }

    /// The retry policy the node declares, if any.
    pub(super) fn declared_retry_policy(&self, instance: &str, node: &str) -> Option<RetryPolicy> {
        self.live_deployed(instance)
            .and_then(|deployed| deployed.retries.get(node).cloned())
    }

    /// The deployed version a live instance runs.
    fn live_deployed(&self, instance: &str) -> Option<Arc<Deployed>> {
        let live = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned()?;
        let deployed = live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .deployed
            .clone();
        Some(deployed)
    }

    /// The handler that runs jobs naming `name`: the registered one, else the fallback.
    pub(super) fn handler_for(&self, name: Option<&str>) -> Option<&Handler> {
        name.and_then(|n| self.handlers.get(n))
            .or(self.fallback.as_ref())
    }

    pub(super) fn retry_policy(&self, instance: &str, node: &str) -> RetryPolicy {
        self.declared_retry_policy(instance, node)
            .unwrap_or_else(|| self.options.default_retry.clone())
    }

    /// Ends a job (or LLM step) with its outcome and the history of the call, recording the
    /// completion under the idempotency key in the same turn.
    ///
    /// A completion is applied at most once without reading the completion records first: the
    /// turn that records a completion also removes the job's wait, activations are never reused
    /// within an instance, and the turn is applied under the instance's lock only while the wait
    /// is open. So a second delivery (a job re-run after a restart or a takeover, a worker's
    /// retry) finds no wait and changes nothing. Reading the record here cost a store read per job
    /// (on PostgreSQL a wait for the pending group and a round trip).
    pub(super) async fn complete_job(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        outcome: JobOutcome,
        history: Vec<HistoryEntry>,
    ) {
        let key = wait.idempotency_key.clone().into_bytes();
        let changes = vec![(Table::Completions, key, Some(encode(&outcome)))];
        let activation = wait.activation;
        let result = match outcome {
            JobOutcome::Completed(outputs) => {
                self.drive(
                    instance,
                    activation,
                    "job",
                    |_| true,
                    outputs,
                    history,
                    changes,
                )
                .await
            }
            JobOutcome::ErrorThrown { code, variables } => {
                self.drive_with(
                    instance,
                    activation,
                    "job",
                    |_| true,
                    history,
                    changes,
                    |inst, process, hooks| {
                        inst.throw_error_with(process, activation, Some(&code), variables, hooks)
                    },
                )
                .await
            }
        };
        match result {
            Ok(_) => {}
            // Completed before (or the wait ended otherwise: a boundary event, a cancel).
            Err(EngineError::NoSuchWait { .. } | EngineError::Exec(ExecError::NotActive(_))) => {
                tracing::debug!(instance, key = %wait.idempotency_key, "the job's wait is gone; completion ignored");
            }
            Err(EngineError::Exec(ExecError::Rejected { node, reason })) => {
                self.raise_incident(
                    instance,
                    wait,
                    format!("completion of `{node}` refused: {reason}"),
                    1,
                )
                .await;
            }
            Err(err) => tracing::error!(instance, error = %err, "completing a job failed"),
        }
    }

    pub(super) async fn raise_incident(
        self: &Arc<Self>,
        instance: &str,
        wait: &Wait,
        message: String,
        attempts: u32,
    ) {
        let Ok(live) = self.live_instance(instance) else {
            return;
        };
        let result = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let incident = EngineIncident {
                activation: wait.activation,
                node: wait.node.clone(),
                message,
                attempts,
            };
            guard
                .stored
                .incidents
                .retain(|i| i.activation != wait.activation);
            guard.stored.incidents.push(incident.clone());
            let mut turn = Turn::new(instance);
            turn.history.push(HistoryEntry::IncidentRaised { incident });
            self.finish_turn(&mut guard, turn)
        };
        match result {
            Ok((ack, effects)) => {
                if let Err(err) = ack.durable().await {
                    tracing::error!(instance, error = %err, "recording an incident failed");
                    return;
                }
                self.apply_effects(instance, effects);
            }
            Err(err) => tracing::error!(instance, error = %err, "recording an incident failed"),
        }
    }

    /// Records the `failed`-th failed call of the job `activation` with its history entry, and
    /// when the next call is due, in one turn: a restart resumes the count and the backoff.
    pub(super) async fn record_failure(
        self: &Arc<Self>,
        instance: &str,
        activation: u64,
        failed: u32,
        retry_at_ms: Option<u64>,
        entry: HistoryEntry,
    ) -> Result<(), EngineError> {
        let live = self.live_instance(instance)?;
        let (ack, effects) = {
            let mut guard = live.lock().unwrap_or_else(|e| e.into_inner());
            let attempts = JobAttempts {
                activation,
                failed,
                retry_at_ms: retry_at_ms.unwrap_or_else(|| self.clock.now_ms()),
            };
            guard.stored.attempts.retain(|a| a.activation != activation);
            guard.stored.attempts.push(attempts);
            let mut turn = Turn::new(instance);
            turn.history = vec![entry];
            self.finish_turn(&mut guard, turn)?
        };
        ack.durable().await?;
        self.apply_effects(instance, effects);
        Ok(())
    }

    /// The number of the next call of the job `activation`: 1, or after a restart one more than
    /// the failed calls recorded; waits first until a recorded retry is due.
    pub(super) async fn resume_attempts(&self, instance: &str, activation: u64) -> u32 {
        let recorded = self.live_instance(instance).ok().and_then(|live| {
            let guard = live.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .stored
                .attempts
                .iter()
                .find(|a| a.activation == activation)
                .copied()
        });
        match recorded {
            Some(recorded) => {
                if recorded.retry_at_ms > self.clock.now_ms() {
                    self.clock.sleep_until(recorded.retry_at_ms).await;
                }
                recorded.failed.saturating_add(1)
            }
            None => 1,
        }
    }
}

/// Exponential backoff: `initial × 2^(attempt-1)`, at most `max`.
pub(super) fn backoff_ms(policy: &RetryPolicy, attempt: u32) -> u64 {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    policy
        .initial_delay_ms
        .saturating_mul(factor)
        .min(policy.max_delay_ms.max(policy.initial_delay_ms))
}
