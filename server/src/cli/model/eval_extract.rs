//! `flowbot model eval-extract DIR|FILE.jsonl [--workflow FILE] [--node ID]`: runs the `extract`
//! step of a workflow (by default the order case's `workflows/order_email.yaml`: its prompt,
//! examples and schema) over e-mails (`NAME.txt` with `NAME.expected.json` beside it, or a split
//! written by `flowbot dataset build`: one `{"text", "output"}` object per line) and reports the
//! valid-JSON rate and the exact-match rate of each field the schema requires, with the
//! throughput (e-mails per minute) and each e-mail's latency. `--batch N` submits N e-mails at a
//! time from N threads, so the local model decodes them together. `--compare A B` evaluates two
//! model files and prints them side by side.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use flowbot_engine::llm::{LlmOutput, LlmRequest, TextGenerator};
use flowbot_engine::model::{Activity, LlmMode, LlmTask, NodeKind, TaskKind};
use flowbot_engine::runtime::llm_step;
use serde_json::{Map, Value};
use std::path::Path;

use super::ModelChoice;
use flowbot_app::llm::RemoteTextGenerator;
use flowbot_model_runtime::batch::BatchOptions;

/// The workflow `extract` step whose prompt and schema are used, and the variable its prompt
/// takes the e-mail text in.
#[derive(Debug, Args)]
pub struct ExtractStep {
    /// The workflow whose `extract` step is used.
    #[arg(long, default_value = "workflows/order_email.yaml")]
    pub workflow: PathBuf,
    /// The extract step (default: the workflow's only `extract` step).
    #[arg(long)]
    pub node: Option<String>,
    /// The variable the e-mail text is given in (what the step's prompt names).
    #[arg(long, default_value = "email_text")]
    pub text_variable: String,
}

impl ExtractStep {
    /// The step.
    pub fn task(&self) -> anyhow::Result<LlmTask> {
        llm_task(&self.workflow, self.node.as_deref(), LlmMode::Extract)
    }

    /// The step's request for one e-mail.
    pub fn request(&self, task: &LlmTask, text: &str) -> anyhow::Result<LlmRequest> {
        let variables =
            Map::from_iter([(self.text_variable.clone(), Value::String(text.to_owned()))]);
        llm_step::build_request(task, &variables)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.workflow.display()))
    }
}

/// Arguments of `eval-extract`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Directory of `NAME.txt` e-mails with `NAME.expected.json`, or a data-set split
    /// (`test.jsonl` of `flowbot dataset build`).
    dir: PathBuf,
    #[command(flatten)]
    step: ExtractStep,
    /// Print each e-mail's result.
    #[arg(long)]
    verbose: bool,
    /// E-mails in flight at once (1: one after another); the local model decodes them together.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    batch: u16,
    /// Use an OpenAI-compatible server (e.g. http://gpu-1:8000/v1) instead of the local model.
    #[arg(long, requires = "openai_model")]
    openai_url: Option<String>,
    /// The model name to ask the server for.
    #[arg(long)]
    openai_model: Option<String>,
    /// Evaluate two local models one after the other and print them side by side (e.g. the
    /// base model and a fine-tuned one); an adapter file is applied to `--model`.
    #[arg(long, num_args = 2, value_names = ["MODEL_A", "MODEL_B"], conflicts_with = "openai_url")]
    compare: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelChoice,
}

/// The e-mails to evaluate, each with its name and expected fields: a folder's `NAME.txt` files
/// with their `NAME.expected.json`, in name order, or a data-set split's lines.
pub(super) fn labelled_emails(path: &Path) -> anyhow::Result<Vec<(String, String, Value)>> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        let content = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut emails = Vec::new();
        for (index, line) in content.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let place = format!("{}:{}", path.display(), index + 1);
            let example: Value =
                serde_json::from_str(line).with_context(|| format!("{place}: not JSON"))?;
            let (Some(text), Some(expected)) = (
                example.get("text").and_then(Value::as_str),
                example.get("output").filter(|o| o.is_object()),
            ) else {
                anyhow::bail!("{place}: a data-set line needs `text` and an `output` object");
            };
            emails.push((place, text.trim().to_owned(), expected.clone()));
        }
        anyhow::ensure!(!emails.is_empty(), "{}: no examples", path.display());
        return Ok(emails);
    }
    let mut mails: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{}: cannot list", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    mails.sort();
    anyhow::ensure!(
        !mails.is_empty(),
        "{}: no .txt e-mails found",
        path.display()
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
    Ok(emails)
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

/// The `llm` step of `mode` named `node` (or the only one of that mode) in the workflow file
/// `path`.
pub(super) fn llm_task(path: &Path, node: Option<&str>, mode: LlmMode) -> anyhow::Result<LlmTask> {
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
                if task.mode == mode && node.is_none_or(|wanted| wanted == candidate.id) {
                    steps.push((candidate.id.clone(), task.clone()));
                }
            }
        }
    }
    let kind = format!("{mode:?}").to_lowercase();
    match steps.len() {
        1 => Ok(steps.remove(0).1),
        0 => anyhow::bail!(
            "{} has no {kind} step{}",
            path.display(),
            node.map(|n| format!(" `{n}`")).unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "{} has several {kind} steps ({}): name one with --node",
            path.display(),
            steps
                .iter()
                .map(|(id, _)| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// What one configuration scored.
struct Report {
    /// Which configuration (the model file, with its adapter, or the server's model).
    name: String,
    emails: usize,
    valid: usize,
    /// Exact matches per field, in the order of `fields`.
    matches: Vec<usize>,
    all_fields: usize,
    wall: Duration,
    /// Each e-mail's latency, sorted.
    latencies: Vec<Duration>,
}

impl Report {
    fn pct(&self, k: usize) -> f64 {
        100.0 * k as f64 / self.emails as f64
    }

    /// `k/n (p%)`.
    fn rate(&self, k: usize) -> String {
        format!("{k}/{} ({:.1}%)", self.emails, self.pct(k))
    }

    fn per_minute(&self) -> f64 {
        self.emails as f64 * 60.0 / self.wall.as_secs_f64()
    }

    fn mean_latency(&self) -> Duration {
        self.latencies.iter().sum::<Duration>() / self.emails as u32
    }

    /// The report of one configuration.
    fn print(&self, fields: &[String], batch: u16) {
        let n = self.emails;
        println!("model:          {}", self.name);
        println!("e-mails:        {n}");
        println!("valid JSON:     {}", self.rate(self.valid));
        for (i, f) in fields.iter().enumerate() {
            println!("{:<15} {}", format!("{f}:"), self.rate(self.matches[i]));
        }
        println!("{:<15} {}", "all fields:", self.rate(self.all_fields));
        println!(
            "throughput:     {:.1} e-mails per minute ({n} in {:.1} s, {batch} at a time)",
            self.per_minute(),
            self.wall.as_secs_f64(),
        );
        println!(
            "latency:        mean {} ms, median {} ms, max {} ms",
            self.mean_latency().as_millis(),
            self.latencies[n / 2].as_millis(),
            self.latencies[n - 1].as_millis()
        );
    }
}

/// Two configurations side by side.
fn print_comparison(a: &Report, b: &Report, fields: &[String]) {
    let width = a.name.chars().count().max(22) + 2;
    let row = |label: &str, x: String, y: String| println!("{label:<16}{x:<width$}{y}");
    row("", a.name.clone(), b.name.clone());
    row("e-mails", a.emails.to_string(), b.emails.to_string());
    row("valid JSON", a.rate(a.valid), b.rate(b.valid));
    for (i, f) in fields.iter().enumerate() {
        row(f, a.rate(a.matches[i]), b.rate(b.matches[i]));
    }
    row("all fields", a.rate(a.all_fields), b.rate(b.all_fields));
    row(
        "e-mails/min",
        format!("{:.1}", a.per_minute()),
        format!("{:.1}", b.per_minute()),
    );
    row(
        "mean latency",
        format!("{} ms", a.mean_latency().as_millis()),
        format!("{} ms", b.mean_latency().as_millis()),
    );
}

impl EvalArgs {
    /// Runs the evaluation (or both of `--compare`) and prints the report.
    pub fn run(self) -> anyhow::Result<()> {
        let emails = labelled_emails(&self.dir)?;
        let task = self.step.task()?;
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
        let requests = emails
            .iter()
            .map(|(_, text, _)| self.step.request(&task, text))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if let [a, b] = self.compare.as_slice() {
            let reports = [a, b]
                .into_iter()
                .map(|model| {
                    let name = model.display().to_string();
                    let generator = self.local_generator(model, emails.len())?;
                    Ok(self.evaluate(name, generator.as_ref(), &emails, &requests, &fields))
                })
                .collect::<anyhow::Result<Vec<Report>>>()?;
            print_comparison(&reports[0], &reports[1], &fields);
            return Ok(());
        }
        // The same path an `extract` step of a process takes.
        let (name, generator): (String, Box<dyn TextGenerator>) =
            match (&self.openai_url, &self.openai_model) {
                (Some(url), Some(model)) => (
                    model.clone(),
                    Box::new(RemoteTextGenerator::new(url, model)),
                ),
                _ => {
                    let path = self.model.path()?;
                    let generator = self.local_generator(&path, emails.len())?;
                    let name = match &self.model.adapter {
                        Some(adapter) => format!("{} + {}", path.display(), adapter.display()),
                        None => path.display().to_string(),
                    };
                    (name, generator)
                }
            };
        let report = self.evaluate(name, generator.as_ref(), &emails, &requests, &fields);
        report.print(&fields, self.batch);
        Ok(())
    }

    /// The local model at `path` with `--batch` slots.
    fn local_generator(&self, path: &Path, queue: usize) -> anyhow::Result<Box<dyn TextGenerator>> {
        let batch = BatchOptions {
            slots: usize::from(self.batch),
            queue,
        };
        Ok(Box::new(self.model.load_local(path, batch)?))
    }

    /// Runs every request through `generator` from `--batch` threads and scores the answers.
    fn evaluate(
        &self,
        name: String,
        generator: &dyn TextGenerator,
        emails: &[(String, String, Value)],
        requests: &[LlmRequest],
        fields: &[String],
    ) -> Report {
        // Each e-mail's answer (or error) and latency, from `batch` threads taking the next one.
        type Answer = (anyhow::Result<Value>, Duration);
        let answers: Vec<Mutex<Option<Answer>>> = emails.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..usize::from(self.batch).min(emails.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let asked = Instant::now();
                    let answer = match generator.generate(request) {
                        Ok(response) => match response.output {
                            LlmOutput::Json(value) => Ok(value),
                            _ => Err(anyhow::anyhow!(
                                "the extractor answered something other than JSON"
                            )),
                        },
                        Err(error) => Err(error.into()),
                    };
                    *answers[i].lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((answer, asked.elapsed()));
                });
            }
        });
        let wall = started.elapsed();
        let answers: Vec<Answer> = answers
            .into_iter()
            .map(|a| {
                a.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_else(|| (Err(anyhow::anyhow!("not run")), Duration::ZERO))
            })
            .collect();
        let mut latencies: Vec<Duration> = answers.iter().map(|(_, l)| *l).collect();
        latencies.sort();
        let mut valid = 0usize;
        let mut matches = vec![0usize; fields.len()];
        let mut all_fields = 0usize;
        for ((email, _, expected), (answer, elapsed)) in emails.iter().zip(&answers) {
            let value = match answer {
                Ok(value) => value,
                Err(error) => {
                    eprintln!("{email}: {error}");
                    continue;
                }
            };
            valid += 1;
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
                    "{name} {email}: {value} ({} ms){}",
                    elapsed.as_millis(),
                    if all { "" } else { "  MISMATCH" }
                );
            }
        }
        Report {
            name,
            emails: emails.len(),
            valid,
            matches,
            all_fields,
            wall,
            latencies,
        }
    }
}
