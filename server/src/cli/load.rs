//! Reading a process file (BPMN or YAML) into the process model, diagnostics on stderr.

use crate::sources::load_process_file;
use anyhow::bail;
use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::model::Definitions;
use std::path::Path;

/// Parses `path`; prints every diagnostic to stderr and fails when one is an error.
pub fn load_definitions(path: &Path) -> anyhow::Result<Definitions> {
    let (defs, diagnostics) = load_process_file(path);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    match defs {
        Some(defs) if !has_errors(&diagnostics) => Ok(defs),
        _ => bail!("{} has errors", path.display()),
    }
}
