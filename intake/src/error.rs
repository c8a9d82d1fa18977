//! Errors that make a whole file unreadable (a bad row is not an error: it goes to the report).

use crate::fields::Field;

/// Why a file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system refused to read it.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Larger than [`Limits::max_file_bytes`](crate::Limits::max_file_bytes).
    #[error("{size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Neither UTF-8 nor GB18030, and the mapping names no encoding.
    #[error(
        "line {line}: not UTF-8, and not GBK/GB18030 either; name the encoding in the mapping"
    )]
    UnknownEncoding {
        /// The first line that is not UTF-8.
        line: usize,
    },
    /// Not valid in the encoding the mapping names (or its byte order mark says).
    #[error("line {line}: not valid {encoding}")]
    Malformed {
        /// The encoding.
        encoding: &'static str,
        /// The first line with a bad byte sequence.
        line: usize,
    },
    /// Nothing in it: no header row, no records.
    #[error("the file is empty")]
    Empty,
    /// The CSV reader gave up.
    #[error("line {line}: not CSV: {message}")]
    Csv {
        /// Where.
        line: u64,
        /// The reader's message.
        message: String,
    },
    /// Not JSON.
    #[error("line {line}, column {column}: not JSON: {message}")]
    Json {
        /// Where.
        line: usize,
        /// Where on the line.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// JSON that is neither an array of records nor an object holding one.
    #[error("the JSON is neither an array of records nor an object holding one")]
    NotRecords,
    /// A JSON object holding several arrays, and the mapping names none.
    #[error(
        "the JSON object holds several arrays ({keys}); name the one of the records with `records` in the mapping"
    )]
    SeveralArrays {
        /// Their keys.
        keys: String,
    },
    /// The array the mapping names is not there.
    #[error("the JSON object has no array `{key}`")]
    NoArray {
        /// The key the mapping names.
        key: String,
    },
    /// More columns than [`Limits::max_columns`](crate::Limits::max_columns).
    #[error("more than {limit} columns")]
    TooManyColumns {
        /// The limit.
        limit: usize,
    },
    /// More records than [`Limits::max_rows`](crate::Limits::max_rows).
    #[error("more than {limit} rows")]
    TooManyRows {
        /// The limit.
        limit: usize,
    },
    /// Two columns give the same field.
    #[error("columns `{first}` and `{second}` both give {field}; map one of them (to the field or to `ignore`) in the mapping")]
    AmbiguousColumns {
        /// The field.
        field: Field,
        /// The first column's header.
        first: String,
        /// The second column's header.
        second: String,
    },
    /// No column gives the order id.
    #[error(
        "no column gives the order id (columns: {headers}); map one to `order_id` in the mapping"
    )]
    NoOrderIdColumn {
        /// The headers there are.
        headers: String,
    },
}

/// A file that cannot be read at all, with its name.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {error}")]
pub struct ReadError {
    /// The file name as given.
    pub file: String,
    /// Why.
    pub error: FileError,
}
