//! Bounds on what one file may hold, so that a hostile or broken export fails with a clear error
//! instead of exhausting memory.

/// Limits on one input file. Going over `max_file_bytes`, `max_rows` or `max_columns` makes the
/// file unreadable; a field over `max_field_bytes` makes its row a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, in bytes (as stored, before decoding).
    pub max_file_bytes: u64,
    /// Most data rows (records) in one file.
    pub max_rows: usize,
    /// Most columns (CSV header fields, distinct JSON keys).
    pub max_columns: usize,
    /// Longest field, in bytes of UTF-8.
    pub max_field_bytes: usize,
}

impl Default for Limits {
    /// 64 MiB, one million rows, 256 columns, 64 KiB per field.
    fn default() -> Self {
        Limits {
            max_file_bytes: 64 << 20,
            max_rows: 1_000_000,
            max_columns: 256,
            max_field_bytes: 64 << 10,
        }
    }
}
