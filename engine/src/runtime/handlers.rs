//! Service-task handlers: async functions registered by name, called with an idempotency key.

use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler gets for one call.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The instance the job belongs to.
    pub instance: String,
    /// The service task's node id.
    pub node: String,
    /// The activation of the node (unique within the instance).
    pub activation: u64,
    /// `instance/node/activation`: the same key on every retry and after every restart, so a
    /// handler can make its effect exactly-once.
    pub idempotency_key: String,
    /// The instance variables when the call was made.
    pub variables: Map<String, Value>,
    /// 1 for the first call, 2 for the first retry, ...
    pub attempt: u32,
}

/// Why a handler call failed, and what the engine does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
    outcome: HandlerFailure,
}

/// What the engine does with a failed handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerFailure {
    /// Call again, as the task's retry policy allows; an incident when the retries run out.
    Retry,
    /// Do not call again: an incident at once (a permanent failure such as a rejected request).
    Incident,
    /// A business error: throws the BPMN error with this code on the service task, where an
    /// error boundary event (or an enclosing one) catches it; uncaught, the instance fails.
    BpmnError {
        /// The error code the boundary events match.
        code: String,
    },
}

impl HandlerError {
    /// A failure worth retrying (a timeout, a service that is down).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            outcome: HandlerFailure::Retry,
        }
    }

    /// A failure that retrying cannot fix: an incident at once.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            outcome: HandlerFailure::Incident,
        }
    }

    /// A business error: throws the BPMN error `code` on the service task.
    pub fn bpmn_error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            outcome: HandlerFailure::BpmnError { code: code.into() },
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What the engine does about it.
    pub fn outcome(&self) -> &HandlerFailure {
        &self.outcome
    }
}

/// The future a handler returns: the variables to write back, or a failure.
pub type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static>>;

/// A registered handler.
pub type Handler = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync + 'static>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Map<String, Value>, HandlerError>> + Send + 'static,
{
    Arc::new(move |ctx| Box::pin(f(ctx)))
}
