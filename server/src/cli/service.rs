//! What the commands that run processes share: the tokio runtime, the configuration from
//! `--config`, `flowbot.toml`, `FLOWBOT_*` and flags, a progress bar for fetching the model, and
//! how an [`AppError`] is shown (message, `file:line:col` diagnostics, exit code).

use anyhow::Context;
use flowbot_app::{AppConfig, AppError, ConfigOverrides, FetchProgress};
use flowbot_model_runtime::fetch::FetchEvent;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// A multi-threaded tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")
}

/// The configuration of a command: file, environment, then `overrides`.
pub fn config(overrides: &ConfigOverrides) -> Result<AppConfig, AppError> {
    AppConfig::load(overrides)
}

/// Prints an error of the application (its diagnostics one per line) and gives its exit code.
pub fn report_error(error: &AppError) -> ExitCode {
    if error.diagnostic_list().is_empty() {
        eprintln!("error: {}", error.message());
    } else {
        for diagnostic in error.diagnostic_list() {
            eprintln!("{diagnostic}");
        }
        eprintln!("error: {}", error.message());
    }
    ExitCode::from(error.kind().exit_code())
}

/// A progress bar on stderr for fetching the model.
pub fn fetch_progress() -> FetchProgress {
    let mut bar = super::model::FetchProgress::default();
    Arc::new(Mutex::new(move |event: FetchEvent| bar.event(event)))
}
