//! `flowbot run PATH [--process ID] [--vars JSON] [--rules DIR] [--auto-complete] [--json]`: runs
//! one instance in memory. With `--auto-complete`, user, manual and receive tasks and every job are
//! completed at once (the CLI registers no handlers); timers, message and signal events keep
//! waiting. Language-model steps run on the local model (`--model PATH`, else $FLOWBOT_MODEL, else
//! the default model, fetched on first use), loaded only when a step needs it; each call is kept as
//! the history record the durable engine writes (`history` in `--json`). With `--rules`, the business rules of that folder run at
//! their attachment points and the effects they ask for (notifications, events) are printed.
//! Exit 0 when the instance completed or waits, 1 when it failed or the input is invalid
//! (diagnostics on stderr).

use super::model::ModelChoice;
use crate::llm_backend::LazyLocalGenerator;
use crate::sources;
use anyhow::Context;
use clap::Args;
use flowbot_engine::executor::{ExecutionHooks, Instance, NoHooks, Status, Wait, WaitKind};
use flowbot_engine::graph::CompiledProcess;
use flowbot_engine::llm::TextGenerator;
use flowbot_engine::rules::{Effect, RuleEngine, RuleHooks, RulesConfig};
use flowbot_engine::runtime::{llm_step, HistoryEntry, HistoryRecord};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The most rounds of completions `--auto-complete` makes before it gives up (a process that loops through
/// user tasks forever).
const MAX_AUTO_COMPLETIONS: usize = 100_000;

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
    /// Complete user, manual and receive tasks and all jobs at once.
    #[arg(long)]
    pub auto_complete: bool,
    /// With --auto-complete: the variables a task is completed with, as `NODE={"key": value}`
    /// (repeatable), e.g. the shipment information a clerk fills in on `ship_order`.
    #[arg(long = "task-output", value_name = "NODE=JSON")]
    pub task_outputs: Vec<String>,
    /// Enforce the business rules of this folder (e.g. `rules`).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run on the durable engine with a sled store in this directory.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// `virtual`: timers jump ahead instead of waiting (runs on the engine).
    #[arg(long, value_enum, default_value = "wall")]
    pub clock: ClockArg,
    /// The model that answers LLM steps.
    #[command(flatten)]
    pub llm: ModelChoice,
}

/// The generator of LLM steps: the chosen local model, loaded (and fetched) on the first call.
pub(crate) fn text_generator(args: &RunArgs) -> anyhow::Result<Arc<dyn TextGenerator>> {
    let backend = args.llm.backend()?;
    let choice = args.llm.clone();
    Ok(Arc::new(LazyLocalGenerator::new(
        move || choice.path(),
        backend,
    )))
}

/// The clock of `flowbot run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockArg {
    /// Real time.
    Wall,
    /// Time jumps to the next due timer.
    Virtual,
}

/// Runs the command.
pub fn execute(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let variables: Value = serde_json::from_str(&args.vars).context("--vars is not valid JSON")?;
    let Value::Object(variables) = variables else {
        anyhow::bail!("--vars must be a JSON object, like {{\"amount\": 500}}");
    };
    if args.store.is_some() || args.clock == ClockArg::Virtual {
        if !args.task_outputs.is_empty() {
            anyhow::bail!("--task-output works in the in-memory runner only, not with --store or --clock virtual");
        }
        return super::run_durable::execute(args, variables);
    }
    let rules = match &args.rules {
        Some(folder) => Some(load_rules(folder, RulesConfig::default())?),
        None => None,
    };
    let scripts = rules
        .as_ref()
        .map_or_else(sources::script_runtime, RuleEngine::script_runtime);
    let (compiled, diagnostics) =
        sources::compile_file_with(&args.path, args.process.as_deref(), &scripts);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(process) = compiled else {
        return Ok(ExitCode::FAILURE);
    };
    let id = instance_id(&process);
    let mut steps = Steps {
        rules: rules.as_ref(),
        effects: Vec::new(),
        last: None,
    };
    let started = steps.run(|hooks| Instance::start(&process, id, variables, hooks));
    let (mut instance, _) = match started {
        Ok(started) => started,
        Err(error) => {
            for line in error.to_string().lines() {
                eprintln!("error: {line}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    steps.status_changed(&process, &mut instance, Status::Running);
    let task_outputs = parse_task_outputs(&args.task_outputs)?;
    let generator = text_generator(args)?;
    let mut history: Vec<HistoryRecord> = Vec::new();
    let mut llm_error = None;
    loop {
        if args.auto_complete {
            auto_complete(&process, &mut instance, &mut steps, &task_outputs)?;
        }
        let llm_waits: Vec<Wait> = instance
            .waits()
            .iter()
            .filter(|w| matches!(w.kind, WaitKind::Llm { .. }))
            .cloned()
            .collect();
        if llm_waits.is_empty() || !instance.status().is_active() {
            break;
        }
        for wait in llm_waits {
            match answer_llm_step(
                &process,
                &mut instance,
                &mut steps,
                generator.as_ref(),
                &wait,
            ) {
                Ok(record) => history.push(record),
                Err(err) => llm_error = Some(format!("LLM step `{}`: {err:#}", wait.node)),
            }
        }
        if llm_error.is_some() {
            break;
        }
    }
    let effects = &steps.effects;
    let text = if args.json {
        let mut value = report(&instance, effects);
        value["history"] = serde_json::to_value(&history)?;
        format!("{}\n", serde_json::to_string(&value)?)
    } else {
        human(&instance, effects) + llm_lines(&history).as_str()
    };
    super::write_stdout(&text)?;
    if let Some(error) = &llm_error {
        eprintln!("error: {error}");
    }
    Ok(
        if instance.status() == Status::Failed || llm_error.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// A readable, unique-enough id: process id and the start time in milliseconds.
fn instance_id(process: &CompiledProcess) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{}-{millis}", process.id)
}

/// Answers one LLM wait with the generator and completes it; returns the call's history record,
/// the same record the durable engine writes.
fn answer_llm_step(
    process: &CompiledProcess,
    instance: &mut Instance,
    steps: &mut Steps<'_>,
    generator: &dyn TextGenerator,
    wait: &Wait,
) -> anyhow::Result<HistoryRecord> {
    let WaitKind::Llm { task } = &wait.kind else {
        anyhow::bail!("not an LLM step")
    };
    let request =
        llm_step::build_request(task, instance.variables()).map_err(anyhow::Error::msg)?;
    let response = generator.generate(&request)?;
    let outputs = llm_step::output_variables(task, &response);
    steps.run(|hooks| instance.complete(process, wait.activation, outputs, hooks))?;
    Ok(HistoryRecord {
        at_ms: flowbot_engine::clock::wall_now_ms(),
        // The in-memory runner makes one call per step: a failed call stops the run.
        entry: HistoryEntry::llm_called(wait, 1, request.prompt, response),
    })
}

/// One line per LLM call of the history, as `run` prints them.
pub(super) fn llm_lines(history: &[HistoryRecord]) -> String {
    history
        .iter()
        .filter_map(|record| match &record.entry {
            HistoryEntry::LlmCalled { node, prompt_tokens, completion_tokens, elapsed_ms, model_id, .. } => Some(
                format!("llm {node}: {prompt_tokens} prompt + {completion_tokens} completion tokens, {elapsed_ms} ms, model {model_id}\n"),
            ),
            _ => None,
        })
        .collect()
}

/// Whether `--auto-complete` completes this wait.
fn completes_automatically(process: &CompiledProcess, wait: &Wait) -> bool {
    match &wait.kind {
        WaitKind::Job { .. } | WaitKind::User { .. } => true,
        WaitKind::Message { .. } => process
            .node_index(&wait.node)
            .is_some_and(|n| process.node(n).element == "receiveTask"),
        WaitKind::Timer { .. } | WaitKind::Signal { .. } | WaitKind::Llm { .. } => false,
    }
}

/// Completes every automatically completable wait as one batch (oldest first, before any token
/// moves on), and repeats until none is left.
fn auto_complete(
    process: &CompiledProcess,
    instance: &mut Instance,
    steps: &mut Steps<'_>,
    task_outputs: &HashMap<String, Map<String, Value>>,
) -> anyhow::Result<()> {
    for _ in 0..MAX_AUTO_COMPLETIONS {
        if !instance.status().is_active() {
            return Ok(());
        }
        let batch: Vec<(u64, Map<String, Value>)> = instance
            .waits()
            .iter()
            .filter(|w| completes_automatically(process, w))
            .map(|w| {
                (
                    w.activation,
                    task_outputs
                        .get(w.node.as_str())
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let previous = instance.status();
        steps.run(|hooks| instance.complete_all(process, batch, hooks))?;
        steps.status_changed(process, instance, previous);
    }
    tracing::warn!("stopped auto-completing after {MAX_AUTO_COMPLETIONS} rounds: the process keeps asking for more");
    Ok(())
}

/// Parses `--task-output NODE=JSON` options into the variables each task is completed with.
fn parse_task_outputs(options: &[String]) -> anyhow::Result<HashMap<String, Map<String, Value>>> {
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
    Ok(outputs)
}

fn wait_json(wait: &Wait) -> Value {
    let mut value =
        json!({ "node": wait.node, "activation": wait.activation, "kind": wait.kind.name() });
    let detail = match &wait.kind {
        WaitKind::Job { handler } => json!({ "handler": handler }),
        WaitKind::Message {
            name,
            correlation_key,
        } => json!({ "message": name, "correlation_key": correlation_key }),
        WaitKind::Timer { definition } => json!({ "timer": definition.expression.source }),
        WaitKind::Signal { name } => json!({ "signal": name }),
        WaitKind::User { .. } | WaitKind::Llm { .. } => json!({}),
    };
    if let (Some(object), Value::Object(extra)) = (value.as_object_mut(), detail) {
        object.extend(extra);
    }
    value
}

/// Loads the rules folder; a rule file that does not compile is an error.
pub(super) fn load_rules(
    folder: &std::path::Path,
    config: RulesConfig,
) -> anyhow::Result<RuleEngine> {
    let rules = RuleEngine::load(folder, &config)?;
    let errors = rules.errors();
    for error in &errors {
        eprintln!("{error}");
    }
    anyhow::ensure!(
        errors.is_empty(),
        "{} rule file(s) in {} do not compile",
        errors.len(),
        folder.display()
    );
    Ok(rules)
}

/// Runs each step with the rules (one snapshot per step) and keeps the effects of the steps
/// that went through.
struct Steps<'r> {
    rules: Option<&'r RuleEngine>,
    effects: Vec<Effect>,
    /// The hooks of the last step that went through (its status-change rules use its snapshot).
    last: Option<RuleHooks>,
}

impl Steps<'_> {
    fn run<T, E>(
        &mut self,
        step: impl FnOnce(&dyn ExecutionHooks) -> Result<T, E>,
    ) -> Result<T, E> {
        let Some(rules) = self.rules else {
            return step(&NoHooks);
        };
        let hooks = RuleHooks::new(rules.snapshot());
        let result = step(&hooks)?;
        self.effects.extend(hooks.take_effects());
        self.last = Some(hooks);
        Ok(result)
    }

    /// After a step: when the instance status is no longer `previous`, runs the `on_status_change`
    /// rules and applies the variables they set. A failing rule is reported on stderr.
    fn status_changed(
        &mut self,
        process: &CompiledProcess,
        instance: &mut Instance,
        previous: Status,
    ) {
        let Some(hooks) = self.last.take() else {
            return;
        };
        if instance.status() == previous {
            return;
        }
        match hooks.status_changed(process, instance.variables(), previous, instance.status()) {
            Ok(updates) if updates.is_empty() => {}
            Ok(updates) => {
                instance.set_process_variables(updates);
            }
            Err(error) => eprintln!("error: status-change rule: {error}"),
        }
        self.effects.extend(hooks.take_effects());
    }
}

/// The `--json` report.
fn report(instance: &Instance, effects: &[Effect]) -> Value {
    json!({
        "instance": instance.id(),
        "status": instance.status().as_str(),
        "path": instance.path(),
        "variables": instance.variables(),
        "waiting_on": instance.waits().iter().map(wait_json).collect::<Vec<_>>(),
        "incidents": instance.incidents().iter().map(|i| json!({
            "node": i.node, "message": i.message, "at": i.at,
        })).collect::<Vec<_>>(),
        "effects": effects,
    })
}

/// One line per effect, as `run --rules` prints them.
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

fn human(instance: &Instance, effects: &[Effect]) -> String {
    let mut text = format!(
        "instance {}: {}\n",
        instance.id(),
        instance.status().as_str()
    );
    text += &format!("path: {}\n", instance.path().join(" "));
    text += &format!(
        "variables: {}\n",
        Value::Object(instance.variables().clone())
    );
    for wait in instance.waits() {
        text += &format!(
            "waiting on {} ({}, activation {})\n",
            wait.node,
            wait.kind.name(),
            wait.activation
        );
    }
    for incident in instance.incidents() {
        text += &format!(
            "incident at {}: {} [{}]\n",
            incident.at, incident.message, incident.node
        );
    }
    text += &effect_lines(effects);
    text
}
