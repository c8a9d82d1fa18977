//! The BPMN 2.0 XML front end: reads `.bpmn` files into the process model ([`Definitions`]).
//!
//! Elements are recognised by local name in the BPMN model namespace, whatever its prefix
//! (`bpmn:`, `bpmn2:`, a default namespace, or the older `http://schema.omg.org/spec/BPMN/2.0`).
//! Diagram interchange and unknown extensions are skipped; Camunda, Zeebe and SpiffWorkflow
//! attributes fill handler and loop settings; the Flowbot namespace
//! ([`FLOWBOT_NAMESPACE`]) adds what BPMN lacks (handlers, retries, rules, language-model steps).
//! See `docs/bpmn.md`.
//!
//! Parsing never panics on input: every problem becomes a [`Diagnostic`] with `file:line:col`.
//! Input is bounded ([`MAX_FILE_BYTES`], [`MAX_DEPTH`], [`MAX_ELEMENTS`], [`MAX_ATTRIBUTES`],
//! [`MAX_SUBPROCESS_DEPTH`]) and the XML is read without recursion.

mod builder;
mod events;
mod extensions;
pub(crate) mod namespaces;
pub(crate) mod position;
mod tasks;
pub(crate) mod xml_tree;

pub use builder::MAX_SUBPROCESS_DEPTH;
pub use namespaces::FLOWBOT_NAMESPACE;
pub use xml_tree::{MAX_ATTRIBUTES, MAX_DEPTH, MAX_ELEMENTS};

use crate::diagnostics::Diagnostic;
use crate::model::{Definitions, Span};
use position::Cursor;
use std::io::Read;
use std::path::Path;

/// The largest BPMN file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses the BPMN 2.0 XML `text` of the file at `path` (used in diagnostics only).
///
/// Returns the definitions, or `None` when the text cannot be read as BPMN XML at all, plus every
/// problem found. Definitions come back even when diagnostics hold errors, so callers can report
/// everything at once; check [`crate::diagnostics::has_errors`] before running them. All processes
/// are kept in document order; the caller picks the one named, or the first executable one.
pub fn parse_bpmn(path: &Path, text: &[u8]) -> (Option<Definitions>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let Some(text) = checked_text(path, text, "BPMN", &mut diagnostics) else {
        return (None, diagnostics);
    };
    let Some(tree) = xml_tree::read_tree(path, text, &mut diagnostics) else {
        return (None, diagnostics);
    };
    let definitions = builder::build_definitions(&tree, path, &mut diagnostics);
    tracing::debug!(
        file = %path.display(),
        processes = definitions.as_ref().map_or(0, |d| d.processes.len()),
        diagnostics = diagnostics.len(),
        "parsed BPMN"
    );
    (definitions, diagnostics)
}

/// Reads and parses the BPMN file at `path`; an unreadable or oversized file is reported as a
/// diagnostic, and at most [`MAX_FILE_BYTES`] + 1 bytes are ever read.
pub fn parse_bpmn_file(path: &Path) -> (Option<Definitions>, Vec<Diagnostic>) {
    let mut text = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut text));
    match read {
        Ok(_) => parse_bpmn(path, &text),
        Err(error) => {
            let message = format!("cannot read the file: {error}");
            (
                None,
                vec![Diagnostic::error(path, Span::new(1, 1), message)],
            )
        }
    }
}

/// Checks size ([`MAX_FILE_BYTES`]) and encoding of an XML file of `kind` (`BPMN`, `DMN`);
/// returns the text without a byte-order mark.
pub(crate) fn checked_text<'a>(
    path: &Path,
    text: &'a [u8],
    kind: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'a str> {
    let start = Span::new(1, 1);
    if text.len() > MAX_FILE_BYTES {
        let message = format!(
            "file is larger than the {} MiB limit for {kind} files",
            MAX_FILE_BYTES / (1024 * 1024)
        );
        diagnostics.push(Diagnostic::error(path, start, message));
        return None;
    }
    if text.starts_with(b"\xFF\xFE") || text.starts_with(b"\xFE\xFF") {
        diagnostics.push(Diagnostic::error(
            path,
            start,
            "file is UTF-16 encoded; save it as UTF-8",
        ));
        return None;
    }
    let text = text.strip_prefix(UTF8_BOM).unwrap_or(text);
    match std::str::from_utf8(text) {
        Ok(text) if text.trim().is_empty() => {
            diagnostics.push(Diagnostic::error(path, start, "file is empty"));
            None
        }
        Ok(text) => Some(text),
        Err(error) => {
            let offset = error.valid_up_to();
            let span = Cursor::default().span_at(text, offset);
            let message = format!(
                "file is not valid UTF-8 (byte 0x{:02X}); {kind} files must be UTF-8 encoded",
                text[offset]
            );
            diagnostics.push(Diagnostic::error(path, span, message));
            None
        }
    }
}

#[cfg(test)]
mod tests;
