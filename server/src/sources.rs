//! Finding and loading source files: which front end reads which file, folder recursion, and
//! compiling a process file for the commands that run or draw it.

use flowbot_engine::diagnostics::{has_errors, Diagnostic};
use flowbot_engine::graph::{compile, CompiledProcess};
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
            Ok(bytes) => flowbot_engine::yaml::parse_yaml_bytes(path, &bytes),
            Err(error) => (
                None,
                vec![Diagnostic::error(
                    path,
                    Span::new(1, 1),
                    format!("cannot read the file: {error}"),
                )],
            ),
        },
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
    let (compiled, more) = compile(&defs, process, scripts);
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
