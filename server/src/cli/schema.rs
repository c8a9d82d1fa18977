//! `flowbot schema`: prints the JSON Schema of the YAML process language (for editors and CI).

use clap::Args;
use std::process::ExitCode;

/// Arguments of `flowbot schema` (none).
#[derive(Debug, Args)]
pub struct SchemaArgs {}

/// Runs the command.
pub fn execute(_args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = serde_json::to_string_pretty(&flowbot_engine::yaml::json_schema())?;
    super::write_stdout(&format!("{schema}\n"))?;
    Ok(ExitCode::SUCCESS)
}
