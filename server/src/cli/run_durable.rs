//! `flowbot run` through the durable engine: `--store DIR` keeps the instance in a sled store
//! (readable afterwards with `flowbot history ID --store DIR`), `--clock virtual` lets timers
//! jump ahead so a process with a three-day timer finishes at once. With `--rules DIR` the engine
//! enforces the folder's rules at every step, writes their effects to the outbox with the step,
//! and the effects recorded in the instance's history are printed as `run --rules` prints them.
//! The LLM calls of the history are printed too (`history` in `--json`, as the in-memory run).

use super::run::{ClockArg, RunArgs};
use crate::cli::load::load_definitions;
use anyhow::Context;
use flowbot_engine::clock::{Clock, VirtualClock, WallClock};
use flowbot_engine::rules::{Effect, RulesConfig, SharedRuleHooks, StdlibConfig};
use flowbot_engine::runtime::{Engine, EngineOptions, HistoryEntry, HistoryRecord, InstanceInfo};
use flowbot_engine::store::{Durability, MemoryStore, SledStore, Store};
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs one instance on the engine and prints it like `flowbot run` does.
pub fn execute(args: &RunArgs, variables: Map<String, Value>) -> anyhow::Result<ExitCode> {
    let defs = load_definitions(&args.path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let (info, effects, llm_calls) = runtime.block_on(async {
        let store: Arc<dyn Store> = match &args.store {
            Some(dir) => Arc::new(SledStore::open(dir, Durability::Step)?),
            None => Arc::new(MemoryStore::new()),
        };
        let clock: Arc<dyn Clock> = match args.clock {
            ClockArg::Wall => Arc::new(WallClock),
            ClockArg::Virtual => Arc::new(VirtualClock::starting_now()),
        };
        // `run` starts the one instance it shows itself: timer start events are not scheduled.
        let options = EngineOptions {
            auto_complete: args.auto_complete,
            schedule_timer_starts: false,
            ..EngineOptions::default()
        };
        let mut builder = Engine::builder()
            .store(store)
            .clock(clock.clone())
            .options(options)
            .text_generator(super::run::text_generator(args)?);
        if let Some(folder) = &args.rules {
            // The rules read the engine's clock, so `today()` follows a virtual clock's jumps.
            let config = RulesConfig {
                stdlib: StdlibConfig::default().with_engine_clock(clock),
                ..RulesConfig::default()
            };
            let rules = Arc::new(super::run::load_rules(folder, config)?);
            builder = builder
                .scripts(rules.script_runtime())
                .rules(Arc::new(SharedRuleHooks::new(rules)));
        }
        let engine = builder.build().await?;
        let deployment = engine.deploy(&defs, args.process.as_deref()).await?;
        let started = engine
            .start(&deployment.deployed.process_id, variables)
            .await?;
        let info = engine.wait_settled(&started.id).await?;
        let mut effects: Vec<Effect> = Vec::new();
        let mut llm_calls: Vec<HistoryRecord> = Vec::new();
        for record in engine.history(&started.id)? {
            match record.entry {
                HistoryEntry::RuleEffect { effect } => effects.push(effect),
                HistoryEntry::LlmCalled { .. } => llm_calls.push(record),
                _ => {}
            }
        }
        engine.shutdown().await;
        anyhow::Ok((info, effects, llm_calls))
    })?;
    let text = if args.json {
        let mut value = report(&info, &effects);
        value["history"] = serde_json::to_value(&llm_calls)?;
        format!("{}\n", serde_json::to_string(&value)?)
    } else {
        human(&info)
            + super::run::effect_lines(&effects).as_str()
            + super::run::llm_lines(&llm_calls).as_str()
    };
    super::write_stdout(&text)?;
    Ok(if info.status == "failed" {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn report(info: &InstanceInfo, effects: &[Effect]) -> Value {
    json!({
        "instance": info.id,
        "status": info.status,
        "path": info.path,
        "variables": info.variables,
        "waiting_on": info.waiting_on.iter().map(|w| json!({"node": w.node, "activation": w.activation, "kind": w.kind})).collect::<Vec<_>>(),
        "incidents": info.incidents.iter().map(|i| json!({"node": i.node, "message": i.message, "at": i.at}))
            .chain(info.engine_incidents.iter().map(|i| json!({"node": i.node, "message": i.message, "at": Value::Null})))
            .collect::<Vec<_>>(),
        "effects": effects,
    })
}

fn human(info: &InstanceInfo) -> String {
    let mut text = format!("instance {}: {}\n", info.id, info.status);
    text += &format!("path: {}\n", info.path.join(" "));
    text += &format!("variables: {}\n", Value::Object(info.variables.clone()));
    for wait in &info.waiting_on {
        text += &format!(
            "waiting: {} ({}, activation {})\n",
            wait.node, wait.kind, wait.activation
        );
    }
    for incident in &info.incidents {
        text += &format!(
            "incident: {} at {}: {}\n",
            incident.node, incident.at, incident.message
        );
    }
    for incident in &info.engine_incidents {
        text += &format!("incident: {}: {}\n", incident.node, incident.message);
    }
    text
}
