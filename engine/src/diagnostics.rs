//! Diagnostics: the one error/warning type every front end, the compiler and the rule checker
//! report, formatted as `path:line:col: error|warning: message [id]`.
//!
//! Front ends and the compiler return a value *plus* diagnostics instead of stopping at the first
//! problem, so one pass reports every problem in a file.

use crate::model::Span;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file can still be run.
    Warning,
    /// The file cannot be run.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One problem found in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// Where in the file.
    pub span: Span,
    /// What is wrong, in words a process author understands.
    pub message: String,
    /// The id of the element concerned, when there is one.
    pub id: Option<String>,
}

impl Diagnostic {
    /// An error at `span` in `file`.
    pub fn error(file: &Path, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.to_path_buf(),
            span,
            message: message.into(),
            id: None,
        }
    }

    /// A warning at `span` in `file`.
    pub fn warning(file: &Path, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            file: file.to_path_buf(),
            span,
            message: message.into(),
            id: None,
        }
    }

    /// Names the element concerned.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// `file:line:col`, the location alone.
    pub fn location(&self) -> String {
        format!(
            "{}:{}:{}",
            self.file.display(),
            self.span.line,
            self.span.col
        )
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.location(),
            self.severity,
            self.message
        )?;
        if let Some(id) = &self.id {
            write!(f, " [{id}]")?;
        }
        Ok(())
    }
}

/// Whether any diagnostic in `diagnostics` is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_path_line_col_severity_message_id() {
        let d = Diagnostic::error(Path::new("w/a.bpmn"), Span::new(3, 7), "unknown node `x`")
            .with_id("f1");
        assert_eq!(d.to_string(), "w/a.bpmn:3:7: error: unknown node `x` [f1]");
        let w = Diagnostic::warning(Path::new("a.yaml"), Span::new(1, 1), "no default");
        assert_eq!(w.to_string(), "a.yaml:1:1: warning: no default");
    }
}
