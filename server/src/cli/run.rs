//! `flowbot run PATH [--process ID] [--vars JSON] [--business-key KEY] [--rules DIR]
//! [--decisions PATH]... [--auto-complete] [--task-output NODE=JSON]... [--store DIR] [--clock wall|virtual] [--json]`:
//! runs one instance on the engine, in memory unless `--store` names a sled folder, and prints
//! where it went.
//!
//! The run returns as soon as the instance has ended or waits for something from outside (a
//! user task, a message, a timer due later): a `--store` run leaves the waiting instance in the
//! store, and `flowbot resume --store DIR` carries on what is due. With `--clock virtual`, timers
//! jump ahead. With `--auto-complete`, user, manual and receive tasks and handler-less jobs are
//! completed at once (with the variables `--task-output` gives per node). The process's own rules
//! always run; rule files resolve in `--rules`, the configured rules folder, or `rules/` beside
//! the workflow's folder. LLM steps run on the configured model (fetched and loaded before the
//! run when the process has one). Exit 0 when the instance completed or waits, 1 when it failed
//! or the input is invalid (diagnostics on stderr), 2 for configuration and environment problems.

use super::service;
use anyhow::Context;
use clap::Args;
use flowbot_app::config::{ClockKind, StoreChoice};
use flowbot_app::view::InstanceView;
use flowbot_app::{App, AppError, AutoComplete, ConfigOverrides, InstanceStatus, StartRequest};
use flowbot_engine::rules::Effect;
use flowbot_engine::runtime::{HistoryEntry, HistoryRecord};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The process file.
    pub path: PathBuf,
    /// Process id (default: the first executable process).
    #[arg(long)]
    pub process: Option<String>,
    /// Initial variables, a JSON object.
    #[arg(long, default_value = "{}")]
    pub vars: String,
    /// A business key to find the instance by (an order number, ...).
    #[arg(long)]
    pub business_key: Option<String>,
    /// Complete user, manual and receive tasks and handler-less jobs at once.
    #[arg(long)]
    pub auto_complete: bool,
    /// With --auto-complete: the variables a task is completed with, as `NODE={"key": value}`
    /// (repeatable), e.g. the shipment information a clerk fills in on `ship_order`.
    #[arg(
        long = "task-output",
        value_name = "NODE=JSON",
        requires = "auto_complete"
    )]
    pub task_outputs: Vec<String>,
    /// The rules folder (default: the configured one, else `rules/` beside the workflow's folder).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Decision files (`.dmn`, YAML decisions), or folders searched for them, to deploy besides
    /// those in the process file's own folder (repeatable).
    #[arg(long, value_name = "PATH")]
    pub decisions: Vec<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Keep the instance in a sled store in this folder (default: in memory).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// `virtual`: timers jump ahead instead of waiting.
    #[arg(long, value_enum, default_value = "wall")]
    pub clock: ClockArg,
    /// The model that answers LLM steps: a GGUF file or a model directory (default: the
    /// configured model, else the default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// A LoRA adapter (`adapter.gguf` of `flowbot model finetune --method lora`) applied to the
    /// model at run time.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
}

/// The clock of `flowbot run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockArg {
    /// Real time.
    Wall,
    /// Time jumps to the next due timer.
    Virtual,
}

/// What `run --json` prints: the instance view, the effects its rules asked for, and its
/// language-model calls.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The instance.
    #[serde(flatten)]
    pub instance: InstanceView,
    /// The `notify` and `emit` effects of its rules, in order.
    pub effects: Vec<Effect>,
    /// One record per language-model call (prompt, output, model, tokens, time).
    pub history: Vec<HistoryRecord>,
}

/// Runs the command.
pub fn execute(args: &RunArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let variables: Value = serde_json::from_str(&args.vars).context("--vars is not valid JSON")?;
    let Value::Object(variables) = variables else {
        anyhow::bail!("--vars must be a JSON object, like {{\"amount\": 500}}");
    };
    let auto = args
        .auto_complete
        .then(|| parse_task_outputs(&args.task_outputs))
        .transpose()?;
    let overrides = ConfigOverrides {
        config_file,
        rules: args.rules.clone(),
        store: Some(match &args.store {
            Some(dir) => StoreChoice::Sled(dir.clone()),
            None => StoreChoice::Memory,
        }),
        durability: Some(flowbot_app::config::DurabilityKind::Step),
        clock: Some(match args.clock {
            ClockArg::Wall => ClockKind::Wall,
            ClockArg::Virtual => ClockKind::Virtual,
        }),
        model: args.model.clone(),
        adapter: args.adapter.clone(),
        device: args.device.clone(),
        ..ConfigOverrides::default()
    };
    let report = service::runtime()?.block_on(run(args, &overrides, variables, auto));
    match report {
        Ok(report) => {
            let text = if args.json {
                format!("{}\n", serde_json::to_string(&report)?)
            } else {
                human(&report)
            };
            super::write_stdout(&text)?;
            Ok(if report.instance.status == InstanceStatus::Failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(error) => Ok(service::report_error(&error)),
    }
}

async fn run(
    args: &RunArgs,
    overrides: &ConfigOverrides,
    variables: Map<String, Value>,
    auto: Option<AutoComplete>,
) -> Result<RunReport, AppError> {
    let mut config = service::config(overrides)?;
    if config.rules.is_none() {
        config.rules = flowbot_app::project::rules_folder_beside(&args.path);
    }
    let (decisions, problems) = flowbot_app::project::decisions_with(&args.path, &args.decisions);
    if problems.iter().any(|d| d.is_error()) {
        return Err(AppError::diagnostics(
            "a decision file given with --decisions does not check",
            problems,
        ));
    }
    for warning in &problems {
        eprintln!("{warning}");
    }
    // `run` starts the one instance it shows: timer start events are not scheduled.
    let mut builder = App::builder(config)
        .deploy_workflows(false)
        .schedule_timer_starts(false)
        .decisions(decisions)
        .fetch_progress(service::fetch_progress());
    if let Some(auto) = auto {
        builder = builder.auto_complete(auto);
    }
    let app = builder.open().await?;
    let outcome = app.deploy_file(&args.path).await;
    let started = match outcome {
        Ok(outcome) => {
            for warning in &outcome.diagnostics {
                eprintln!("{warning}");
            }
            let process = match &args.process {
                Some(process) => process.clone(),
                None => outcome
                    .deployed
                    .first()
                    .map(|p| p.process.clone())
                    .ok_or_else(|| AppError::invalid_input("the file has no process to run"))?,
            };
            app.start(StartRequest {
                process_id: process,
                variables,
                business_key: args.business_key.clone(),
            })
            .await
        }
        Err(error) => Err(error),
    };
    let report = match started {
        Ok(started) => report_of(&app, &started.id).await,
        Err(error) => Err(error),
    };
    app.shutdown().await;
    report
}

/// The instance once settled, with its rule effects and LLM calls from its history.
async fn report_of(app: &App, id: &str) -> Result<RunReport, AppError> {
    let instance = app.settle(id).await?;
    let mut effects = Vec::new();
    let mut history = Vec::new();
    for record in app.history(id)? {
        match &record.entry {
            HistoryEntry::RuleEffect { effect } => effects.push(effect.clone()),
            HistoryEntry::LlmCalled { .. } => history.push(record),
            _ => {}
        }
    }
    Ok(RunReport {
        instance,
        effects,
        history,
    })
}

/// Parses `--task-output NODE=JSON` options into the variables each task is completed with.
fn parse_task_outputs(options: &[String]) -> anyhow::Result<AutoComplete> {
    let mut outputs = HashMap::new();
    for option in options {
        let (node, json) = option
            .split_once('=')
            .with_context(|| format!("--task-output `{option}`: expected NODE=JSON"))?;
        let value: Value = serde_json::from_str(json)
            .with_context(|| format!("--task-output for `{node}`: not valid JSON"))?;
        let Value::Object(variables) = value else {
            anyhow::bail!(
                "--task-output for `{node}` must be a JSON object, like {{\"carrier\": \"DHL\"}}"
            );
        };
        outputs.insert(node.to_string(), variables);
    }
    Ok(AutoComplete { outputs })
}

/// The report as lines for people.
pub(super) fn human(report: &RunReport) -> String {
    let instance = &report.instance;
    let mut text = format!("instance {}: {}\n", instance.id, instance.status);
    text += &format!("path: {}\n", instance.path.join(" "));
    text += &format!("variables: {}\n", Value::Object(instance.variables.clone()));
    for wait in &instance.waiting_on {
        let task = wait
            .task
            .as_deref()
            .map(|t| format!(", task {t}"))
            .unwrap_or_default();
        let due = wait
            .due
            .as_deref()
            .map(|d| format!(", due {d}"))
            .unwrap_or_default();
        text += &format!(
            "waiting on {} ({}, activation {}{task}{due})\n",
            wait.node, wait.kind, wait.activation
        );
    }
    for incident in &instance.incidents {
        let at = incident.at.as_deref().unwrap_or("-");
        text += &format!(
            "incident at {at}: {} [{}]\n",
            incident.message, incident.node
        );
    }
    text += &effect_lines(&report.effects);
    text += &llm_lines(&report.history);
    text
}

/// One line per effect, as `run` prints them.
pub(super) fn effect_lines(effects: &[Effect]) -> String {
    effects
        .iter()
        .map(|effect| match effect {
            Effect::Notify {
                receiver,
                message,
                rule,
            } => format!("notify {receiver}: {message} [{rule}]\n"),
            Effect::Emit {
                event,
                payload,
                rule,
            } => format!("emit {event}: {payload} [{rule}]\n"),
        })
        .collect()
}

/// One line per LLM call of the history, as `run` prints them.
pub(super) fn llm_lines(history: &[HistoryRecord]) -> String {
    history
        .iter()
        .filter_map(|record| match &record.entry {
            HistoryEntry::LlmCalled {
                node,
                prompt_tokens,
                completion_tokens,
                elapsed_ms,
                model_id,
                ..
            } => Some(format!(
                "llm {node}: {prompt_tokens} prompt + {completion_tokens} completion tokens, {elapsed_ms} ms, model {model_id}\n"
            )),
            _ => None,
        })
        .collect()
}
