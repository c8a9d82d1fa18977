//! The data set's one error type.

use std::path::PathBuf;

/// Why a data set could not be built. Bad items inside a readable source are not errors: they
/// are reported in [`crate::BuildReport`] and left out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatasetError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line of a JSONL source is not the JSON it should be.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A split ratio such as `8:1:1` could not be read.
    #[error("split `{0}`: expected three whole numbers such as 8:1:1 or 7:1:2, train:dev:test, train and test above 0")]
    BadSplit(String),
}

impl DatasetError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.into(),
            source,
        }
    }
}
