//! `flowbot db migrate [--store postgres://...]`: applies the PostgreSQL store's schema
//! migrations and nothing else (`serve` applies them at start too), for deployments that migrate
//! before they roll out nodes, or with another user than the nodes'.

use super::service;
use clap::{Args, Subcommand};
use flowbot_app::config::StoreChoice;
use flowbot_app::ConfigOverrides;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DbCommand,
}

/// The database commands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the schema migrations this build knows to the PostgreSQL store.
    Migrate {
        /// The database (default: the configured `store.url`).
        #[arg(long, value_name = "postgres://...")]
        store: Option<String>,
    },
}

/// Runs the command.
pub fn execute(args: &DbArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let DbCommand::Migrate { store } = &args.command;
    let overrides = ConfigOverrides {
        config_file,
        store: store.as_deref().map(StoreChoice::parse),
        ..ConfigOverrides::default()
    };
    let report = match service::config(&overrides).and_then(|c| flowbot_app::migrate_store(&c)) {
        Ok(report) => report,
        Err(error) => return Ok(service::report_error(&error)),
    };
    if report.applied.is_empty() {
        println!("schema version {}: up to date", report.to);
    } else {
        for migration in &report.applied {
            println!("applied migration {migration}");
        }
        println!("schema version {} -> {}", report.from, report.to);
    }
    Ok(ExitCode::SUCCESS)
}
