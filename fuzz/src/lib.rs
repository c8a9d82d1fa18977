//! Helpers shared by the fuzz targets in `src/bin/`: one file per input path, each a
//! `fuzz_target!` over raw bytes (see `docs/fuzzing.md` for adding one).

use std::borrow::Cow;

/// The input as text, invalid UTF-8 replaced (for paths that take `&str`).
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Splits the input at its first NUL byte: two independent inputs in one (a schema and the output
/// to check, a script and the variables it runs on). Without a NUL the second part is empty.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

/// The second part of a [`split`] input as a JSON object of variables (empty when it is not one).
pub fn variables(data: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_slice(data)
        .ok()
        .and_then(|v: serde_json::Value| v.as_object().cloned())
        .unwrap_or_default()
}
