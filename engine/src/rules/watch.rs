//! Hot reload: watches the rules folder and reloads the [`RuleEngine`] when a `.rhai` file is
//! created, changed or removed. A file that fails to compile is rejected (logged and listed in
//! [`RuleEngine::errors`]) and its previous version keeps serving.

use super::error::RuleError;
use super::ruleset::RuleEngine;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// How long the folder must be quiet before a reload: editors that truncate and then write a
/// file produce several events, and a reload in between would see a half-written file.
const SETTLE: Duration = Duration::from_millis(150);

/// Keeps the rules folder watched while it lives; dropping it stops the watching.
pub struct RuleWatcher {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for RuleWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleWatcher").finish_non_exhaustive()
    }
}

fn concerns_rules(event: &Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event
            .paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "rhai") || p.is_dir())
}

impl RuleWatcher {
    /// Starts watching `engine`'s rules folder (recursively).
    pub fn start(engine: Arc<RuleEngine>) -> Result<Self, RuleError> {
        let root = engine.root().to_path_buf();
        let io = |e: notify::Error| RuleError::Io {
            path: root.clone(),
            message: format!("cannot watch the rules folder: {e}"),
        };
        let (changed, changes) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<Event>| match result {
                Ok(event) if concerns_rules(&event) => {
                    // The reloading thread is gone only when the watcher is being dropped.
                    let _ = changed.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(target: "flowbot::rules", "rules folder watcher: {e}"),
            })
            .map_err(io)?;
        let reloading = engine.clone();
        std::thread::Builder::new()
            .name("flowbot-rules-reload".into())
            .spawn(move || reload_on_changes(&reloading, &changes))
            .map_err(|e| RuleError::Io {
                path: engine.root().to_path_buf(),
                message: format!("cannot start the reload thread: {e}"),
            })?;
        watcher
            .watch(engine.root(), RecursiveMode::Recursive)
            .map_err(io)?;
        tracing::info!(target: "flowbot::rules", folder = %engine.root().display(), "watching rules for changes");
        Ok(Self { _watcher: watcher })
    }
}

/// Reloads once per burst of changes, until the watcher (the sender) is dropped.
fn reload_on_changes(engine: &RuleEngine, changes: &mpsc::Receiver<()>) {
    while changes.recv().is_ok() {
        loop {
            match changes.recv_timeout(SETTLE) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        if let Err(e) = engine.reload() {
            tracing::error!(target: "flowbot::rules", "reload failed: {e}");
        }
    }
}
