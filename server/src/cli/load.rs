//! Reading a process file (BPMN XML) into the process model, diagnostics on stderr.

use anyhow::{bail, Context};
use flowbot_engine::diagnostics::{Diagnostic, Severity};
use flowbot_engine::model::Definitions;
use std::path::Path;

/// Parses `path`; prints every diagnostic to stderr and fails when one is an error.
pub fn load_definitions(path: &Path) -> anyhow::Result<Definitions> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = path.to_string_lossy().to_lowercase();
    let (defs, diagnostics): (Option<Definitions>, Vec<Diagnostic>) = if name.ends_with(".bpmn") || name.ends_with(".xml") {
        flowbot_engine::bpmn::parse_bpmn(path, &bytes)
    } else {
        bail!("{}: not a process file this command reads (expected .bpmn or .xml)", path.display());
    };
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    match defs {
        Some(defs) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => Ok(defs),
        _ => bail!("{} has errors", path.display()),
    }
}
