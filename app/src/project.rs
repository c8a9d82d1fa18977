//! A project's files: which front end reads which file, folders searched recursively, checking
//! every process and rule file in one pass, and loading a process file for deployment.
//!
//! Invariant: every problem of every file is reported in one pass, sorted, each once, as
//! `path:line:col: error|warning: message [id]`; a file that cannot be read is a diagnostic too.

use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::graph::compile;
use flowbot_engine::model::{Definitions, Span};
use flowbot_engine::script::ScriptRuntime;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What kind of source a file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// BPMN 2.0 XML (`.bpmn`, `.bpmn20.xml`, `.xml`).
    Bpmn,
    /// The YAML process language (`.yaml`, `.yml`).
    Yaml,
    /// A business-rule script (`.rhai`).
    Rules,
}

impl SourceKind {
    /// The kind of `path`, by extension; `None` for files Flowbot does not read.
    pub fn of(path: &Path) -> Option<SourceKind> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        if name.ends_with(".bpmn") || name.ends_with(".xml") {
            Some(SourceKind::Bpmn)
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            Some(SourceKind::Yaml)
        } else if name.ends_with(".rhai") {
            Some(SourceKind::Rules)
        } else {
            None
        }
    }
}

/// Expands files and folders (recursively, sorted, hidden entries skipped) into the source files
/// they hold. A named file is kept whatever its extension; unreadable folders are diagnostics.
pub fn collect(paths: &[PathBuf]) -> (Vec<(PathBuf, Option<SourceKind>)>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut files, &mut problems);
        } else {
            files.push((path.clone(), SourceKind::of(path)));
        }
    }
    (files, problems)
}

fn walk(
    dir: &Path,
    files: &mut Vec<(PathBuf, Option<SourceKind>)>,
    problems: &mut Vec<Diagnostic>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Diagnostic::error(
                dir,
                Span::new(1, 1),
                format!("cannot read folder: {error}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files, problems);
        } else if let Some(kind) = SourceKind::of(&path) {
            files.push((path, Some(kind)));
        }
    }
}

/// Reads a process file with the front end its extension names.
pub fn read_process_file(path: &Path) -> (Option<Definitions>, Vec<Diagnostic>) {
    match std::fs::read(path) {
        Ok(bytes) => read_process(path, &bytes),
        Err(error) => (
            None,
            vec![Diagnostic::error(
                path,
                Span::new(1, 1),
                format!("cannot read the file: {error}"),
            )],
        ),
    }
}

/// Reads process source `bytes` named `path` with the front end its extension names.
pub fn read_process(path: &Path, bytes: &[u8]) -> (Option<Definitions>, Vec<Diagnostic>) {
    match SourceKind::of(path) {
        Some(SourceKind::Bpmn) => flowbot_engine::bpmn::parse_bpmn(path, bytes),
        Some(SourceKind::Yaml) => flowbot_engine::yaml::parse_yaml_bytes(path, bytes),
        Some(SourceKind::Rules) | None => (
            None,
            vec![Diagnostic::error(
                path,
                Span::new(1, 1),
                "not a process file: expected .bpmn, .bpmn20.xml, .xml, .yaml or .yml",
            )],
        ),
    }
}

/// The processes of `defs` that run: every executable one, or the first one when none is marked
/// executable (what a run picks).
pub fn runnable_processes(defs: &Definitions) -> Vec<Option<&str>> {
    let executable: Vec<Option<&str>> = defs
        .processes
        .iter()
        .filter(|p| p.executable)
        .map(|p| Some(p.id.as_str()))
        .collect();
    if executable.is_empty() {
        vec![None]
    } else {
        executable
    }
}

/// Every problem of a project's files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The files checked.
    pub files: Vec<PathBuf>,
    /// Their diagnostics, sorted by file, line and column.
    pub diagnostics: Vec<Diagnostic>,
}

impl CheckReport {
    /// How many diagnostics are errors.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// How many are warnings.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }

    /// Whether every file checks without error.
    pub fn is_clean(&self) -> bool {
        !has_errors(&self.diagnostics)
    }
}

/// Checks process and rule files (folders searched recursively): every process parsed and
/// compiled with `scripts`, rule attachments resolved against `rules` (the rules folder, when
/// there is one), rule files compiled.
pub fn check_paths(
    paths: &[PathBuf],
    rules: Option<&Path>,
    scripts: &Arc<ScriptRuntime>,
) -> CheckReport {
    let (files, mut diagnostics) = collect(paths);
    for (path, kind) in &files {
        diagnostics.extend(check_file(path, *kind, rules, scripts));
    }
    sort(&mut diagnostics);
    CheckReport {
        files: files.into_iter().map(|(path, _)| path).collect(),
        diagnostics,
    }
}

/// The diagnostics of one file, by kind: the dispatch point for each source language.
pub fn check_file(
    path: &Path,
    kind: Option<SourceKind>,
    rules: Option<&Path>,
    scripts: &Arc<ScriptRuntime>,
) -> Vec<Diagnostic> {
    match kind {
        Some(SourceKind::Bpmn | SourceKind::Yaml) => {
            let (defs, parsed) = read_process_file(path);
            match defs {
                Some(defs) => check_definitions(
                    &defs,
                    parsed,
                    rules.or(rules_folder_beside(path).as_deref()),
                    scripts,
                ),
                None => parsed,
            }
        }
        Some(SourceKind::Rules) => flowbot_engine::rules::check_rule_file(path),
        None => vec![Diagnostic::error(
            path,
            Span::new(1, 1),
            "unknown file type: expected .bpmn, .bpmn20.xml, .xml, .yaml, .yml or .rhai",
        )],
    }
}

/// The front end's diagnostics `parsed` of `defs`, with the rule attachments checked against the
/// rules folder and every runnable process compiled.
pub fn check_definitions(
    defs: &Definitions,
    mut parsed: Vec<Diagnostic>,
    rules: Option<&Path>,
    scripts: &Arc<ScriptRuntime>,
) -> Vec<Diagnostic> {
    parsed.extend(flowbot_engine::rules::check_attachments(defs, rules));
    let mut compiled = Vec::new();
    for process in runnable_processes(defs) {
        compiled.extend(compile(defs, process, scripts).1);
    }
    merge(parsed, compiled)
}

/// The `rules/` folder of the project a workflow belongs to: beside the workflow's folder
/// (`workflows/x.yaml` → `rules/`), when there is one.
pub fn rules_folder_beside(workflow: &Path) -> Option<PathBuf> {
    let folder = workflow.parent()?;
    let project = folder.parent().unwrap_or(Path::new(""));
    let rules = if project.as_os_str().is_empty() {
        PathBuf::from("rules")
    } else {
        project.join("rules")
    };
    rules.is_dir().then_some(rules)
}

/// Joins front-end and compiler diagnostics, sorted. Both report duplicate ids (the compiler
/// also checks models built in code); the compiler's report is dropped where the front end
/// already reported a duplicate at the same place.
pub fn merge(parsed: Vec<Diagnostic>, compiled: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let is_duplicate = |d: &Diagnostic| d.message.starts_with("duplicate id");
    let mut all: Vec<Diagnostic> = compiled
        .into_iter()
        .filter(|c| {
            !(is_duplicate(c)
                && parsed
                    .iter()
                    .any(|p| is_duplicate(p) && p.file == c.file && p.span == c.span))
        })
        .collect();
    all.extend(parsed);
    sort(&mut all);
    all
}

/// Sorts diagnostics by file, line, column, then errors before warnings, and drops repeats.
pub fn sort(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.span, std::cmp::Reverse(a.severity), &a.message).cmp(&(
            &b.file,
            b.span,
            std::cmp::Reverse(b.severity),
            &b.message,
        ))
    });
    diagnostics.dedup();
}

/// Loads and compiles one process of a file (the one named, else the first runnable one):
/// the compiled process when the file has no errors, and every diagnostic in order.
pub fn compile_file(
    path: &Path,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
) -> (
    Option<flowbot_engine::graph::CompiledProcess>,
    Vec<Diagnostic>,
) {
    let (defs, parsed) = read_process_file(path);
    let Some(defs) = defs else {
        return (None, parsed);
    };
    let (compiled, more) = compile(&defs, process, scripts);
    let diagnostics = merge(parsed, more);
    if has_errors(&diagnostics) {
        return (None, diagnostics);
    }
    (compiled, diagnostics)
}
