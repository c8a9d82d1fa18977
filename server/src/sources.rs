//! Finding and loading source files: which front end reads which file, folder recursion, and
//! compiling a process file for the commands that run or draw it.

use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::dmn::{DecisionFile, Decisions};
use flowbot_engine::graph::{compile_with, Catalog, CompiledProcess};
use flowbot_engine::model::{Definitions, Span};
use flowbot_engine::script::ScriptRuntime;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What kind of source a file is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// they hold. A named file is kept whatever its extension; unreadable folders are errors.
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
pub fn load_process_file(path: &Path) -> (Option<Definitions>, Vec<Diagnostic>) {
    match SourceKind::of(path) {
        Some(SourceKind::Bpmn) => flowbot_engine::bpmn::parse_bpmn_file(path),
        Some(SourceKind::Yaml) => match std::fs::read(path) {
            Ok(bytes) if is_decision_yaml_bytes(&bytes) => (
                None,
                vec![Diagnostic::error(
                    path,
                    Span::new(1, 1),
                    "this is a decision file, not a process: evaluate it with `flowbot decide`",
                )],
            ),
            Ok(bytes) => flowbot_engine::yaml::parse_yaml_bytes(path, &bytes),
            Err(error) => (None, vec![unreadable(path, &error)]),
        },
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

fn unreadable(path: &Path, error: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        path,
        Span::new(1, 1),
        format!("cannot read the file: {error}"),
    )
}

fn is_decision_yaml_bytes(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(flowbot_engine::dmn::is_decision_yaml)
}

/// Whether `path` holds decisions: a `.dmn` file, or a YAML file whose top level has
/// `decision:` or `decisions:`.
pub fn is_decision_file(path: &Path) -> bool {
    match SourceKind::of(path) {
        Some(SourceKind::Dmn) => true,
        Some(SourceKind::Yaml) => std::fs::read(path).is_ok_and(|b| is_decision_yaml_bytes(&b)),
        _ => false,
    }
}

/// Reads a decision file (`.dmn`, or YAML with `decision:`/`decisions:`).
pub fn load_decision_file(path: &Path) -> (Option<DecisionFile>, Vec<Diagnostic>) {
    match SourceKind::of(path) {
        Some(SourceKind::Dmn) => flowbot_engine::dmn::parse_dmn_file(path),
        _ => match std::fs::read(path) {
            Ok(bytes) if bytes.len() > flowbot_engine::yaml::MAX_SOURCE_BYTES => (
                None,
                vec![Diagnostic::error(
                    path,
                    Span::new(1, 1),
                    format!(
                        "the file is {} bytes; decision files are limited to {} bytes",
                        bytes.len(),
                        flowbot_engine::yaml::MAX_SOURCE_BYTES
                    ),
                )],
            ),
            Ok(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => flowbot_engine::dmn::parse_decision_yaml(path, text),
                Err(_) => (
                    None,
                    vec![Diagnostic::error(
                        path,
                        Span::new(1, 1),
                        "the file is not UTF-8 text; save it as UTF-8",
                    )],
                ),
            },
            Err(error) => (None, vec![unreadable(path, &error)]),
        },
    }
}

/// Builds the decisions of `files` into one set; returns it with every diagnostic of the files.
pub fn build_decisions<P: AsRef<Path>>(files: &[P]) -> (Arc<Decisions>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut parsed = Vec::new();
    for file in files {
        let (decisions, problems) = load_decision_file(file.as_ref());
        diagnostics.extend(problems);
        parsed.extend(decisions);
    }
    let (set, problems) = Decisions::build(&parsed);
    diagnostics.extend(problems);
    (Arc::new(set), diagnostics)
}

/// The decisions deployed with a process file: every decision file in its folder (not below).
/// Problems in them are not reported here; a business-rule task that needs a broken decision
/// says so, and `flowbot check` reports the files.
pub fn decisions_beside(process_file: &Path) -> Arc<Decisions> {
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
    build_decisions(&files).0
}

/// The catalog a process file compiles against: the decisions beside it.
pub fn catalog_for(process_file: &Path) -> Catalog {
    Catalog::with_decisions(decisions_beside(process_file))
}

/// A shared sandboxed script runtime for the commands.
pub fn script_runtime() -> Arc<ScriptRuntime> {
    Arc::new(ScriptRuntime::default())
}

/// Loads and compiles one process of a file. Returns the compiled process when the file has no
/// errors, and every diagnostic (parser and compiler) in order.
pub fn compile_file(
    path: &Path,
    process: Option<&str>,
) -> (Option<CompiledProcess>, Vec<Diagnostic>) {
    compile_file_with(path, process, &script_runtime())
}

/// [`compile_file`] with the given script runtime (the rules engine's, so that conditions and
/// scripts can use the rules standard library).
pub fn compile_file_with(
    path: &Path,
    process: Option<&str>,
    scripts: &Arc<ScriptRuntime>,
) -> (Option<CompiledProcess>, Vec<Diagnostic>) {
    let (defs, mut diagnostics) = load_process_file(path);
    let Some(defs) = defs else {
        return (None, diagnostics);
    };
    let (compiled, more) = compile_with(&defs, process, scripts, &catalog_for(path));
    diagnostics = merge(diagnostics, more);
    if has_errors(&diagnostics) {
        return (None, diagnostics);
    }
    (compiled, diagnostics)
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
