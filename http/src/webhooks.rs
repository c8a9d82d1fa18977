//! Webhooks (`[[webhooks]]` in the configuration): the server posts each entry of the
//! notification log to a URL, one JSON body per entry (the WebSocket feed's `NotificationView`),
//! with the headers `Flowbot-Seq` (the entry's number) and `Flowbot-Webhook` (the webhook's name).
//!
//! Invariants:
//! - At least once, in number order: each webhook is a durable reader of the log (its cursor is
//!   stored under `webhook:<name>`) whose cursor moves only past entries its URL answered with a
//!   2xx status. A crash or restart repeats at most the entries after the stored cursor, so a
//!   receiver de-duplicates by `Flowbot-Seq`.
//! - Only durable entries are sent (the engine's watermark), as on the WebSocket feed.
//! - A failing delivery (connection refused, timeout, a status outside 2xx) is tried again after
//!   a wait that doubles from half a second up to the webhook's `max_backoff_ms`, until it
//!   succeeds; the entries behind it wait, so the order holds. Webhooks never hold each other up,
//!   nor the engine: a turn never waits for a delivery.
//! - A webhook seen for the first time starts with the entries that become durable from then on
//!   (its cursor is stored at once), not with the whole retained log.
//! - Delivery stops when the server shuts down; an entry in flight then is sent again at the
//!   next start.

use crate::metrics::Metrics;
use flowbot_app::config::WebhookConfig;
use flowbot_app::{App, AppError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Entries read from the log per store call.
const BATCH: usize = 256;
/// The first wait after a failed delivery; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The delivery tasks of every configured webhook; they end when the server's shutdown signal
/// turns true.
pub fn start(
    app: &Arc<App>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    app.config()
        .webhooks
        .iter()
        .map(|hook| {
            tracing::info!(webhook = %hook.name, url = %hook.url, receiver = hook.receiver.as_deref().unwrap_or("*"), "webhook delivering");
            tokio::spawn(deliver(
                app.clone(),
                hook.clone(),
                metrics.clone(),
                shutdown.clone(),
            ))
        })
        .collect()
}

/// Delivers the log to one webhook until shutdown.
async fn deliver(
    app: Arc<App>,
    hook: WebhookConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let reader = format!("webhook:{}", hook.name);
    let mut watermark = app.engine().notification_watermark();
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(hook.timeout_ms.max(1)))
        .redirects(0)
        .build();
    let mut backoff = FIRST_BACKOFF;
    let max_backoff = Duration::from_millis(hook.max_backoff_ms).max(FIRST_BACKOFF);
    // Entries up to `cursor` are delivered (or not for this receiver).
    let mut cursor = loop {
        match first_cursor(&app, &reader).await {
            Ok(cursor) => break cursor,
            Err(error) => {
                tracing::error!(webhook = %hook.name, "cannot read the webhook's cursor: {error}");
                if !pause(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    };
    backoff = FIRST_BACKOFF;
    loop {
        let durable = *watermark.borrow_and_update();
        let mut failed = false;
        while cursor < durable && !failed {
            let batch = match app.notifications_after(cursor, hook.receiver.as_deref(), BATCH) {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(webhook = %hook.name, "cannot read the notification log: {error}");
                    failed = true;
                    break;
                }
            };
            let delivered_before = cursor;
            for entry in &batch {
                match post(&agent, &hook, entry.seq, entry).await {
                    Ok(()) => {
                        metrics.webhook_delivery(&hook.name, true);
                        cursor = entry.seq;
                        backoff = FIRST_BACKOFF;
                    }
                    Err(reason) => {
                        metrics.webhook_delivery(&hook.name, false);
                        tracing::warn!(webhook = %hook.name, seq = entry.seq, "delivery failed, trying again in {} ms: {reason}", backoff.as_millis());
                        failed = true;
                        break;
                    }
                }
            }
            if !failed && batch.len() < BATCH {
                // Every entry up to `durable` for this receiver has been read.
                cursor = cursor.max(durable);
            }
            if cursor > delivered_before {
                if let Err(error) = app.engine().store_reader_cursor(&reader, cursor).await {
                    tracing::error!(webhook = %hook.name, "cannot store the webhook's cursor: {error}");
                }
            }
        }
        if failed {
            if !pause(&mut shutdown, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(max_backoff);
            continue;
        }
        tokio::select! {
            changed = watermark.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// The stored cursor of `reader`, or, for a webhook seen for the first time, the current
/// watermark, stored before it is used.
async fn first_cursor(app: &App, reader: &str) -> Result<u64, AppError> {
    let engine = app.engine();
    if let Some(cursor) = engine.reader_cursor(reader)? {
        return Ok(cursor);
    }
    let now = *engine.notification_watermark().borrow();
    engine.store_reader_cursor(reader, now).await?;
    Ok(now)
}

/// Waits `wait` unless the server shuts down first; false when it does.
async fn pause(shutdown: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}

/// Posts one entry; `Err` says why it does not count as delivered.
async fn post(
    agent: &ureq::Agent,
    hook: &WebhookConfig,
    seq: u64,
    entry: &impl serde::Serialize,
) -> Result<(), String> {
    let body = serde_json::to_string(entry).map_err(|e| e.to_string())?;
    let mut request = agent
        .post(&hook.url)
        .set("Content-Type", "application/json")
        .set("Flowbot-Seq", &seq.to_string())
        .set("Flowbot-Webhook", &hook.name);
    for (name, value) in &hook.headers {
        request = request.set(name, value);
    }
    // ureq blocks: the request runs on tokio's blocking pool, never on an async worker.
    tokio::task::spawn_blocking(move || match request.send_string(&body) {
        Ok(response) if (200..300).contains(&response.status()) => Ok(()),
        Ok(response) => Err(format!("answered {}", response.status())),
        Err(ureq::Error::Status(status, _)) => Err(format!("answered {status}")),
        Err(ureq::Error::Transport(transport)) => Err(transport.to_string()),
    })
    .await
    .map_err(|e| format!("the delivery stopped: {e}"))?
}
