//! `flowbot bench PATH --instances N [--vars JSON|array] [--store memory|sled|postgres
//! --store-url URL] [--durability
//! step|group] [--json]`: runs N instances to completion, user tasks and jobs without a handler
//! auto-completed, at most `--in-flight` at a time, and reports instances/s and steps/s (steps:
//! flow nodes completed).
//!
//! With `--store sled --store-dir DIR` an existing store is resumed: unfinished instances are
//! reloaded and only the missing ones are started (the crash test relies on it).

use super::effects::effects_handler;
use super::service;
use anyhow::{bail, Context};
use flowbot_app::config::{StoreChoice, StoreKind as ConfiguredStore};
use flowbot_app::project;
use flowbot_app::{App, AutoComplete, ConfigOverrides, InstanceStatus, StartRequest};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// Where bench instances are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// In memory.
    Memory,
    /// In a sled directory.
    Sled,
    /// In a PostgreSQL database (`--store-url`).
    Postgres,
}

/// How sled commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// One flush per step.
    Step,
    /// Steps of many instances share a flush.
    Group,
}

/// Arguments of `flowbot bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The process file.
    pub path: PathBuf,
    /// How many instances to run.
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// Variables: a JSON object, or an array of objects the instances cycle through.
    #[arg(long)]
    pub vars: Option<String>,
    /// The process to run (default: the first executable one).
    #[arg(long)]
    pub process: Option<String>,
    /// Where to keep the instances.
    #[arg(long, value_enum, default_value = "memory")]
    pub store: StoreKind,
    /// The sled directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub store_dir: Option<PathBuf>,
    /// The PostgreSQL database of `--store postgres` (its instances are resumed like sled's).
    #[arg(long, value_name = "postgres://...")]
    pub store_url: Option<String>,
    /// Flush (PostgreSQL: transaction) per step or per group of steps.
    #[arg(long, value_enum, default_value = "group")]
    pub durability: DurabilityArg,
    /// Group commit: how long the flusher waits for more commits before it flushes (default
    /// 1 ms).
    #[arg(long)]
    pub group_window_ms: Option<u64>,
    /// Group commit: flush at once when this many commits are pending (default 512).
    #[arg(long)]
    pub group_max_batch: Option<usize>,
    /// Most instances running at once.
    #[arg(long, default_value_t = 1000)]
    pub in_flight: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run every job through a handler that appends its idempotency key to this file once
    /// (used by the crash test).
    #[arg(long, hide = true)]
    pub effects_log: Option<PathBuf>,
}

/// Runs the benchmark.
pub fn run(args: BenchArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let variables = parse_vars(args.vars.as_deref())?;
    let runtime = service::runtime()?;
    // The driver runs as a task on the runtime, as a service's request handlers would: driven
    // from the main thread instead, every instance start and every freed in-flight slot crossed
    // threads through the kernel (futex wake-ups were ~20% of a memory-store run).
    runtime.block_on(async move {
        tokio::spawn(bench(args, config_file, variables))
            .await
            .context("the bench driver panicked")?
    })
}

fn parse_vars(text: Option<&str>) -> anyhow::Result<Vec<Map<String, Value>>> {
    let Some(text) = text else {
        return Ok(vec![Map::new()]);
    };
    let value: Value = serde_json::from_str(text).context("--vars is not valid JSON")?;
    match value {
        Value::Object(map) => Ok(vec![map]),
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(map),
                other => bail!("--vars[{i}] is {other}, expected an object"),
            })
            .collect(),
        _ => bail!("--vars must be a JSON object or a non-empty array of objects"),
    }
}

async fn bench(
    args: BenchArgs,
    config_file: Option<PathBuf>,
    variables: Vec<Map<String, Value>>,
) -> anyhow::Result<ExitCode> {
    let mut temporary = None;
    let store = match args.store {
        StoreKind::Memory => StoreChoice::Memory,
        StoreKind::Sled => StoreChoice::Sled(match &args.store_dir {
            Some(dir) => dir.clone(),
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                let dir = std::env::temp_dir()
                    .join(format!("flowbot-bench-{}-{nanos}", std::process::id()));
                temporary = Some(dir.clone());
                dir
            }
        }),
        StoreKind::Postgres => StoreChoice::Postgres(
            args.store_url
                .clone()
                .context("--store postgres needs --store-url postgres://...")?,
        ),
    };
    let overrides = ConfigOverrides {
        config_file,
        store: Some(store),
        durability: Some(match args.durability {
            DurabilityArg::Step => flowbot_app::config::DurabilityKind::Step,
            DurabilityArg::Group => flowbot_app::config::DurabilityKind::Group,
        }),
        ..ConfigOverrides::default()
    };
    let mut config = service::config(&overrides)?;
    if let Some(window) = args.group_window_ms {
        config.store.group_window_ms = window;
    }
    if let Some(batch) = args.group_max_batch {
        config.store.group_max_batch = batch;
    }
    if config.rules.is_none() {
        config.rules = flowbot_app::project::rules_folder_beside(&args.path);
    }
    let memory = config.store.kind == ConfiguredStore::Memory;
    // The benchmark starts every instance itself: timer start events are not scheduled.
    let mut builder = App::builder(config)
        .deploy_workflows(false)
        .schedule_timer_starts(false)
        .decisions(project::decisions_beside(&args.path))
        .auto_complete(AutoComplete::default());
    if let Some(log) = &args.effects_log {
        builder = builder.fallback_handler(effects_handler(log)?);
    }
    let app = builder.open().await?;
    let outcome = app.deploy_file(&args.path).await?;
    let process_id = match &args.process {
        Some(process) => process.clone(),
        None => outcome
            .deployed
            .first()
            .map(|p| p.process.clone())
            .context("the file has no process to run")?,
    };
    let engine = app.engine().clone();
    let already = engine.stored_instances()? as usize;
    let resumed = engine.running();

    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in &resumed {
        let engine = engine.clone();
        let id = id.clone();
        tasks.spawn(async move { engine.wait_for_end(&id).await });
    }
    for n in already..args.instances {
        let permit = semaphore
            .clone()
            .acquire_owned()
            .await
            .context("semaphore closed")?;
        let engine = engine.clone();
        let process_id = process_id.clone();
        let vars = variables[n % variables.len()].clone();
        tasks.spawn(async move {
            let _permit = permit;
            let info = engine
                .start_with(StartRequest {
                    process_id,
                    variables: vars,
                    business_key: None,
                })
                .await?;
            if info.ended() {
                Ok(info)
            } else {
                engine.wait_for_end(&info.id).await
            }
        });
    }
    let mut completed = 0usize;
    let mut other = 0usize;
    let mut steps = 0usize;
    while let Some(joined) = tasks.join_next().await {
        let info = joined.context("a bench task panicked")??;
        steps += info.path.len();
        if info.status == InstanceStatus::Completed {
            completed += 1;
        } else {
            other += 1;
            if other <= 5 {
                eprintln!(
                    "instance {} ended {}: {:?}",
                    info.id, info.status, info.incidents
                );
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    app.shutdown().await;
    drop(engine);
    drop(app);
    if let Some(dir) = temporary {
        let _ = std::fs::remove_dir_all(dir);
    }
    let finished = completed + other;
    let report = json!({
        "instances": finished,
        "seconds": seconds,
        "instances_per_s": finished as f64 / seconds,
        "steps_per_s": steps as f64 / seconds,
        "completed": completed,
        "not_completed": other,
        "resumed": resumed.len(),
        "store": match args.store {
            StoreKind::Memory => "memory",
            StoreKind::Sled => "sled",
            StoreKind::Postgres => "postgres",
        },
        "durability": match (memory, args.durability) {
            (true, _) => "none",
            (false, DurabilityArg::Step) => "step",
            (false, DurabilityArg::Group) => "group",
        },
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{finished} instances in {seconds:.3} s: {:.0} instances/s, {:.0} steps/s ({completed} completed, {other} not completed, {} resumed)",
            finished as f64 / seconds,
            steps as f64 / seconds,
            resumed.len()
        );
    }
    Ok(if other == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
