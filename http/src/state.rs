//! What every handler shares: the application, the admin token, the metrics, the body limit
//! and the shutdown signal (long-lived connections such as the WebSocket feed end on it).

use crate::metrics::Metrics;
use crate::token::AdminToken;
use flowbot_app::App;
use std::sync::Arc;
use tokio::sync::watch;

/// The state of a running server.
#[derive(Debug)]
pub struct ServerState {
    /// The application the routes adapt.
    pub app: Arc<App>,
    /// The admin API's token.
    pub admin_token: AdminToken,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Turns true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}
