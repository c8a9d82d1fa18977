//! `GET /ws/notifications?receiver=R&after=SEQ`: the durable notification log as a WebSocket
//! stream, one JSON text message per entry (`seq`, `receiver`, `sender`, `content`, `instance`,
//! `time`, `kind`).
//!
//! Invariants:
//! - Only durable entries are sent (the engine's watermark), in `seq` order, each once per
//!   connection. A client that reconnects with `after=` the last `seq` it got receives exactly
//!   the entries it missed, across disconnects and server restarts (the log is in the store).
//! - Without `after` the stream starts at the entries that become durable from now on.
//! - A slow client slows only its own connection (sending awaits its socket); the feed ends
//!   when the client closes, the engine stops or the server shuts down.

use crate::extract::{parse_param, QueryParams};
use crate::problem::ApiError;
use crate::state::ServerState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Entries read per store call.
const BATCH: usize = 256;

/// Query of the feed.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Only entries for this receiver (default: every receiver).
    pub receiver: Option<String>,
    /// Entries after this number (default: only entries from now on).
    pub after: Option<String>,
}

/// `GET /ws/notifications`: upgrades to the WebSocket feed.
#[utoipa::path(get, path = "/ws/notifications", tag = "events", params(FeedQuery),
    responses(
        (status = 101, description = "WebSocket: one JSON text message per notification-log entry (NotificationView)"),
        (status = 400, description = "A bad parameter, or not a WebSocket request", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn notifications(
    State(state): State<Arc<ServerState>>,
    QueryParams(query): QueryParams<FeedQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::invalid(
            None,
            format!(
                "this route speaks WebSocket only: {}",
                rejection.body_text()
            ),
        )
    })?;
    let after = match parse_param::<u64>("after", query.after.as_deref(), "a number")? {
        Some(after) => after,
        None => *state.app.engine().notification_watermark().borrow(),
    };
    let receiver = query.receiver.filter(|r| !r.is_empty());
    Ok(upgrade.on_upgrade(move |socket| feed(state, socket, receiver, after)))
}

/// Streams entries after `after` until the client, the engine or the server stops.
async fn feed(
    state: Arc<ServerState>,
    mut socket: WebSocket,
    receiver: Option<String>,
    after: u64,
) {
    let mut watermark = state.app.engine().notification_watermark();
    let mut shutdown = state.shutdown.clone();
    // Entries up to `scanned` have been sent or do not concern this receiver.
    let mut scanned = after;
    loop {
        let durable = *watermark.borrow_and_update();
        loop {
            let batch = match state
                .app
                .notifications_after(scanned, receiver.as_deref(), BATCH)
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!("notification feed: {error}");
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            };
            for entry in &batch {
                let Ok(text) = serde_json::to_string(entry) else {
                    continue;
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                scanned = entry.seq;
            }
            if batch.len() < BATCH {
                break;
            }
        }
        // Every entry up to `durable` for this receiver has been read.
        scanned = scanned.max(durable);
        tokio::select! {
            changed = watermark.changed() => {
                if changed.is_err() {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = shutdown.changed() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
    }
}
