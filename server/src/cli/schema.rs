//! `flowbot schema [--decision]`: prints the JSON Schema of the YAML process language, or of the
//! YAML decision language (for editors and CI).

use clap::Args;
use std::process::ExitCode;

/// Arguments of `flowbot schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema of YAML decision files instead of process files.
    #[arg(long)]
    pub decision: bool,
}

/// Runs the command.
pub fn execute(args: &SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = if args.decision {
        flowbot_engine::dmn::decision_json_schema()
    } else {
        flowbot_engine::yaml::json_schema()
    };
    let schema = serde_json::to_string_pretty(&schema)?;
    super::write_stdout(&format!("{schema}\n"))?;
    Ok(ExitCode::SUCCESS)
}
