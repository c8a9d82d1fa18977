//! Hot reload: the workflows and rules folders are watched; after a burst of changes settles,
//! [`App::reload`] deploys what changed and reloads the rules.
//!
//! Invariants: a file that checks clean is deployed as a new version (running instances stay on
//! theirs); a broken file is refused with its diagnostics and the version deployed before keeps
//! serving; a burst of events (an editor's truncate-and-write) causes one reload, after it settled.

use crate::app::{App, ReloadReport};
use crate::error::AppError;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// How long the folders must be quiet before a reload.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Watches an application's folders while it lives; dropping it stops the watching.
pub struct FolderWatcher {
    _watcher: RecommendedWatcher,
    reports: broadcast::Sender<ReloadReport>,
}

impl std::fmt::Debug for FolderWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderWatcher").finish_non_exhaustive()
    }
}

impl FolderWatcher {
    /// Starts watching the workflows and rules folders of `app` (inside a tokio runtime).
    pub fn start(app: &Arc<App>) -> Result<Self, AppError> {
        let folders: Vec<_> = app
            .config()
            .workflows
            .iter()
            .cloned()
            .chain(app.rules_folder().map(|p| p.to_path_buf()))
            .collect();
        let (changed, changes) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<Event>| match result {
                Ok(event) if concerns_sources(&event) => {
                    // The reloading task is gone only when the watcher is being dropped.
                    let _ = changed.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("folder watcher: {e}"),
            })
            .map_err(|e| AppError::config(format!("cannot watch the folders: {e}")))?;
        for folder in &folders {
            watcher
                .watch(folder, RecursiveMode::Recursive)
                .map_err(|e| AppError::config(format!("cannot watch {}: {e}", folder.display())))?;
            tracing::info!(folder = %folder.display(), "watching for changes");
        }
        let (reports, _) = broadcast::channel(16);
        tokio::spawn(reload_on_changes(
            Arc::downgrade(app),
            changes,
            reports.clone(),
        ));
        Ok(Self {
            _watcher: watcher,
            reports,
        })
    }

    /// The report of every reload from now on.
    pub fn reports(&self) -> broadcast::Receiver<ReloadReport> {
        self.reports.subscribe()
    }
}

/// Whether an event touches a source file (or a folder that may hold some).
fn concerns_sources(event: &Event) -> bool {
    !matches!(event.kind, EventKind::Access(_))
        && event.paths.iter().any(|p| {
            let hidden = p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            !hidden && (crate::project::SourceKind::of(p).is_some() || p.is_dir())
        })
}

/// Reloads once per settled burst of changes, until the watcher is dropped or the app is gone.
async fn reload_on_changes(
    app: Weak<App>,
    mut changes: mpsc::UnboundedReceiver<()>,
    reports: broadcast::Sender<ReloadReport>,
) {
    while changes.recv().await.is_some() {
        loop {
            match tokio::time::timeout(SETTLE, changes.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_settled) => break,
            }
        }
        let Some(app) = app.upgrade() else {
            return;
        };
        match app.reload().await {
            Ok(report) => {
                for rejected in &report.rejected {
                    for diagnostic in &rejected.diagnostics {
                        tracing::warn!("reload refused: {diagnostic}");
                    }
                }
                for error in &report.rule_errors {
                    tracing::warn!("rule not reloaded: {error}");
                }
                let created: Vec<String> = report
                    .deployed
                    .iter()
                    .flat_map(|f| f.deployed.iter().filter(|p| p.created))
                    .map(|p| format!("{} v{}", p.process, p.version))
                    .collect();
                if !created.is_empty() || !report.rules_reloaded.is_empty() {
                    tracing::info!(deployed = ?created, rules = ?report.rules_reloaded, "reloaded");
                }
                let _ = reports.send(report);
            }
            Err(error) => tracing::error!("reload failed: {error}"),
        }
    }
}
