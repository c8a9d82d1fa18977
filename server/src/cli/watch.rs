//! `flowbot watch [--workflows DIR] [--rules DIR] [--json]`: deploys the workflows folder, then
//! watches it and the rules folder: every change that checks clean is deployed (a new version
//! for new content), every broken file is refused with its diagnostics while the working version
//! keeps serving. One line (or JSON object) per reload, until Ctrl-C.

use super::service;
use clap::Args;
use flowbot_app::config::StoreChoice;
use flowbot_app::{App, AppError, ConfigOverrides, FolderWatcher, ReloadReport};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `flowbot watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The workflows folder (default: the configured one, else `workflows`).
    #[arg(long)]
    pub workflows: Option<PathBuf>,
    /// The rules folder (default: the configured one, else `rules` when present).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Print one JSON object per reload.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &WatchArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let overrides = ConfigOverrides {
        config_file,
        workflows: args.workflows.clone(),
        rules: args.rules.clone(),
        store: Some(StoreChoice::Memory),
        ..ConfigOverrides::default()
    };
    match service::runtime()?.block_on(watch(&overrides, args.json)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => Ok(service::report_error(&error)),
    }
}

async fn watch(overrides: &ConfigOverrides, json: bool) -> Result<(), AppError> {
    let mut config = service::config(overrides)?;
    config
        .workflows
        .get_or_insert_with(|| PathBuf::from("workflows"));
    let app = Arc::new(
        App::builder(config)
            .fetch_progress(service::fetch_progress())
            .open()
            .await?,
    );
    for deployed in app.deployments() {
        eprintln!(
            "deployed {} v{} from {}",
            deployed.process, deployed.version, deployed.source
        );
    }
    let watcher = FolderWatcher::start(&app)?;
    let mut reports = watcher.reports();
    eprintln!("watching; Ctrl-C to stop");
    loop {
        tokio::select! {
            report = reports.recv() => match report {
                Ok(report) => print_report(&report, json),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    drop(watcher);
    app.shutdown().await;
    Ok(())
}

fn print_report(report: &ReloadReport, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(report) {
            println!("{line}");
        }
        return;
    }
    for file in &report.deployed {
        for process in file.deployed.iter().filter(|p| p.created) {
            println!(
                "deployed {} v{} from {}",
                process.process,
                process.version,
                file.file.display()
            );
        }
    }
    for file in &report.rejected {
        println!("refused {}:", file.file.display());
        for diagnostic in &file.diagnostics {
            println!("  {diagnostic}");
        }
    }
    for rule in &report.rules_reloaded {
        println!("rules reloaded: {rule}");
    }
    for error in &report.rule_errors {
        println!("rule refused: {error}");
    }
}
