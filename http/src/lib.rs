//! Flowbot's HTTP service (`flowbot serve`): the REST API under `/api/v1`, the admin API under
//! `/admin/v1`, the WebSocket notification feed, Prometheus metrics, the OpenAPI document and the
//! dashboard, over the application layer ([`flowbot_app::App`]).
//!
//! - [`router`]: every route with its middleware (body limit, request metrics, admin token).
//! - [`bindings`]: the routes declared in configuration (`[[routes]]`), served under the
//!   router's own.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the same route declarations as the
//!   router, so the two cannot drift apart.
//! - [`serve`]: runs the router on a listener until a shutdown signal, then drains in-flight
//!   requests and stops the application.
//! - [`webhooks`]: posts the notification log to the configured URLs, at least once, in order.
//! - [`DataDirLock`], [`token::resolve_admin_token`]: what a server takes from its data folder.
//!
//! Invariant: handlers are thin adapters; every state change goes through one service of the
//! application, so the HTTP API and the command line cannot disagree.

pub mod admin;
pub mod api;
pub mod bindings;
pub mod clock;
pub mod dashboard;
pub mod extract;
pub mod forward;
pub mod graph_svg;
pub mod intake;
mod lock;
pub mod metrics;
pub mod problem;
mod router;
pub mod state;
pub mod text_intake;
pub mod token;
pub mod webhooks;
pub mod ws;

pub use lock::DataDirLock;
pub use router::{openapi, router};

use crate::metrics::Metrics;
use crate::state::ServerState;
use crate::token::AdminToken;
use flowbot_app::{App, AppError, FolderWatcher};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The application failed (configuration, store, deployment).
    #[error(transparent)]
    App(#[from] AppError),
    /// The admin token file cannot be read or written.
    #[error("admin token file {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Another server holds the data folder.
    #[error("another flowbot serve is running on the data folder {} (it holds {}); stop it or pass another --data", data_dir.display(), lock_file.display())]
    DataDirInUse {
        /// The data folder.
        data_dir: PathBuf,
        /// Its lock file.
        lock_file: PathBuf,
    },
    /// The lock file of the data folder cannot be created.
    #[error("cannot lock the data folder {}: {source}", data_dir.display())]
    Lock {
        /// The data folder.
        data_dir: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Binds `addr` (`HOST:PORT`; port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `app` on `listener` until `signal` completes, then stops taking connections, lets
/// in-flight requests finish (their turns are committed), ends the WebSocket feeds, the webhook
/// deliveries and the folder watcher, and shuts the application down.
///
/// The workflows and rules folders are watched when a workflows folder is configured.
/// `bindings` are the declared routes ([`bindings::load`]).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    admin_token: AdminToken,
    bindings: flowbot_app::bindings::Bindings,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (stop, shutdown) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(ServerState {
        app: app.clone(),
        admin_token,
        metrics: metrics.clone(),
        max_body_bytes: app.config().http.max_body_bytes,
        bindings,
        shutdown: shutdown.clone(),
    });
    let webhooks = webhooks::start(&app, &metrics, &shutdown);
    let counting = tokio::spawn(metrics::count_engine_events(
        app.clone(),
        metrics,
        shutdown.clone(),
    ));
    let watcher = match app.config().workflows {
        Some(_) => Some(FolderWatcher::start(&app)?),
        None => None,
    };
    let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let outcome = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down: draining in-flight requests");
            let _ = stop.send(true);
        })
        .await;
    drop(watcher);
    let _ = counting.await;
    for delivery in webhooks {
        let _ = delivery.await;
    }
    app.shutdown().await;
    tracing::info!("stopped");
    outcome.map_err(ServeError::Io)
}
