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
use flowbot_app::view::NotificationView;
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

/// One webhook's delivery: what it posts with and to.
struct Webhook {
    app: Arc<App>,
    hook: WebhookConfig,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
    /// Its cursor's name among the engine's durable readers.
    reader: String,
}

/// How often a node that does not coordinate looks whether it does now (and a coordinator
/// whether it still does).
const COORDINATION_CHECK: Duration = Duration::from_secs(1);

/// Delivers the log to one webhook until shutdown, while this node coordinates.
async fn deliver(
    app: Arc<App>,
    hook: WebhookConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let webhook = Webhook {
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_millis(hook.timeout_ms.max(1)))
            .redirects(0)
            .build(),
        reader: format!("webhook:{}", hook.name),
        app,
        hook,
        metrics,
    };
    let mut watermark = webhook.app.engine().notification_watermark();
    let max_backoff = Duration::from_millis(webhook.hook.max_backoff_ms).max(FIRST_BACKOFF);
    loop {
        // Of several nodes on one database, the coordinator delivers; a node that takes the duty
        // over goes on from the cursor its predecessor stored (docs/cluster.md).
        if !webhook.app.engine().coordinates() {
            if !pause(&mut shutdown, COORDINATION_CHECK).await {
                return;
            }
            continue;
        }
        let mut backoff = FIRST_BACKOFF;
        // Entries up to `cursor` are delivered (or not for this receiver).
        let mut cursor = loop {
            match first_cursor(&webhook.app, &webhook.reader).await {
                Ok(cursor) => break cursor,
                Err(error) => {
                    tracing::error!(webhook = %webhook.hook.name, "cannot read the webhook's cursor: {error}");
                    if !pause(&mut shutdown, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(max_backoff);
                }
            }
        };
        backoff = FIRST_BACKOFF;
        while webhook.app.engine().coordinates() {
            let durable = *watermark.borrow_and_update();
            let before = cursor;
            let caught_up = webhook.catch_up(&mut cursor, durable).await;
            if cursor > before {
                // A delivery went through: the next failure waits the shortest time again.
                backoff = FIRST_BACKOFF;
            }
            if caught_up {
                tokio::select! {
                    changed = watermark.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                    // A coordinator that loses the duty stops within this time.
                    _ = tokio::time::sleep(COORDINATION_CHECK) => {}
                }
            } else {
                tracing::warn!(webhook = %webhook.hook.name, "trying again in {} ms", backoff.as_millis());
                if !pause(&mut shutdown, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

impl Webhook {
    /// Posts the entries after `cursor` up to `durable`, in order, moving and storing `cursor`
    /// as they are delivered; false when a post or a read failed (the rest waits for the next
    /// try).
    async fn catch_up(&self, cursor: &mut u64, durable: u64) -> bool {
        while *cursor < durable {
            let read = self
                .app
                .notifications_after(*cursor, self.hook.receiver.as_deref(), BATCH);
            let batch = match read {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(webhook = %self.hook.name, "cannot read the notification log: {error}");
                    return false;
                }
            };
            let before = *cursor;
            let mut delivered_all = true;
            for entry in &batch {
                let posted = self.post(entry).await;
                self.metrics
                    .webhook_delivery(&self.hook.name, posted.is_ok());
                if let Err(reason) = posted {
                    tracing::warn!(webhook = %self.hook.name, seq = entry.seq, "delivery failed: {reason}");
                    delivered_all = false;
                    break;
                }
                *cursor = entry.seq;
            }
            if delivered_all && batch.len() < BATCH {
                // Every entry up to `durable` for this receiver has been read.
                *cursor = (*cursor).max(durable);
            }
            if *cursor > before {
                let stored = self
                    .app
                    .engine()
                    .store_reader_cursor(&self.reader, *cursor)
                    .await;
                if let Err(error) = stored {
                    tracing::error!(webhook = %self.hook.name, "cannot store the webhook's cursor: {error}");
                }
            }
            if !delivered_all {
                return false;
            }
        }
        true
    }

    /// Posts one entry; `Err` says why it does not count as delivered.
    async fn post(&self, entry: &NotificationView) -> Result<(), String> {
        let body = serde_json::to_string(entry).map_err(|e| e.to_string())?;
        let mut request = self
            .agent
            .post(&self.hook.url)
            .set("Content-Type", "application/json")
            .set("Flowbot-Seq", &entry.seq.to_string())
            .set("Flowbot-Webhook", &self.hook.name);
        for (name, value) in &self.hook.headers {
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
