//! `flowbot check PATH...`: reads every process and rule file, compiles every process, and prints
//! all diagnostics sorted as `path:line:col: error|warning: message [id]`. Exit 1 on any error.
//! Rules attached in a workflow are checked too: inline rules must compile, and rule files must
//! exist in the `rules/` folder beside the workflow's folder (when there is one).

use crate::sources::{self, SourceKind};
use clap::Args;
use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::graph::compile;
use flowbot_engine::model::Span;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `flowbot check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Files or folders (folders are searched for .bpmn, .bpmn20.xml, .xml, .yaml, .yml, .rhai).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Runs the command.
pub fn execute(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (files, mut diagnostics) = sources::collect(&args.paths);
    for (path, kind) in &files {
        diagnostics.extend(check_file(path, *kind));
    }
    sources::sort(&mut diagnostics);
    let listing: String = diagnostics.iter().map(|d| format!("{d}\n")).collect();
    super::write_stdout(&listing)?;
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    eprintln!(
        "checked {} file(s): {errors} error(s), {warnings} warning(s)",
        files.len()
    );
    Ok(if has_errors(&diagnostics) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The diagnostics of one file, by kind: this is the dispatch point for each source language.
pub fn check_file(path: &Path, kind: Option<SourceKind>) -> Vec<Diagnostic> {
    match kind {
        Some(SourceKind::Bpmn | SourceKind::Yaml) => check_process_file(path),
        Some(SourceKind::Rules) => flowbot_engine::rules::check_rule_file(path),
        None => vec![Diagnostic::error(
            path,
            Span::new(1, 1),
            "unknown file type: expected .bpmn, .bpmn20.xml, .xml, .yaml, .yml or .rhai",
        )],
    }
}

/// Parses a process file and compiles the processes that can run: every executable one, or the
/// first one when none is marked executable (what `flowbot run` would pick).
fn check_process_file(path: &Path) -> Vec<Diagnostic> {
    let (defs, mut parsed) = sources::load_process_file(path);
    let Some(defs) = defs else { return parsed };
    parsed.extend(flowbot_engine::rules::check_attachments(
        &defs,
        rules_folder_beside(path).as_deref(),
    ));
    let scripts = sources::script_runtime();
    let mut compiled = Vec::new();
    let executable: Vec<&str> = defs
        .processes
        .iter()
        .filter(|p| p.executable)
        .map(|p| p.id.as_str())
        .collect();
    if executable.is_empty() {
        compiled.extend(compile(&defs, None, &scripts).1);
    }
    for id in executable {
        compiled.extend(compile(&defs, Some(id), &scripts).1);
    }
    sources::merge(parsed, compiled)
}

/// The `rules/` folder of the project a workflow belongs to: beside the workflow's folder
/// (`workflows/x.yaml` → `rules/`), when there is one.
fn rules_folder_beside(workflow: &Path) -> Option<PathBuf> {
    let folder = workflow.parent()?;
    let project = folder.parent().unwrap_or(Path::new(""));
    let rules = if project.as_os_str().is_empty() {
        PathBuf::from("rules")
    } else {
        project.join("rules")
    };
    rules.is_dir().then_some(rules)
}
