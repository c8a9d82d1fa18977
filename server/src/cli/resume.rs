//! `flowbot resume --store DIR [--rules DIR] [--clock wall|virtual] [--json]`: opens the engine
//! on a sled store, lets it carry on what is due (timers whose time has come, jobs that were in
//! flight, deliveries), waits until nothing can move without outside help, and prints every
//! instance that was unfinished when it started. The same recovery `flowbot serve` does at start.

use super::run::ClockArg;
use super::service;
use clap::Args;
use flowbot_app::config::{ClockKind, DurabilityKind, StoreChoice};
use flowbot_app::view::InstanceView;
use flowbot_app::{App, AppError, ConfigOverrides, InstanceFilter, InstanceStatus};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The sled store folder.
    #[arg(long)]
    pub store: PathBuf,
    /// The rules folder the instances run with (default: the configured one).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// `virtual`: timers jump ahead instead of waiting.
    #[arg(long, value_enum, default_value = "wall")]
    pub clock: ClockArg,
    /// Print one JSON array of instance views.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &ResumeArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if !args.store.is_dir() {
        anyhow::bail!("no store at {} (not a folder)", args.store.display());
    }
    let overrides = ConfigOverrides {
        config_file,
        rules: args.rules.clone(),
        store: Some(StoreChoice::Sled(args.store.clone())),
        durability: Some(DurabilityKind::Step),
        clock: Some(match args.clock {
            ClockArg::Wall => ClockKind::Wall,
            ClockArg::Virtual => ClockKind::Virtual,
        }),
        ..ConfigOverrides::default()
    };
    match service::runtime()?.block_on(resume(&overrides)) {
        Ok(instances) => {
            let text = if args.json {
                format!("{}\n", serde_json::to_string(&instances)?)
            } else {
                instances
                    .iter()
                    .map(|i| format!("instance {}: {} ({})\n", i.id, i.status, i.path.join(" ")))
                    .collect()
            };
            super::write_stdout(&text)?;
            let failed = instances.iter().any(|i| i.status == InstanceStatus::Failed);
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(error) => Ok(service::report_error(&error)),
    }
}

async fn resume(overrides: &ConfigOverrides) -> Result<Vec<InstanceView>, AppError> {
    let config = service::config(overrides)?;
    let opened_at = flowbot_app::view::time(flowbot_engine::clock::wall_now_ms());
    let app = App::builder(config)
        .deploy_workflows(false)
        .fetch_progress(service::fetch_progress())
        .open()
        .await?;
    app.engine().wait_idle().await;
    // The instances that were unfinished when the store was opened: those still waiting, and
    // those that ended since (due timers may fire while the engine starts).
    let mut resumed = Vec::new();
    let mut cursor = None;
    loop {
        let page = app.list_instances(&InstanceFilter::default(), cursor.as_deref(), 1_000)?;
        resumed.extend(page.items.into_iter().filter(|i| {
            i.status == InstanceStatus::Waiting || i.ended.as_ref().is_some_and(|e| *e >= opened_at)
        }));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    app.shutdown().await;
    Ok(resumed)
}
