//! Reviewers' corrections of what a language model read, kept as training data.
//!
//! When a person completes a task that has a `form` in an instance whose fields a language model
//! read (an `llm` step answered, or its output was not valid and was thrown as
//! `LLM_INVALID_OUTPUT`), one [`Correction`] is appended to `<data_dir>/corrections.jsonl`: the
//! input text, what the model wrote, the fields as the reviewer left them and which of them they
//! changed. The file is JSON Lines, one correction per line, appended and synced as each review
//! completes; `flowbot corrections export` reads it back and `flowbot dataset build --corrections
//! FILE` turns it into examples.
//!
//! Invariant: recording never fails a completion (the completion is already durable when the
//! correction is written); a write that fails is logged.

use crate::error::AppError;
use crate::App;
use flowbot_engine::graph::{Behavior, WaitSpec};
use flowbot_engine::llm::{
    LlmOutput, PromptTemplate, INVALID_OUTPUT_ERROR, INVALID_OUTPUT_VARIABLE,
};
use flowbot_engine::runtime::{HistoryEntry, TaskFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The corrections file's name in the data folder.
pub const CORRECTIONS_FILE: &str = "corrections.jsonl";

/// One reviewed model output: a line of `corrections.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// When the review was completed (RFC 3339, UTC).
    pub time: String,
    /// The instance.
    pub instance: String,
    /// Its process.
    pub process: String,
    /// The review task's node.
    pub task: String,
    /// The `llm` step whose output was reviewed.
    pub step: String,
    /// The text the model read: the step's rendered prompt (the e-mail).
    pub input: String,
    /// What the model wrote: the JSON object it extracted, or its text when that was not valid.
    pub model_output: Value,
    /// The form's fields as the reviewer left them (the training target).
    pub corrected: Map<String, Value>,
    /// The fields whose corrected value differs from the model's.
    pub changed: Vec<String>,
}

/// The path of the corrections file of an application's data folder.
pub fn corrections_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CORRECTIONS_FILE)
}

/// Reads every correction of `path`, in the order they were recorded. A line that is not a
/// correction is an error naming the file, the line and why.
pub fn read_corrections(path: &Path) -> Result<Vec<Correction>, AppError> {
    let file = std::fs::File::open(path)
        .map_err(|e| AppError::not_found(format!("{}: {e}", path.display())))?;
    let mut corrections = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| {
            AppError::invalid_input(format!("{}:{}: {e}", path.display(), index + 1))
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let correction = serde_json::from_str(&line).map_err(|e| {
            AppError::invalid_input(format!(
                "{}:{}: not a correction: {e}",
                path.display(),
                index + 1
            ))
        })?;
        corrections.push(correction);
    }
    Ok(corrections)
}

/// Appends `correction` to `path` as one line and syncs it.
pub fn append_correction(path: &Path, correction: &Correction) -> Result<(), AppError> {
    /// One writer at a time, so concurrent reviews never interleave their lines.
    static WRITING: Mutex<()> = Mutex::new(());
    let _writing = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut line = serde_json::to_vec(correction)
        .map_err(|e| AppError::new(crate::ErrorKind::Internal, e.to_string()))?;
    line.push(b'\n');
    let failed = |e: std::io::Error| {
        AppError::new(
            crate::ErrorKind::Storage,
            format!("cannot append to {}: {e}", path.display()),
        )
    };
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(failed)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(&line).map_err(failed)?;
    file.sync_data().map_err(failed)
}

/// What a review task shows before it is completed: its form and the model output it reviews.
#[derive(Debug)]
pub(crate) struct PendingReview {
    instance: String,
    process: String,
    task: String,
    step: String,
    input: String,
    model_output: Value,
    form: Map<String, Value>,
}

impl PendingReview {
    /// The correction once the reviewer completed the task with `submitted`.
    fn correction(self, submitted: &Map<String, Value>) -> Correction {
        let corrected: Map<String, Value> = self
            .form
            .into_iter()
            .map(|(field, current)| {
                let value = submitted.get(&field).cloned().unwrap_or(current);
                (field, value)
            })
            .collect();
        let changed = corrected
            .iter()
            .filter(|(field, value)| self.model_output.get(field.as_str()) != Some(value))
            .map(|(field, _)| field.clone())
            .collect();
        Correction {
            time: crate::view::time(now_ms()),
            instance: self.instance,
            process: self.process,
            task: self.task,
            step: self.step,
            input: self.input,
            model_output: self.model_output,
            corrected,
            changed,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl App {
    /// The review the task `instance:activation` is, when it has a form and its instance has
    /// model output to review; `None` for any other task.
    pub(crate) fn pending_review(&self, instance: &str, activation: u64) -> Option<PendingReview> {
        let filter = TaskFilter {
            instance: Some(instance.to_string()),
            ..TaskFilter::default()
        };
        let task = self
            .engine()
            .open_tasks(&filter)
            .into_iter()
            .find(|task| task.activation == activation && !task.form.is_empty())?;
        let info = self.engine().instance(instance).ok()?;
        let history = self.engine().history(instance).ok()?;
        // The model's latest word: an answer, or an output thrown as not valid.
        let last = history
            .iter()
            .rev()
            .find_map(|record| match &record.entry {
                HistoryEntry::LlmCalled {
                    node,
                    prompt,
                    output: LlmOutput::Json(value),
                    ..
                } => Some((node.clone(), Some(prompt.clone()), value.clone())),
                HistoryEntry::JobErrorThrown { node, code, .. } if code == INVALID_OUTPUT_ERROR => {
                    let output = info
                        .variables
                        .get(INVALID_OUTPUT_VARIABLE)
                        .and_then(|error| error.get("output"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    Some((node.clone(), None, output))
                }
                _ => None,
            })?;
        let (step, prompt, model_output) = last;
        let input = match prompt {
            Some(prompt) => prompt,
            None => self.rendered_prompt(&info.process_id, info.version, &step, &info.variables)?,
        };
        Some(PendingReview {
            instance: instance.to_string(),
            process: info.process_id,
            task: task.node,
            step,
            input,
            model_output,
            form: task.form,
        })
    }

    /// Records the correction of a review the reviewer completed with `submitted`.
    pub(crate) fn record_correction(&self, review: PendingReview, submitted: &Map<String, Value>) {
        let path = corrections_path(&self.config().data_dir);
        let correction = review.correction(submitted);
        match append_correction(&path, &correction) {
            Ok(()) => tracing::info!(
                instance = %correction.instance,
                changed = ?correction.changed,
                file = %path.display(),
                "correction recorded"
            ),
            Err(error) => tracing::error!(
                instance = %correction.instance,
                %error,
                "recording a correction failed"
            ),
        }
    }

    /// The prompt the `llm` step `node` of a process version renders over `variables`.
    fn rendered_prompt(
        &self,
        process: &str,
        version: u32,
        node: &str,
        variables: &Map<String, Value>,
    ) -> Option<String> {
        let deployed = self.deployed(process, Some(version)).ok()?;
        let index = deployed.process.node_index(node)?;
        let Behavior::Wait(WaitSpec::Llm(task)) = &deployed.process.node(index).behavior else {
            return None;
        };
        PromptTemplate::parse(&task.prompt)
            .ok()?
            .render(variables)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review() -> PendingReview {
        PendingReview {
            instance: "order_email-1".into(),
            process: "order_email".into(),
            task: "review_extraction".into(),
            step: "extract".into(),
            input: "Please ship order 7 for ACME, 120 EUR".into(),
            model_output: json!({"order_id": "7", "customer": "ACME", "total": 12, "currency": "EUR"}),
            form: json!({"order_id": "7", "customer": "ACME", "total": 12, "currency": "EUR"})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    #[test]
    fn a_correction_keeps_the_submitted_fields_and_names_the_changed_ones() {
        let submitted = json!({"total": 120, "note": "not in the form"});
        let correction = review().correction(submitted.as_object().unwrap());
        assert_eq!(
            Value::Object(correction.corrected.clone()),
            json!({"order_id": "7", "customer": "ACME", "total": 120, "currency": "EUR"})
        );
        assert_eq!(correction.changed, vec!["total"]);
        assert_eq!(correction.step, "extract");
    }

    #[test]
    fn corrections_append_and_read_back_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = corrections_path(&dir.path().join("data"));
        let first = review().correction(&Map::new());
        let second = review().correction(json!({"customer": "ACME Ltd"}).as_object().unwrap());
        append_correction(&path, &first).unwrap();
        append_correction(&path, &second).unwrap();
        assert_eq!(read_corrections(&path).unwrap(), vec![first, second]);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\": 1}\n")
            .unwrap();
        let err = read_corrections(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrections.jsonl:3: not a correction"),
            "{err}"
        );
        let missing = read_corrections(&dir.path().join("none.jsonl")).unwrap_err();
        assert_eq!(missing.kind(), crate::ErrorKind::NotFound);
    }
}
