//! `flowbot check PATH... [--json]`: reads every process, decision and rule file, compiles every
//! process (against the decision files in its folder) and decision table, and prints all
//! diagnostics sorted as `path:line:col: error|warning: message [id]`. Exit 1 on any error. Rules
//! attached in a workflow are checked too: inline rules must compile, and rule files must exist in
//! the `rules/` folder beside the workflow's folder (when there is one).

use clap::Args;
use flowbot_app::project::check_paths;
use flowbot_engine::script::ScriptRuntime;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `flowbot check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or folders (folders are searched for .bpmn, .bpmn20.xml, .xml, .yaml, .yml, .dmn,
    /// .rhai).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object: `{"files": [...], "diagnostics": [...]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check_paths(&args.paths, None, &Arc::new(ScriptRuntime::default()));
    let listing = if args.json {
        format!("{}\n", serde_json::to_string(&report)?)
    } else {
        report
            .diagnostics
            .iter()
            .map(|d| format!("{d}\n"))
            .collect()
    };
    super::write_stdout(&listing)?;
    eprintln!(
        "checked {} file(s): {} error(s), {} warning(s)",
        report.files.len(),
        report.errors(),
        report.warnings()
    );
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
