//! `flowbot bench PATH --instances N [--vars JSON|array] [--store memory|sled] [--durability
//! step|group] [--json]`: runs N instances to completion, user tasks and jobs without a handler
//! auto-completed, at most `--in-flight` at a time, and reports instances/s and steps/s (steps:
//! flow nodes completed).
//!
//! With `--store sled --store-dir DIR` an existing store is resumed: unfinished instances are
//! reloaded and only the missing ones are started (the crash test relies on it).

use super::effects::effects_handler;
use super::load::load_definitions;
use anyhow::{bail, Context};
use flowbot_engine::runtime::{Engine, EngineOptions};
use flowbot_engine::store::{Durability, MemoryStore, SledStore, Store};
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
    /// Flush per step or per group of steps (sled only).
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
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let defs = load_definitions(&args.path)?;
    let variables = parse_vars(args.vars.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    // The driver runs as a task on the runtime, as a service's request handlers would: driven
    // from the main thread instead, every instance start and every freed in-flight slot crossed
    // threads through the kernel (futex wake-ups were ~20% of a memory-store run).
    runtime.block_on(async move {
        tokio::spawn(bench(args, defs, variables))
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
    defs: flowbot_engine::model::Definitions,
    variables: Vec<Map<String, Value>>,
) -> anyhow::Result<ExitCode> {
    let durability = match args.durability {
        DurabilityArg::Step => Durability::Step,
        DurabilityArg::Group => Durability::Group {
            window: args
                .group_window_ms
                .map_or(Durability::GROUP_WINDOW, std::time::Duration::from_millis),
            max_batch: args
                .group_max_batch
                .unwrap_or(Durability::GROUP_MAX_BATCH)
                .max(1),
        },
    };
    let mut temporary = None;
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sled => {
            let dir = match &args.store_dir {
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
            };
            Arc::new(SledStore::open(&dir, durability)?)
        }
    };
    let already = store.instance_count()? as usize;
    // The benchmark starts every instance itself: timer start events are not scheduled.
    let options = EngineOptions {
        auto_complete: true,
        schedule_timer_starts: false,
        ..EngineOptions::default()
    };
    let mut builder = Engine::builder().store(store).options(options);
    if let Some(log) = &args.effects_log {
        builder = builder.fallback_handler(effects_handler(log)?);
    }
    let engine = builder.build().await?;
    let deployment = engine.deploy(&defs, args.process.as_deref()).await?;
    let process_id = deployment.deployed.process_id.clone();
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
            let info = engine.start(&process_id, vars).await?;
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
        if info.status == "completed" {
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
    engine.shutdown().await;
    drop(engine);
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
        "store": match args.store { StoreKind::Memory => "memory", StoreKind::Sled => "sled" },
        "durability": match (args.store, args.durability) {
            (StoreKind::Memory, _) => "none",
            (_, DurabilityArg::Step) => "step",
            (_, DurabilityArg::Group) => "group",
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
