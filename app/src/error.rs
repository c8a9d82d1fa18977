//! [`AppError`]: the one error type of the application layer. Every failure has a kind that maps
//! to an exit code (the CLI) and an HTTP status (the server), and a message that says where and
//! why; diagnostics with `file:line:col` travel with it.

use flowbot_engine::diagnostics::Diagnostic;
use flowbot_engine::executor::ExecError;
use flowbot_engine::runtime::EngineError;
use flowbot_engine::store::StoreError;
use std::fmt;

/// What kind of failure an [`AppError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed (bad JSON, a missing field, a bad name).
    InvalidInput,
    /// A file or definition does not check: see the diagnostics.
    Invalid,
    /// No such instance, task, incident, process or file.
    NotFound,
    /// The request conflicts with the state (a guard rule refused it, the instance ended, the
    /// wait is gone).
    Conflict,
    /// The configuration is wrong.
    Config,
    /// Something needed is not available right now (the model, a full queue, the store).
    Unavailable,
    /// The store failed or holds data this build cannot read.
    Storage,
    /// Anything else that went wrong inside.
    Internal,
}

impl ErrorKind {
    /// The HTTP status this kind answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidInput => 400,
            ErrorKind::Invalid => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Config | ErrorKind::Storage | ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The process exit code of a command that fails this way: 1 for bad input and state, 2 for
    /// configuration and environment problems.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::InvalidInput
            | ErrorKind::Invalid
            | ErrorKind::NotFound
            | ErrorKind::Conflict => 1,
            ErrorKind::Config
            | ErrorKind::Unavailable
            | ErrorKind::Storage
            | ErrorKind::Internal => 2,
        }
    }

    /// A short title (RFC 9457 `title`).
    pub fn title(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "Invalid request",
            ErrorKind::Invalid => "Does not check",
            ErrorKind::NotFound => "Not found",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::Config => "Configuration error",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Storage => "Storage error",
            ErrorKind::Internal => "Internal error",
        }
    }
}

/// A failure of an application service.
#[derive(Debug, Clone)]
pub struct AppError {
    kind: ErrorKind,
    message: String,
    diagnostics: Vec<Diagnostic>,
    /// The instance, when the error is that another node serves it ([`AppError::served_elsewhere`]).
    served_elsewhere: Option<String>,
}

impl AppError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            diagnostics: Vec::new(),
            served_elsewhere: None,
        }
    }

    /// Bad input.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A configuration problem.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Something is not available.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// A file that does not check, with its diagnostics.
    pub fn diagnostics(message: impl Into<String>, diagnostics: Vec<Diagnostic>) -> Self {
        Self {
            kind: ErrorKind::Invalid,
            message: message.into(),
            diagnostics,
            served_elsewhere: None,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The instance the request was about, when another node of a cluster serves it (the HTTP
    /// layer forwards the request there).
    pub fn served_elsewhere(&self) -> Option<&str> {
        self.served_elsewhere.as_deref()
    }

    /// The `file:line:col` diagnostics behind an [`ErrorKind::Invalid`] error.
    pub fn diagnostic_list(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for diagnostic in &self.diagnostics {
            write!(f, "\n{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl From<EngineError> for AppError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Compile(diagnostics) => {
                AppError::diagnostics("the definitions do not compile", diagnostics)
            }
            EngineError::UnknownProcess(_) | EngineError::UnknownInstance(_) => {
                AppError::not_found(error.to_string())
            }
            EngineError::NoSuchWait { .. } => AppError::new(ErrorKind::Conflict, error.to_string()),
            EngineError::Exec(exec) => AppError::from(exec),
            EngineError::Store(store) => AppError::from(store),
            EngineError::Decode(_) => AppError::new(ErrorKind::Storage, error.to_string()),
            // Another node serves it (or will, once one takes the shard): ask again.
            EngineError::NotOwned { ref instance, .. } => AppError {
                served_elsewhere: Some(instance.clone()),
                ..AppError::new(ErrorKind::Unavailable, error.to_string())
            },
            EngineError::NoShards => AppError::new(ErrorKind::Unavailable, error.to_string()),
            other => AppError::new(ErrorKind::Internal, other.to_string()),
        }
    }
}

impl From<ExecError> for AppError {
    fn from(error: ExecError) -> Self {
        let kind = match &error {
            ExecError::Rejected { .. }
            | ExecError::VariablesRejected(_)
            | ExecError::StartRejected(_)
            | ExecError::NotActive(_)
            | ExecError::UnknownActivation(_)
            | ExecError::NotAJob { .. } => ErrorKind::Conflict,
            ExecError::Unsupported(_) | ExecError::NoStartEvent(_) | ExecError::NoSuchStart(_) => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Internal,
        };
        AppError::new(kind, error.to_string())
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        let kind = match &error {
            StoreError::Locked { .. } => ErrorKind::Config,
            _ => ErrorKind::Storage,
        };
        AppError::new(kind, error.to_string())
    }
}
