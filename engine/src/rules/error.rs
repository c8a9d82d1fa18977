//! The one error type of the rules module: every variant names the rule, and where the problem is
//! inside a script, the file, line and column.

use std::fmt;
use std::path::PathBuf;

/// A place in a rule file: `file:line:col` (line and column 1-based, 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLocation {
    /// The rule file (or `<inline>` for a rule written inside a workflow).
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub col: u32,
}

impl fmt::Display for RuleLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Why a rule could not be loaded, run, or why it refused an action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// The rule file is not valid Rhai, or one of its imports cannot be resolved.
    #[error("{location}: error: rule `{rule}` does not compile: {message}")]
    Compile {
        /// The rule's name.
        rule: String,
        /// Where the problem is.
        location: RuleLocation,
        /// What is wrong.
        message: String,
    },
    /// The rule failed while running (including a sandbox limit being hit).
    #[error("{location}: error: rule `{rule}` failed: {message}")]
    Runtime {
        /// The rule's name.
        rule: String,
        /// Where it failed.
        location: RuleLocation,
        /// What went wrong.
        message: String,
    },
    /// A guard refused the action; nothing may change.
    #[error("rule `{rule}` rejected the action: {message}")]
    Rejected {
        /// The guard's name.
        rule: String,
        /// The guard's message (from `reject(message)`).
        message: String,
    },
    /// A rule returned a value of the wrong kind.
    #[error("{location}: error: rule `{rule}` returned {found}, expected {expected}")]
    BadResult {
        /// The rule's name.
        rule: String,
        /// The rule file.
        location: RuleLocation,
        /// What was returned.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// A workflow refers to a rule file the rules folder does not hold (or that never compiled).
    #[error("rule `{rule}` is not loaded: no compiled file `{file}` in the rules folder")]
    NotFound {
        /// The rule's name.
        rule: String,
        /// The file name the workflow gave.
        file: String,
    },
    /// The rules folder (or a file in it) could not be read or watched.
    #[error("{path}: error: {message}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl RuleError {
    /// The name of the rule concerned, when there is one.
    pub fn rule(&self) -> Option<&str> {
        match self {
            RuleError::Compile { rule, .. }
            | RuleError::Runtime { rule, .. }
            | RuleError::Rejected { rule, .. }
            | RuleError::BadResult { rule, .. }
            | RuleError::NotFound { rule, .. } => Some(rule),
            RuleError::Io { .. } => None,
        }
    }

    /// Whether this is a guard's refusal (as opposed to a broken rule).
    pub fn is_rejection(&self) -> bool {
        matches!(self, RuleError::Rejected { .. })
    }
}
