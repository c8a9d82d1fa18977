//! `flowbot corrections export [--data DIR] [--file FILE] [--out FILE]`: the reviewers'
//! corrections recorded in the data folder (`<data>/corrections.jsonl`), checked line by line and
//! written out as JSON Lines, the input of `flowbot dataset build --corrections FILE`.

use super::service;
use flowbot_app::corrections::{corrections_path, read_corrections};
use flowbot_app::ConfigOverrides;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot corrections`.
#[derive(Debug, clap::Args)]
pub struct CorrectionsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CorrectionsAction,
}

/// What `flowbot corrections` does.
#[derive(Debug, clap::Subcommand)]
pub enum CorrectionsAction {
    /// Write the recorded corrections as JSON Lines (stdout, or --out).
    Export(ExportArgs),
}

/// Arguments of `flowbot corrections export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The data folder whose corrections.jsonl is read (default: the configured data_dir).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A corrections file to read instead of the data folder's.
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    pub file: Option<PathBuf>,
    /// Where to write them (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `flowbot corrections`.
pub fn execute(args: &CorrectionsArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let CorrectionsAction::Export(export) = &args.action;
    let path = match &export.file {
        Some(file) => file.clone(),
        None => {
            let overrides = ConfigOverrides {
                config_file: config,
                data_dir: export.data.clone(),
                ..ConfigOverrides::default()
            };
            match service::config(&overrides) {
                Ok(config) => corrections_path(&config.data_dir),
                Err(error) => return Ok(service::report_error(&error)),
            }
        }
    };
    let corrections = match read_corrections(&path) {
        Ok(corrections) => corrections,
        Err(error) => return Ok(service::report_error(&error)),
    };
    let mut text = String::new();
    for correction in &corrections {
        text.push_str(&serde_json::to_string(correction)?);
        text.push('\n');
    }
    match &export.out {
        Some(out) => {
            std::fs::write(out, text)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            eprintln!(
                "{} corrections from {} written to {}",
                corrections.len(),
                path.display(),
                out.display()
            );
        }
        None => super::write_stdout(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}
