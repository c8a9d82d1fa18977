//! `flowbot model eval-extract DIR [--workflow FILE] [--node ID]`: runs the `extract` step of a
//! workflow (by default the order case's `workflows/order_email.yaml`: its prompt, examples and
//! schema) over e-mails (`NAME.txt` with `NAME.expected.json` beside it) and reports the
//! valid-JSON rate and the exact-match rate of each field the schema requires.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use flowbot_engine::llm::{LlmOutput, TextGenerator};
use flowbot_engine::model::{Activity, LlmMode, LlmTask, NodeKind, TaskKind};
use flowbot_engine::runtime::llm_step;
use serde_json::{Map, Value};
use std::path::Path;

use super::ModelChoice;
use flowbot_app::llm::{LocalTextGenerator, RemoteTextGenerator};

/// Arguments of `eval-extract`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Directory of `NAME.txt` e-mails with `NAME.expected.json`.
    dir: PathBuf,
    /// The workflow whose `extract` step is measured.
    #[arg(long, default_value = "workflows/order_email.yaml")]
    workflow: PathBuf,
    /// The extract step (default: the workflow's only `extract` step).
    #[arg(long)]
    node: Option<String>,
    /// The variable the e-mail text is given in (what the step's prompt names).
    #[arg(long, default_value = "email_text")]
    text_variable: String,
    /// Print each e-mail's result.
    #[arg(long)]
    verbose: bool,
    /// Use an OpenAI-compatible server (e.g. http://gpu-1:8000/v1) instead of the local model.
    #[arg(long, requires = "openai_model")]
    openai_url: Option<String>,
    /// The model name to ask the server for.
    #[arg(long)]
    openai_model: Option<String>,
    #[command(flatten)]
    model: ModelChoice,
}

/// Whether an extracted value is the expected one: numbers to the cent, text trimmed.
fn field_matches(got: Option<&Value>, expected: Option<&Value>) -> bool {
    match (got, expected) {
        (Some(Value::Number(g)), Some(Value::Number(e))) => match (g.as_f64(), e.as_f64()) {
            (Some(g), Some(e)) => (g - e).abs() < 0.005,
            _ => false,
        },
        (Some(Value::String(g)), Some(Value::String(e))) => g.trim() == e.trim(),
        _ => false,
    }
}

/// The `extract` step `node` (or the only one) of the workflow file `path`.
fn extract_task(path: &Path, node: Option<&str>) -> anyhow::Result<LlmTask> {
    let (defs, diagnostics) = flowbot_app::project::read_process_file(path);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    let defs = defs.with_context(|| format!("{} does not parse", path.display()))?;
    let mut steps = Vec::new();
    for process in &defs.processes {
        for candidate in &process.nodes {
            if let NodeKind::Task(Activity {
                body: TaskKind::Llm(task),
                ..
            }) = &candidate.kind
            {
                if task.mode == LlmMode::Extract && node.is_none_or(|wanted| wanted == candidate.id)
                {
                    steps.push((candidate.id.clone(), task.clone()));
                }
            }
        }
    }
    match steps.len() {
        1 => Ok(steps.remove(0).1),
        0 => anyhow::bail!(
            "{} has no extract step{}",
            path.display(),
            node.map(|n| format!(" `{n}`")).unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "{} has several extract steps ({}): name one with --node",
            path.display(),
            steps
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl EvalArgs {
    /// Runs the evaluation and prints the report.
    pub fn run(self) -> anyhow::Result<()> {
        let mut mails: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        mails.sort();
        anyhow::ensure!(
            !mails.is_empty(),
            "{}: no .txt e-mails found",
            self.dir.display()
        );
        // The same path an `extract` step of a process takes.
        let generator: Box<dyn TextGenerator> = match (&self.openai_url, &self.openai_model) {
            (Some(url), Some(model)) => Box::new(RemoteTextGenerator::new(url, model)),
            _ => Box::new(LocalTextGenerator::load(
                &self.model.path()?,
                self.model.backend()?,
            )?),
        };
        let task = extract_task(&self.workflow, self.node.as_deref())?;
        let fields: Vec<String> = task
            .schema
            .as_ref()
            .and_then(|schema| schema.get("required"))
            .and_then(Value::as_array)
            .map(|required| {
                required
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        anyhow::ensure!(
            !fields.is_empty(),
            "the extract step's schema requires no fields to compare"
        );
        let mut emails = Vec::new();
        for mail in &mails {
            let text = std::fs::read_to_string(mail)
                .with_context(|| format!("{}: cannot read", mail.display()))?;
            let expected_path = mail.with_extension("expected.json");
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(&expected_path)
                    .with_context(|| format!("{}: cannot read", expected_path.display()))?,
            )
            .with_context(|| format!("{}: not JSON", expected_path.display()))?;
            let name = mail
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            emails.push((name, text.trim().to_owned(), expected));
        }
        let mut answers: Vec<Option<(Value, std::time::Duration)>> = Vec::new();
        for (name, text, _) in &emails {
            let variables =
                Map::from_iter([(self.text_variable.clone(), Value::String(text.clone()))]);
            let request = llm_step::build_request(&task, &variables)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.workflow.display()))?;
            answers.push(match generator.generate(&request) {
                Ok(response) => {
                    let LlmOutput::Json(value) = response.output else {
                        anyhow::bail!("{name}: the extractor answered something other than JSON");
                    };
                    Some((value, response.elapsed))
                }
                Err(error) => {
                    eprintln!("{name}: {error}");
                    None
                }
            });
        }
        let mut valid = 0usize;
        let mut matches = vec![0usize; fields.len()];
        let mut all_fields = 0usize;
        let mut total_time = std::time::Duration::ZERO;
        for ((name, _, expected), answer) in emails.iter().zip(&answers) {
            let Some((value, elapsed)) = answer else {
                continue;
            };
            valid += 1;
            total_time += *elapsed;
            let hits: Vec<bool> = fields
                .iter()
                .map(|f| field_matches(value.get(f.as_str()), expected.get(f.as_str())))
                .collect();
            for (i, hit) in hits.iter().enumerate() {
                matches[i] += usize::from(*hit);
            }
            let all = hits.iter().all(|h| *h);
            all_fields += usize::from(all);
            if self.verbose {
                eprintln!(
                    "{name}: {value} ({} ms){}",
                    elapsed.as_millis(),
                    if all { "" } else { "  MISMATCH" }
                );
            }
        }
        let n = mails.len();
        let pct = |k: usize| 100.0 * k as f64 / n as f64;
        println!("e-mails:        {n}");
        println!("valid JSON:     {valid}/{n} ({:.1}%)", pct(valid));
        for (i, f) in fields.iter().enumerate() {
            println!(
                "{:<15} {}/{n} ({:.1}%)",
                format!("{f}:"),
                matches[i],
                pct(matches[i])
            );
        }
        println!(
            "{:<15} {all_fields}/{n} ({:.1}%)",
            "all fields:",
            pct(all_fields)
        );
        if valid > 0 {
            println!(
                "time per e-mail: {} ms (mean)",
                total_time.as_millis() / valid as u128
            );
        }
        Ok(())
    }
}
