//! `flowbot import ORDERS.json --workflow PATH [--rules DIR] [--sort-by created|updated|paid]
//! [--auto-complete] [--store DIR] [--json]`: order-processing rule 2. The orders of an import
//! batch (a JSON array of objects) are put in the order the rule `import_order.rhai` of the rules
//! folder gives (by creation, update or payment time), then one instance per order is started on
//! the engine, in that order, each run until it waits or ends before the next one starts. The
//! folder's rules run at every step of every instance.

use crate::cli::load::load_definitions;
use anyhow::Context;
use clap::{Args, ValueEnum};
use flowbot_engine::model::RuleSource;
use flowbot_engine::rules::{RulesConfig, SharedRuleHooks};
use flowbot_engine::runtime::{Engine, EngineOptions, InstanceInfo};
use flowbot_engine::store::{Durability, MemoryStore, SledStore, Store};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The rule file that orders an import batch.
const IMPORT_ORDER_RULE: &str = "import_order.rhai";

/// Arguments of `flowbot import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSON file holding an array of orders; each order is the starting variables of its instance.
    pub orders: PathBuf,
    /// The process file every order runs (e.g. `workflows/order_processing.yaml`).
    #[arg(long)]
    pub workflow: PathBuf,
    /// Process id (default: the first executable process).
    #[arg(long)]
    pub process: Option<String>,
    /// The rules folder: its `import_order.rhai` orders the batch, and its rules run at every step.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// Which time orders the batch.
    #[arg(long, value_enum, default_value = "created")]
    pub sort_by: SortBy,
    /// Complete user, manual and receive tasks and all jobs at once.
    #[arg(long)]
    pub auto_complete: bool,
    /// Keep the instances in a sled store in this directory (default: in memory).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Print one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The time an import batch is processed by (`import_sort_by` of rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// `created_at`.
    Created,
    /// `updated_at`.
    Updated,
    /// `paid_at` (orders not paid yet come last).
    Paid,
}

impl SortBy {
    fn as_str(self) -> &'static str {
        match self {
            SortBy::Created => "created",
            SortBy::Updated => "updated",
            SortBy::Paid => "paid",
        }
    }
}

/// Runs the command.
pub fn execute(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.orders)
        .with_context(|| format!("cannot read {}", args.orders.display()))?;
    let orders: Vec<Value> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} must hold a JSON array of order objects",
            args.orders.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let started = runtime.block_on(import(args, orders))?;
    let text = if args.json {
        let rows: Vec<Value> = started
            .iter()
            .map(|info| json!({"order_id": info.variables.get("order_id"), "instance": info.id, "status": info.status}))
            .collect();
        format!("{}\n", serde_json::to_string(&rows)?)
    } else {
        started
            .iter()
            .map(|info| {
                let order = info
                    .variables
                    .get("order_id")
                    .map_or_else(|| "?".to_string(), Value::to_string);
                format!("{order} -> {}: {}\n", info.id, info.status)
            })
            .collect()
    };
    super::write_stdout(&text)?;
    Ok(if started.iter().any(|info| info.status == "failed") {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Sorts the batch with rule 2 and runs one instance per order in that order; returns them in
/// the order they were started.
async fn import(args: &ImportArgs, orders: Vec<Value>) -> anyhow::Result<Vec<InstanceInfo>> {
    if let Some(position) = orders.iter().position(|order| !order.is_object()) {
        anyhow::bail!(
            "order {} of {} is not a JSON object",
            position + 1,
            args.orders.display()
        );
    }
    let defs = load_definitions(&args.workflow)?;
    let rules = Arc::new(super::run::load_rules(&args.rules, RulesConfig::default())?);
    let params = Map::from_iter([(
        "import_sort_by".to_string(),
        Value::from(args.sort_by.as_str()),
    )]);
    let sorted = rules.snapshot().sort_by_rule(
        &RuleSource::File(IMPORT_ORDER_RULE.into()),
        orders,
        &params,
    )?;
    let store: Arc<dyn Store> = match &args.store {
        Some(dir) => Arc::new(SledStore::open(dir, Durability::Step)?),
        None => Arc::new(MemoryStore::new()),
    };
    // `import` starts one instance per order itself: timer start events are not scheduled.
    let options = EngineOptions {
        auto_complete: args.auto_complete,
        schedule_timer_starts: false,
        ..EngineOptions::default()
    };
    let engine = Engine::builder()
        .store(store)
        .options(options)
        .scripts(rules.script_runtime())
        .rules(Arc::new(SharedRuleHooks::new(rules.clone())))
        .build()
        .await?;
    let deployment = engine.deploy(&defs, args.process.as_deref()).await?;
    let mut started = Vec::with_capacity(sorted.len());
    for order in sorted {
        let variables = order.as_object().cloned().unwrap_or_default();
        let info = engine
            .start(&deployment.deployed.process_id, variables)
            .await?;
        started.push(engine.wait_settled(&info.id).await?);
    }
    engine.shutdown().await;
    Ok(started)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    fn args(sort_by: SortBy) -> ImportArgs {
        ImportArgs {
            orders: PathBuf::from("batch.json"),
            workflow: repo("workflows/order_processing.yaml"),
            process: None,
            rules: repo("rules"),
            sort_by,
            auto_complete: true,
            store: None,
            json: false,
        }
    }

    fn batch() -> Vec<Value> {
        let order = |id: &str, created: &str, updated: &str, paid: Value| {
            json!({"order_id": id, "customer": "ACME", "amount": 10, "currency": "EUR", "paid": !paid.is_null(),
                   "shipment": {"carrier": "UPS", "weight_kg": 4}, "created_at": created, "updated_at": updated, "paid_at": paid})
        };
        vec![
            order(
                "A",
                "2026-11-29T10:00:00Z",
                "2026-11-29T11:00:00Z",
                Value::Null,
            ),
            order(
                "B",
                "2026-11-29T08:00:00Z",
                "2026-11-29T12:00:00Z",
                json!("2026-11-29T09:00:00Z"),
            ),
            order(
                "C",
                "2026-11-29T09:00:00Z",
                "2026-11-29T09:30:00Z",
                json!("2026-11-29T08:30:00Z"),
            ),
        ]
    }

    /// The order ids in the order the engine started their instances (instance ids count up).
    fn started_order(started: &[InstanceInfo]) -> Vec<String> {
        let mut by_id: Vec<(u64, String)> = started
            .iter()
            .map(|info| {
                let number = info
                    .id
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("numbered instance id");
                (
                    number,
                    info.variables["order_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        by_id.sort();
        by_id.into_iter().map(|(_, order)| order).collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn imported_orders_start_in_the_order_of_the_configured_time() {
        for (sort_by, expected) in [
            (SortBy::Created, ["B", "C", "A"]),
            (SortBy::Updated, ["C", "A", "B"]),
            (SortBy::Paid, ["C", "B", "A"]),
        ] {
            let started = import(&args(sort_by), batch()).await.unwrap();
            assert_eq!(started_order(&started), expected, "{sort_by:?}");
            assert!(
                started.iter().all(|info| info.status == "completed"),
                "{started:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_order_that_is_not_an_object_is_refused() {
        let err = import(
            &args(SortBy::Created),
            vec![json!({"order_id": "A"}), json!(7)],
        )
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "order 2 of batch.json is not a JSON object"
        );
    }
}
