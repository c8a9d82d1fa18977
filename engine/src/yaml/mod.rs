//! The YAML front end: a short, hand-editable process language (see `docs/yaml-dsl.md`).
//!
//! ```yaml
//! process: order_processing
//! nodes:
//!   order_received: { start: ~, next: import_order }
//!   import_order: { service: import_order, next: order_done }
//!   order_done: { end: ~ }
//! ```
//!
//! [`parse_yaml`] reads a file into the process model with every problem reported as a
//! [`Diagnostic`] at `file:line:col`; [`json_schema`] describes the same language as a JSON Schema
//! for editors.
//!
//! [`locator`] reads the structure of the text with saphyr's YAML parser, which reports spans: the
//! positions `serde_yaml` does not keep, checked against the [`limits`] on nesting and size;
//! `serde_yaml` then reads the document's values; `reader` turns them into the model;
//! `vocabulary` holds the keys both the reader and the schema use.

pub mod limits;
pub mod locator;
mod reader;
mod schema;
pub mod vocabulary;

pub use schema::json_schema;

use crate::diagnostics::Diagnostic;
use crate::model::{Definitions, Span};
use std::path::Path;

/// The largest process file read, in bytes (4 MiB). Larger input is refused before parsing.
pub const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;

/// Reads a YAML process file's bytes: checks the size and that the text is UTF-8, then
/// [`parse_yaml`].
pub fn parse_yaml_bytes(path: &Path, bytes: &[u8]) -> (Option<Definitions>, Vec<Diagnostic>) {
    if bytes.len() > MAX_SOURCE_BYTES {
        return (None, vec![too_large(path, bytes.len())]);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_yaml(path, text),
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            // Valid UTF-8 up to here, so the lossless conversion cannot fail.
            let before = String::from_utf8_lossy(valid);
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map_or(0, |last| last.chars().count())
                + 1;
            let message = format!(
                "the file is not UTF-8 text (invalid byte 0x{:02X}); save it as UTF-8",
                bytes[err.valid_up_to()]
            );
            (
                None,
                vec![Diagnostic::error(
                    path,
                    Span::new(line as u32, col as u32),
                    message,
                )],
            )
        }
    }
}

/// Reads a YAML process file into the process model.
///
/// Returns the definitions (one process) when the text is a YAML mapping at all — possibly
/// incomplete where diagnostics report errors — and every diagnostic found, each at
/// `path:line:col`. Never panics on any input.
pub fn parse_yaml(path: &Path, text: &str) -> (Option<Definitions>, Vec<Diagnostic>) {
    let empty =
        "the file is empty: a process file starts with `process: <id>` and lists its `nodes:`";
    let read = match read_document(path, text, empty) {
        Ok(read) => read,
        Err(problem) => return (None, vec![problem]),
    };
    tracing::debug!(file = %path.display(), "parsing YAML process");
    let (definitions, mut diagnostics) = reader::Reader::new(path, read.map).read(&read.value);
    diagnostics.splice(0..0, read.lenient);
    (definitions, diagnostics)
}

/// A YAML file's one document, read within the input limits.
pub(crate) struct Document<'t> {
    /// The text without a byte-order mark.
    pub text: &'t str,
    /// The document's value.
    pub value: serde_yaml::Value,
    /// Where each key, item and value is.
    pub map: locator::SourceMap,
    /// A warning for text serde_yaml reads but YAML 1.2 does not allow.
    pub lenient: Option<Diagnostic>,
}

/// Checks a YAML file's text against the input limits (size, characters, nesting, values,
/// aliases), locates its nodes and reads its one document, or returns the problem (`empty` is the
/// message for a file with no content). Process and decision files both come through here.
pub(crate) fn read_document<'t>(
    path: &Path,
    text: &'t str,
    empty: &str,
) -> Result<Document<'t>, Diagnostic> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(too_large(path, text.len()));
    }
    // A byte-order mark is not content (and editors do not count it as a column).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Err(Diagnostic::error(path, Span::new(1, 1), empty));
    }
    if let Some(problem) = limits::forbidden_character(text).or_else(|| limits::too_deep(text)) {
        return Err(Diagnostic::error(path, problem.span, problem.message));
    }
    let map = locator::SourceMap::read(text)
        .map_err(|problem| Diagnostic::error(path, problem.span, problem.message))?;
    let value = serde_yaml::from_str(text).map_err(|err| syntax_error(path, text, &map, &err))?;
    let lenient = map
        .syntax_error()
        .map(|(span, problem)| lenient_syntax(path, span, problem));
    Ok(Document {
        text,
        value,
        map,
        lenient,
    })
}

fn too_large(path: &Path, len: usize) -> Diagnostic {
    let message = format!(
        "the file is {len} bytes; process files are limited to {} bytes (4 MiB)",
        MAX_SOURCE_BYTES
    );
    Diagnostic::error(path, Span::new(1, 1), message)
}

/// A warning for text that `serde_yaml` reads but YAML 1.2 (and so the locator, and editors)
/// does not allow, such as a flow collection continued on a line indented no deeper than its key.
fn lenient_syntax(path: &Path, span: Span, problem: &str) -> Diagnostic {
    let message = format!(
        "not valid YAML 1.2: {problem}; read anyway, but editors may refuse the file and positions reported after this point are approximate"
    );
    Diagnostic::warning(path, span, message)
}

/// A YAML syntax error (or a limit hit by the YAML reader) as a diagnostic at its position.
fn syntax_error(
    path: &Path,
    text: &str,
    map: &locator::SourceMap,
    err: &serde_yaml::Error,
) -> Diagnostic {
    let raw = strip_positions(&err.to_string());
    if raw.contains("duplicate entry with key") {
        if let Some((key, first, again)) = map.duplicate_key() {
            let message = format!(
                "duplicate key `{key}`: already written at {}:{}; a key appears once per mapping (node ids are unique)",
                first.line, first.col
            );
            return Diagnostic::error(path, again, message).with_id(key);
        }
    }
    let reported = err
        .location()
        .map(|loc| Span::new(loc.line().max(1) as u32, loc.column().max(1) as u32))
        .unwrap_or(Span::new(1, 1));
    let (span, message) = if raw.contains("repetition limit exceeded") {
        let message = "the document expands too much through YAML aliases (`*name`); write the values out instead";
        (
            limits::first_alias(text).unwrap_or(reported),
            message.to_string(),
        )
    } else if raw.contains("recursion limit exceeded") {
        (reported, "the document is nested too deeply".to_string())
    } else if raw.contains("more than one document") {
        (
            reported,
            "the file holds more than one YAML document (`---`); put one process per file"
                .to_string(),
        )
    } else {
        (reported, format!("invalid YAML: {raw}"))
    };
    Diagnostic::error(path, span, message)
}

/// Removes the ` at line N column M` and ` at position N` parts of `serde_yaml` messages (the
/// diagnostic carries the position itself).
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 4..];
        let skipped = skip_position(tail);
        match skipped {
            Some(after) => rest = after,
            None => {
                out.push_str(" at ");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// When `text` starts with `line N column M` or `position N`, the text after it.
fn skip_position(text: &str) -> Option<&str> {
    fn number(text: &str) -> Option<&str> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        (end > 0).then(|| &text[end..])
    }
    if let Some(rest) = text.strip_prefix("line ") {
        let rest = number(rest)?;
        let rest = rest.strip_prefix(" column ")?;
        return number(rest);
    }
    number(text.strip_prefix("position ")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_serde_yaml_positions() {
        assert_eq!(
            strip_positions(
                "did not find expected key at line 3 column 5, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(
            strip_positions("look at this at position 12"),
            "look at this"
        );
    }
}
