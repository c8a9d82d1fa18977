//! `flowbot graph PATH [--process ID] [--format dot|mermaid]`: prints the compiled process graph.

use clap::{Args, ValueEnum};
use flowbot_engine::graph::{to_dot, to_mermaid};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Graphviz dot.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Arguments of `flowbot graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The process file.
    pub path: PathBuf,
    /// Process id (default: the first executable process).
    #[arg(long)]
    pub process: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: Format,
}

/// Runs the command.
pub fn execute(args: &GraphArgs) -> anyhow::Result<ExitCode> {
    let scripts = std::sync::Arc::new(flowbot_engine::script::ScriptRuntime::default());
    let (compiled, diagnostics) =
        flowbot_app::project::compile_file(&args.path, args.process.as_deref(), &scripts);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(process) = compiled else {
        return Ok(ExitCode::FAILURE);
    };
    let text = match args.format {
        Format::Dot => to_dot(&process),
        Format::Mermaid => to_mermaid(&process),
    };
    super::write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}
