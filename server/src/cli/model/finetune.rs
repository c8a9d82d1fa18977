//! `flowbot model finetune --train FILE --dev FILE --out DIR`: trains the model on the order
//! case's own examples for a workflow's `extract` step (by default `workflows/order_email.yaml`):
//! each example is rendered with the step's system prompt, prompt template and the model's chat
//! template, and its answer written as the constrained decoder writes it. Method `head` trains
//! the output layer over the frozen model (hidden states computed once); `lora` trains low-rank
//! adapters on every projection over the frozen base; `full` trains every weight. Each writes
//! `DIR/model.gguf`, a copy of the base model with the trained tensors (adapters folded in), and
//! `DIR/manifest.json` (base model and data hashes, options, per-epoch metrics, time, memory);
//! `lora` also writes `DIR/adapter.gguf`, the adapters alone, which the fast backend applies at
//! run time over the unchanged base (`--adapter`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::fast::lora::BASE_SHA256_KEY;
use flowbot_model_runtime::fast::{FastLlama, FastOptions};
use flowbot_model_runtime::finetune::{
    collect_features, initial_head, train_head, train_network, write_lora_adapter,
    write_with_output_head, write_with_tensors, Adaptation, ExampleWriter, FinetuneError, Progress,
    TrainExample, TrainOptions, TrainReport, TrainableLlama,
};
use flowbot_model_runtime::gguf::sha256_file;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::eval_extract::{labelled_emails, ExtractStep};
use super::ModelChoice;

/// The adapter file `lora` writes beside the merged model.
const ADAPTER_FILE: &str = "adapter.gguf";

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Method {
    /// The output layer only, over the frozen model (untied from the token embeddings).
    Head,
    /// Low-rank adapters on every projection of every block, over the frozen base.
    Lora,
    /// Every weight.
    Full,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Head => "head",
            Method::Lora => "lora",
            Method::Full => "full",
        }
    }
}

/// Arguments of `finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// Training examples: a split of `flowbot dataset build` (`train.jsonl`) or a folder of
    /// `NAME.txt` e-mails with `NAME.expected.json`.
    #[arg(long)]
    train: PathBuf,
    /// Examples scored after every epoch (early stop and the kept checkpoint go by their loss).
    #[arg(long)]
    dev: PathBuf,
    /// What to train.
    #[arg(long, value_enum, default_value = "head")]
    method: Method,
    /// The adapters' rank (`lora`).
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// The adapters' scale numerator: their output is multiplied by alpha / rank (`lora`).
    #[arg(long, default_value_t = 16.0)]
    alpha: f64,
    /// Most passes over the training examples.
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Learning rate (AdamW).
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Seed of the example order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Stop after this many epochs without a lower dev loss.
    #[arg(long, default_value_t = 1)]
    patience: usize,
    /// Stop training after this many minutes, keeping the best checkpoint.
    #[arg(long)]
    max_minutes: Option<f64>,
    #[command(flatten)]
    step: ExtractStep,
    /// Threads of the frozen model's forward passes for `head` (default: every CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// The folder to write `model.gguf`, `manifest.json` and (for `lora`) `adapter.gguf` to.
    #[arg(long)]
    out: PathBuf,
    /// Print the manifest as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelChoice,
}

/// One split turned into examples, with what was left out and why.
struct Examples {
    path: PathBuf,
    examples: Vec<TrainExample>,
    left_out: Vec<String>,
}

/// The peak resident memory of this process (Linux), in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bar(len: usize, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Sets the returned flag on Ctrl-C (training then stops after its current step).
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&cancel);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if runtime.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("interrupted: stopping after this step, keeping the best checkpoint");
            flag.store(true, Ordering::Relaxed);
        }
    });
    cancel
}

impl FinetuneArgs {
    /// The examples of one split, rendered for the extract step.
    fn examples(
        &self,
        path: &Path,
        writer: &ExampleWriter,
        task: &flowbot_engine::model::LlmTask,
        schema: &ObjectSchema,
    ) -> anyhow::Result<Examples> {
        let mut examples = Vec::new();
        let mut left_out = Vec::new();
        for (place, text, expected) in labelled_emails(path)? {
            let request = self.step.request(task, &text)?;
            match writer.json_example(
                request.system.as_deref(),
                &request.prompt,
                schema,
                &expected,
            ) {
                Ok(example) => examples.push(example),
                Err(reason) => left_out.push(format!("{place}: {reason}")),
            }
        }
        anyhow::ensure!(
            !examples.is_empty(),
            "{}: no example can be trained on ({} left out; first: {})",
            path.display(),
            left_out.len(),
            left_out.first().map(String::as_str).unwrap_or("-")
        );
        Ok(Examples {
            path: path.to_owned(),
            examples,
            left_out,
        })
    }

    /// Trains, writes the tuned model and its manifest, and prints the report.
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let base = self.model.path()?;
        anyhow::ensure!(
            base.is_file(),
            "{}: fine-tuning needs a GGUF model file",
            base.display()
        );
        let task = self.step.task()?;
        let schema_json = task.schema.as_ref().with_context(|| {
            format!(
                "{}: the extract step has no schema",
                self.step.workflow.display()
            )
        })?;
        let schema = ObjectSchema::from_json_schema(schema_json).with_context(|| {
            format!(
                "{}: the extract step's schema",
                self.step.workflow.display()
            )
        })?;
        let writer = ExampleWriter::for_gguf(&base)?;
        let train = self.examples(&self.train, &writer, &task, &schema)?;
        let dev = self.examples(&self.dev, &writer, &task, &schema)?;
        for reason in train.left_out.iter().chain(&dev.left_out) {
            eprintln!("left out: {reason}");
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("{}: cannot create", self.out.display()))?;

        let options = TrainOptions {
            epochs: self.epochs,
            learning_rate: self.lr,
            batch_examples: self.batch,
            seed: self.seed,
            patience: self.patience,
            time_limit: self.max_minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
        };
        let cancel = cancel_on_ctrl_c();
        let tokens = |split: &Examples| -> usize {
            split
                .examples
                .iter()
                .map(TrainExample::trained_tokens)
                .sum()
        };
        let (train_tokens, dev_tokens) = (tokens(&train), tokens(&dev));
        let model_out = self.out.join("model.gguf");
        let adapter_out = self.out.join(ADAPTER_FILE);
        let base_sha256 = sha256_file(&base)?;
        let metadata = [
            ("flowbot.finetune.method", self.method.name()),
            ("flowbot.finetune.base_sha256", base_sha256.as_str()),
        ];
        let mut seconds = serde_json::Map::new();
        let report = match self.method {
            Method::Head => {
                let mut lm = FastLlama::load(
                    &base,
                    &FastOptions {
                        threads: self.threads,
                        ..FastOptions::default()
                    },
                )?;
                let features_started = Instant::now();
                let mut features = Vec::new();
                for (split, name) in [(&train, "train"), (&dev, "dev")] {
                    let progress = bar(
                        split.examples.len(),
                        &format!(
                            "hidden states ({name}) [{{bar:30}}] {{pos}}/{{len}} examples, {{per_sec}}, ETA {{eta}}"
                        ),
                    );
                    features.push(collect_features(&mut lm, &split.examples, |done| {
                        progress.set_position(done as u64)
                    })?);
                    progress.finish_and_clear();
                }
                drop(lm);
                seconds.insert(
                    "features".into(),
                    json!(features_started.elapsed().as_secs_f64()),
                );
                let initial = initial_head(&base)?;
                let run = self.train_with_progress(
                    [&train, &dev],
                    train_tokens,
                    &mut seconds,
                    |progress| {
                        train_head(
                            &initial,
                            &features[0],
                            &features[1],
                            &options,
                            &cancel,
                            progress,
                        )
                    },
                )?;
                write_with_output_head(&base, &run.head, &metadata, &model_out)?;
                run.report
            }
            Method::Lora | Method::Full => {
                let adaptation = match self.method {
                    Method::Lora => Adaptation::Lora {
                        rank: self.rank,
                        alpha: self.alpha,
                    },
                    _ => Adaptation::Full,
                };
                let loading = Instant::now();
                let model = TrainableLlama::load(&base, adaptation, self.seed)?;
                seconds.insert("load".into(), json!(loading.elapsed().as_secs_f64()));
                let run = self.train_with_progress(
                    [&train, &dev],
                    train_tokens,
                    &mut seconds,
                    |progress| {
                        train_network(
                            model,
                            &train.examples,
                            &dev.examples,
                            &options,
                            &cancel,
                            progress,
                        )
                    },
                )?;
                write_with_tensors(&base, &run.model.changed_tensors()?, &metadata, &model_out)?;
                if self.method == Method::Lora {
                    write_lora_adapter(
                        &base,
                        &run.model.adapter_tensors(),
                        self.alpha as f32,
                        &[
                            ("flowbot.finetune.method", self.method.name()),
                            (BASE_SHA256_KEY, base_sha256.as_str()),
                        ],
                        &adapter_out,
                    )?;
                }
                run.report
            }
        };
        seconds.insert("total".into(), json!(started.elapsed().as_secs_f64()));
        let manifest = self.manifest(
            &base,
            &base_sha256,
            &model_out,
            [&train, &dev],
            [train_tokens, dev_tokens],
            &report,
            Value::Object(seconds),
        )?;
        let manifest_path = self.out.join("manifest.json");
        std::fs::write(
            &manifest_path,
            serde_json::to_string_pretty(&manifest)? + "\n",
        )
        .with_context(|| format!("{}: cannot write", manifest_path.display()))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&manifest)?);
        } else {
            print_summary(&report, &manifest, &model_out);
        }
        Ok(())
    }

    /// Says what training runs on, then runs `train` with a progress bar over its steps and
    /// records its time in `seconds` (`training`).
    fn train_with_progress<T>(
        &self,
        [train_split, dev_split]: [&Examples; 2],
        train_tokens: usize,
        seconds: &mut serde_json::Map<String, Value>,
        train: impl FnOnce(&mut dyn FnMut(&Progress)) -> Result<T, FinetuneError>,
    ) -> anyhow::Result<T> {
        eprintln!(
            "training on {} examples ({train_tokens} answer tokens, method {}), scoring on {}; \
             Ctrl-C stops and keeps the best checkpoint so far",
            train_split.examples.len(),
            self.method.name(),
            dev_split.examples.len()
        );
        let started = Instant::now();
        let steps_per_epoch = train_split.examples.len().div_ceil(self.batch.max(1));
        let bar = bar(
            steps_per_epoch * self.epochs,
            "training [{bar:30}] {pos}/{len} steps, {msg}, ETA {eta}",
        );
        // Without a terminal (a log file, CI) the bar is hidden: a line at most every
        // `LOG_EVERY` instead.
        const LOG_EVERY: Duration = Duration::from_secs(30);
        let lines = bar.is_hidden();
        let mut logged = Instant::now();
        let result = train(&mut |p| {
            bar.set_position(((p.epoch - 1) * p.steps_per_epoch + p.step) as u64);
            let message = format!(
                "epoch {}, loss {:.3}, {:.0} tokens/s",
                p.epoch, p.loss, p.tokens_per_s
            );
            if lines && logged.elapsed() >= LOG_EVERY {
                logged = Instant::now();
                eprintln!(
                    "training: step {}/{} of {message}",
                    p.step, p.steps_per_epoch
                );
            }
            bar.set_message(message);
        });
        bar.finish_and_clear();
        seconds.insert("training".into(), json!(started.elapsed().as_secs_f64()));
        Ok(result?)
    }

    /// The manifest written beside the tuned model.
    #[allow(clippy::too_many_arguments)]
    fn manifest(
        &self,
        base: &Path,
        base_sha256: &str,
        model_out: &Path,
        splits: [&Examples; 2],
        tokens: [usize; 2],
        run: &TrainReport,
        seconds: Value,
    ) -> anyhow::Result<Value> {
        // A split is a file (hashed) or a folder of e-mails (no single hash: `null`).
        let split = |examples: &Examples, tokens: usize| -> anyhow::Result<Value> {
            let sha256 = if examples.path.is_file() {
                Some(sha256_file(&examples.path)?)
            } else {
                None
            };
            Ok(json!({
                "path": examples.path,
                "sha256": sha256,
                "examples": examples.examples.len(),
                "left_out": examples.left_out.len(),
                "answer_tokens": tokens,
            }))
        };
        let adapter = match self.method {
            Method::Lora => {
                let path = model_out.with_file_name(ADAPTER_FILE);
                json!({ "file": ADAPTER_FILE, "sha256": sha256_file(&path)? })
            }
            _ => Value::Null,
        };
        Ok(json!({
            "method": self.method.name(),
            "model": model_out.file_name().map(|n| n.to_string_lossy().into_owned()),
            "sha256": sha256_file(model_out)?,
            "adapter": adapter,
            "base_model": { "path": base, "sha256": base_sha256 },
            "workflow": self.step.workflow,
            "data": {
                "train": split(splits[0], tokens[0])?,
                "dev": split(splits[1], tokens[1])?,
            },
            "options": {
                "rank": (self.method == Method::Lora).then_some(self.rank),
                "alpha": (self.method == Method::Lora).then_some(self.alpha),
                "epochs": self.epochs,
                "lr": self.lr,
                "batch": self.batch,
                "seed": self.seed,
                "patience": self.patience,
                "max_minutes": self.max_minutes,
            },
            "initial": run.initial,
            "epochs": run.epochs,
            "best_epoch": run.best_epoch,
            "stop": run.stop,
            "tokens_per_s": run.tokens_per_s,
            "seconds": seconds,
            "peak_memory_mib": peak_memory_mib(),
        }))
    }
}

fn print_summary(run: &TrainReport, manifest: &Value, model_out: &Path) {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let line = |label: &str, dev: &flowbot_model_runtime::finetune::DevMetrics| {
        let parts: Vec<String> = dev
            .parts
            .iter()
            .map(|(name, rate)| format!("{name} {}", pct(*rate)))
            .collect();
        println!(
            "{label:<10} dev loss {:.4}, tokens {}, all fields {} ({})",
            dev.loss,
            pct(dev.token_accuracy),
            pct(dev.all_parts),
            parts.join(", ")
        );
    };
    line("initial", &run.initial);
    for epoch in &run.epochs {
        line(&format!("epoch {}", epoch.epoch), &epoch.dev);
    }
    println!(
        "kept:      epoch {} (stopped: {:?}); {:.0} tokens/s",
        run.best_epoch, run.stop, run.tokens_per_s
    );
    let seconds = |key: &str| manifest["seconds"][key].as_f64();
    let before = match (seconds("features"), seconds("load")) {
        (Some(features), _) => format!("{features:.1} s hidden states, "),
        (_, Some(load)) => format!("{load:.1} s loading, "),
        _ => String::new(),
    };
    println!(
        "time:      {before}{:.1} s training; peak memory {:.0} MiB",
        seconds("training").unwrap_or(0.0),
        manifest["peak_memory_mib"].as_f64().unwrap_or(0.0)
    );
    println!("wrote {}", model_out.display());
    if manifest["adapter"].is_object() {
        println!(
            "wrote {} (the adapters alone: `--adapter` applies them to the base)",
            model_out.with_file_name(ADAPTER_FILE).display()
        );
    }
}
