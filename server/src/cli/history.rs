//! `flowbot history ID --store DIR [--json]`: an instance's audit log, read from a sled store.

use anyhow::{bail, Context};
use flowbot_engine::runtime::{read_history, HistoryEntry};
use flowbot_engine::store::{Durability, SledStore};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The instance id.
    pub id: String,
    /// The store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// Print one JSON array instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Prints the history.
pub fn run(args: HistoryArgs) -> anyhow::Result<ExitCode> {
    if !args.store.is_dir() {
        bail!("no store at {} (not a directory)", args.store.display());
    }
    let store = SledStore::open(&args.store, Durability::Step)?;
    let records = read_history(&store, &args.id)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).context("encoding the history")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for record in records {
        let at = chrono::DateTime::from_timestamp_millis(record.at_ms as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| record.at_ms.to_string());
        let detail = match &record.entry {
            HistoryEntry::Executor { event } => serde_json::to_string(event)?,
            other => serde_json::to_string(other)?,
        };
        println!("{at}  {detail}");
    }
    Ok(ExitCode::SUCCESS)
}
