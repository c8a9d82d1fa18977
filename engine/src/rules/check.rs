//! Static checks for `flowbot check`: rule files compile (imports included), and the rules a
//! workflow attaches exist in the rules folder and, when written inline, compile.

use super::error::RuleError;
use super::ruleset::{rule_files, rule_name, rules_runtime, Compiler, RulesConfig};
use crate::diagnostics::Diagnostic;
use crate::model::{Definitions, Node, NodeKind, RuleAttachment, RuleSource, Span};
use std::path::Path;

/// Compiles one rule file and reports every problem as a diagnostic `path:line:col: error: ...`,
/// for `flowbot check`. Imports are resolved from the file's own folder.
pub fn check_rule_file(path: &Path) -> Vec<Diagnostic> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check_with(&checker(folder), path)
}

/// Checks every `.rhai` file under the folder `path` (imports resolved from that folder), or
/// `path` itself when it is a file.
pub fn check_rules_path(path: &Path) -> Vec<Diagnostic> {
    if path.is_file() {
        return check_rule_file(path);
    }
    let compiler = checker(path);
    match rule_files(path) {
        Ok(files) => files
            .iter()
            .flat_map(|relative| check_with(&compiler, &path.join(relative)))
            .collect(),
        Err(e) => vec![Diagnostic::error(path, Span::new(1, 1), e.to_string())],
    }
}

fn checker(root: &Path) -> Compiler {
    Compiler::new(rules_runtime(root, &RulesConfig::default()))
}

/// Checks rule source `text` as the file `path` would be checked (imports resolved from its
/// folder), before it is written there.
pub fn check_rule_source(path: &Path, text: &str) -> Vec<Diagnostic> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check_text(&checker(folder), path, text)
}

fn check_with(compiler: &Compiler, path: &Path) -> Vec<Diagnostic> {
    match crate::script::read_script_file(path) {
        Ok(text) => check_text(compiler, path, &text),
        Err(e) => vec![Diagnostic::error(
            path,
            Span::new(1, 1),
            format!("cannot read rule file: {e}"),
        )],
    }
}

fn check_text(compiler: &Compiler, path: &Path, text: &str) -> Vec<Diagnostic> {
    let name = rule_name(
        &path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    match compiler.compile(&name, path, text, 0) {
        Ok(_) => Vec::new(),
        Err(RuleError::Compile {
            location,
            message,
            rule,
        }) => {
            let span = Span::new(location.line.max(1), location.col.max(1));
            vec![Diagnostic::error(path, span, message).with_id(rule)]
        }
        Err(other) => vec![Diagnostic::error(path, Span::new(1, 1), other.to_string())],
    }
}

/// Checks the rules a workflow attaches (`defs.source` is the workflow file): inline rules must
/// compile, and with a `rules_folder`, referenced rule files must be in it. Problems are reported
/// at the attachment in the workflow.
pub fn check_attachments(defs: &Definitions, rules_folder: Option<&Path>) -> Vec<Diagnostic> {
    let compiler = checker(rules_folder.unwrap_or(Path::new(".")));
    let mut attachments: Vec<(&RuleAttachment, Option<&str>)> = Vec::new();
    for process in &defs.processes {
        attachments.extend(process.rules.iter().map(|a| (a, None)));
        collect_node_rules(&process.nodes, &mut attachments);
    }
    let mut diagnostics = Vec::new();
    for (attachment, node) in attachments {
        let problem = match &attachment.rule {
            RuleSource::Inline(text) => match compiler.compile("inline", &defs.source, text, 0) {
                Ok(_) => None,
                Err(RuleError::Compile {
                    location, message, ..
                }) => Some(format!(
                    "inline rule does not compile ({}:{} inside the rule): {message}",
                    location.line, location.col
                )),
                Err(other) => Some(other.to_string()),
            },
            RuleSource::File(file) => rules_folder.and_then(|folder| {
                let relative = file.strip_prefix("rules/").unwrap_or(file);
                let name = rule_name(relative);
                let present = folder.join(format!("{name}.rhai")).is_file();
                (!present).then(|| {
                    format!(
                        "rule file `{file}` is not in the rules folder {}",
                        folder.display()
                    )
                })
            }),
        };
        if let Some(message) = problem {
            let diagnostic = Diagnostic::error(&defs.source, attachment.span, message);
            diagnostics.push(match node {
                Some(id) => diagnostic.with_id(id),
                None => diagnostic,
            });
        }
    }
    diagnostics
}

fn collect_node_rules<'a>(nodes: &'a [Node], out: &mut Vec<(&'a RuleAttachment, Option<&'a str>)>) {
    for node in nodes {
        out.extend(node.rules.iter().map(|a| (a, Some(node.id.as_str()))));
        if let NodeKind::SubProcess(sub) = &node.kind {
            collect_node_rules(&sub.body.nodes, out);
        }
    }
}
