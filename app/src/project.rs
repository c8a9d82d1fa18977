//! A project's files: which front end reads which file, folders searched recursively, checking
//! every process, decision and rule file in one pass, loading a process file for deployment and
//! building the decisions business-rule tasks evaluate.
//!
//! Invariant: every problem of every file is reported in one pass, sorted, each once, as
//! `path:line:col: error|warning: message [id]`; a file that cannot be read is a diagnostic too.

use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::dmn::{DecisionFile, Decisions};
use flowbot_engine::graph::{compile_with, Catalog};
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
    /// DMN decisions (`.dmn`).
    Dmn,
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
        } else if name.ends_with(".dmn") {
            Some(SourceKind::Dmn)
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
        Err(error) => (None, vec![unreadable(path, &error)]),
    }
}

fn unreadable(path: &Path, error: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        path,
        Span::new(1, 1),
        format!("cannot read the file: {error}"),
    )
}

/// Reads process source `bytes` named `path` with the front end its extension names.
pub fn read_process(path: &Path, bytes: &[u8]) -> (Option<Definitions>, Vec<Diagnostic>) {
    match SourceKind::of(path) {
        Some(SourceKind::Bpmn) => flowbot_engine::bpmn::parse_bpmn(path, bytes),
        Some(SourceKind::Yaml) if is_decision_yaml(bytes) => (
            None,
            vec![Diagnostic::error(
                path,
                Span::new(1, 1),
                "this is a decision file, not a process: evaluate it with `flowbot decide`",
            )],
        ),
        Some(SourceKind::Yaml) => flowbot_engine::yaml::parse_yaml_bytes(path, bytes),
        Some(SourceKind::Rules | SourceKind::Dmn) | None => (
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

/// Checks process, decision and rule files (folders searched recursively): every process parsed
/// and compiled with `scripts` against the decisions in its folder, rule attachments resolved
/// against `rules` (the rules folder, when there is one), decision tables built, rule files
/// compiled.
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
        Some(SourceKind::Dmn) => build_decisions(&[path]).1,
        Some(SourceKind::Yaml) if is_decision_file(path) => build_decisions(&[path]).1,
        Some(SourceKind::Bpmn | SourceKind::Yaml) => {
            let (defs, parsed) = read_process_file(path);
            match defs {
                Some(defs) => check_definitions(
                    &defs,
                    parsed,
                    rules.or(rules_folder_beside(path).as_deref()),
                    scripts,
                    &Catalog::with_decisions(decisions_beside(path)),
                ),
                None => parsed,
            }
        }
        Some(SourceKind::Rules) => flowbot_engine::rules::check_rule_file(path),
        None => vec![Diagnostic::error(
            path,
            Span::new(1, 1),
            "unknown file type: expected .bpmn, .bpmn20.xml, .xml, .yaml, .yml, .dmn or .rhai",
        )],
    }
}

/// The front end's diagnostics `parsed` of `defs`, with the rule attachments checked against the
/// rules folder and every runnable process compiled against the decisions in `catalog`.
pub fn check_definitions(
    defs: &Definitions,
    mut parsed: Vec<Diagnostic>,
    rules: Option<&Path>,
    scripts: &Arc<ScriptRuntime>,
    catalog: &Catalog,
) -> Vec<Diagnostic> {
    parsed.extend(flowbot_engine::rules::check_attachments(defs, rules));
    let mut compiled = Vec::new();
    for process in runnable_processes(defs) {
        compiled.extend(compile_with(defs, process, scripts, catalog).1);
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

/// Loads and compiles one process of a file (the one named, else the first runnable one) against
/// the decisions in its folder: the compiled process when the file has no errors, and every
/// diagnostic in order.
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
    let catalog = Catalog::with_decisions(decisions_beside(path));
    let (compiled, more) = compile_with(&defs, process, scripts, &catalog);
    let diagnostics = merge(parsed, more);
    if has_errors(&diagnostics) {
        return (None, diagnostics);
    }
    (compiled, diagnostics)
}

fn is_decision_yaml(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(flowbot_engine::dmn::is_decision_yaml)
}

/// Whether `path` holds decisions: a `.dmn` file, or a YAML file whose top level has
/// `decision:` or `decisions:`.
pub fn is_decision_file(path: &Path) -> bool {
    match SourceKind::of(path) {
        Some(SourceKind::Dmn) => true,
        Some(SourceKind::Yaml) => std::fs::read(path).is_ok_and(|b| is_decision_yaml(&b)),
        _ => false,
    }
}

/// Reads a decision file (`.dmn`, or YAML with `decision:`/`decisions:`).
pub fn read_decision_file(path: &Path) -> (Option<DecisionFile>, Vec<Diagnostic>) {
    if SourceKind::of(path) == Some(SourceKind::Dmn) {
        return flowbot_engine::dmn::parse_dmn_file(path);
    }
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => return (None, vec![unreadable(path, &error)]),
    };
    if bytes.len() > flowbot_engine::yaml::MAX_SOURCE_BYTES {
        let message = format!(
            "the file is {} bytes; decision files are limited to {} bytes",
            bytes.len(),
            flowbot_engine::yaml::MAX_SOURCE_BYTES
        );
        return (
            None,
            vec![Diagnostic::error(path, Span::new(1, 1), message)],
        );
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => flowbot_engine::dmn::parse_decision_yaml(path, text),
        Err(_) => (
            None,
            vec![Diagnostic::error(
                path,
                Span::new(1, 1),
                "the file is not UTF-8 text; save it as UTF-8",
            )],
        ),
    }
}

/// Builds the decisions of `files` into one set; returns it with every diagnostic of the files.
pub fn build_decisions<P: AsRef<Path>>(files: &[P]) -> (Arc<Decisions>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut parsed = Vec::new();
    for file in files {
        let (decisions, problems) = read_decision_file(file.as_ref());
        diagnostics.extend(problems);
        parsed.extend(decisions);
    }
    let (set, problems) = Decisions::build(&parsed);
    diagnostics.extend(problems);
    sort(&mut diagnostics);
    (Arc::new(set), diagnostics)
}

/// The decisions of a folder (searched recursively, as workflows are deployed from it), with
/// the diagnostics of its decision files.
pub fn decisions_in(folder: &Path) -> (Arc<Decisions>, Vec<Diagnostic>) {
    let (files, mut problems) = collect(&[folder.to_path_buf()]);
    let files: Vec<PathBuf> = files
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| is_decision_file(path))
        .collect();
    let (decisions, more) = build_decisions(&files);
    problems.extend(more);
    (decisions, problems)
}

/// The decisions deployed with a process file run on its own: every decision file in its folder
/// (not below). Problems in them are not reported here; a business-rule task that needs a broken
/// decision says so, and `flowbot check` reports the files.
pub fn decisions_beside(process_file: &Path) -> Arc<Decisions> {
    build_decisions(&decision_files_beside(process_file)).0
}

/// The decisions beside a process file (see [`decisions_beside`]) and those of the files and
/// folders (searched recursively) named besides, with the problems of the named ones: a decision
/// asked for by name that does not check is reported, not left to fail later.
pub fn decisions_with(process_file: &Path, named: &[PathBuf]) -> (Arc<Decisions>, Vec<Diagnostic>) {
    let (found, mut problems) = collect(named);
    let named_file = |path: &Path| named.iter().any(|n| n == path);
    let mut decision_files = Vec::new();
    for (path, _) in found {
        if is_decision_file(&path) {
            decision_files.push(path);
        } else if named_file(&path) {
            let why = if path.exists() {
                "not a decision file (a .dmn file, or YAML starting with `decision:`)"
            } else {
                "no such file or folder"
            };
            problems.push(Diagnostic::error(&path, Span::new(1, 1), why));
        }
    }
    let named = decision_files;
    let mut files = decision_files_beside(process_file);
    files.retain(|file| !named.iter().any(|n| same_file(n, file)));
    files.extend(named.iter().cloned());
    let (decisions, diagnostics) = build_decisions(&files);
    problems.extend(
        diagnostics
            .into_iter()
            .filter(|d| named.iter().any(|n| same_file(n, &d.file))),
    );
    sort(&mut problems);
    (decisions, problems)
}

/// Whether two paths name the same file (compared as written when one cannot be resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Every decision file in the folder of `process_file` (not below), in name order.
fn decision_files_beside(process_file: &Path) -> Vec<PathBuf> {
    let folder = match process_file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_decision_file(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
