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

/// Why a handler call failed; the engine retries it according to the task's retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
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
