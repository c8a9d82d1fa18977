//! A handler whose effect is a line in a file, made exactly-once with the idempotency key: the
//! crash test runs `flowbot bench --effects-log FILE` and checks that every job's key is in the
//! file exactly once, however often the process was killed.

use flowbot_engine::runtime::{handler, Handler, HandlerError, JobContext};
use serde_json::Map;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

struct EffectsLog {
    file: File,
    applied: HashSet<String>,
}

/// Opens (or creates) the log, drops a torn last line, and returns the handler.
pub fn effects_handler(path: &Path) -> anyhow::Result<Handler> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    if complete.len() != text.len() {
        std::fs::write(path, complete)?;
    }
    let applied = complete.lines().map(str::to_string).collect();
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let log = Arc::new(Mutex::new(EffectsLog { file, applied }));
    Ok(handler(move |ctx: JobContext| {
        let log = log.clone();
        async move {
            let mut log = log
                .lock()
                .map_err(|_| HandlerError::new("effects log poisoned"))?;
            if log.applied.insert(ctx.idempotency_key.clone()) {
                let line = format!("{}\n", ctx.idempotency_key);
                log.file
                    .write_all(line.as_bytes())
                    .map_err(|e| HandlerError::new(format!("effects log: {e}")))?;
            }
            Ok(Map::new())
        }
    }))
}
