//! Hot reload: watches the rules folder and reloads the [`RuleEngine`] when a `.rhai` file is
//! created, changed or removed. A file that fails to compile is rejected (logged and listed in
//! [`RuleEngine::errors`]) and its previous version keeps serving.

use super::error::RuleError;
use super::ruleset::RuleEngine;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::sync::Arc;

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
        && event.paths.iter().any(|p| p.extension().is_some_and(|e| e == "rhai") || p.is_dir())
}

impl RuleWatcher {
    /// Starts watching `engine`'s rules folder (recursively).
    pub fn start(engine: Arc<RuleEngine>) -> Result<Self, RuleError> {
        let root = engine.root().to_path_buf();
        let io = |e: notify::Error| RuleError::Io { path: root.clone(), message: format!("cannot watch the rules folder: {e}") };
        let reloading = engine.clone();
        let mut watcher = notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) if concerns_rules(&event) => {
                if let Err(e) = reloading.reload() {
                    tracing::error!(target: "flowbot::rules", "reload failed: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(target: "flowbot::rules", "rules folder watcher: {e}"),
        })
        .map_err(io)?;
        watcher.watch(engine.root(), RecursiveMode::Recursive).map_err(io)?;
        tracing::info!(target: "flowbot::rules", folder = %engine.root().display(), "watching rules for changes");
        Ok(Self { _watcher: watcher })
    }
}
