//! `flowbot import ITEMS.json --workflow PATH [--process ID] [--rules DIR] [--sort-rule FILE]
//! [--sort-by created|updated|paid] [--auto-complete] [--store DIR] [--json]`: starts one
//! instance per item of a batch (a JSON array of objects; each object is the starting variables
//! of its instance), in the order a sort rule gives, each run until it waits or ends before the
//! next one starts.
//!
//! The sort rule is a rule file of the rules folder that returns each `item`'s sort key; it is
//! named by `--sort-rule` or the configuration (`[intake] sort_rule`; the order case's
//! `flowbot.toml` names `import_order.rhai`, rule 2: orders by creation, update or payment time,
//! chosen with `--sort-by`, which the rule reads as `import_sort_by`). Without one, items start
//! in the order they came. The folder's rules run at every step of every instance.

use super::service;
use anyhow::Context;
use clap::{Args, ValueEnum};
use flowbot_app::config::{DurabilityKind, StoreChoice};
use flowbot_app::view::InstanceView;
use flowbot_app::{
    App, AppError, AutoComplete, ConfigOverrides, ErrorKind, InstanceStatus, StartRequest,
};
use flowbot_engine::model::RuleSource;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A JSON file holding an array of objects; each is the starting variables of its instance.
    pub items: PathBuf,
    /// The process file every item runs (e.g. `workflows/order_processing.yaml`).
    #[arg(long)]
    pub workflow: PathBuf,
    /// Process id (default: the first executable process).
    #[arg(long)]
    pub process: Option<String>,
    /// The rules folder (default: the configured one, else `rules/` beside the workflow's folder).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// The rule file (in the rules folder) that gives each item its sort key (default: the
    /// configured `[intake] sort_rule`).
    #[arg(long)]
    pub sort_rule: Option<String>,
    /// Which time the order case's sort rule orders by (`import_sort_by`).
    #[arg(long, value_enum, default_value = "created")]
    pub sort_by: SortBy,
    /// Complete user, manual and receive tasks and handler-less jobs at once.
    #[arg(long)]
    pub auto_complete: bool,
    /// Keep the instances in a sled store in this folder (default: in memory).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Print one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The time an order batch is processed by (`import_sort_by` of rule 2).
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
pub fn execute(args: &ImportArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.items)
        .with_context(|| format!("cannot read {}", args.items.display()))?;
    let items: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} must hold a JSON array of objects", args.items.display()))?;
    let overrides = ConfigOverrides {
        config_file,
        rules: args.rules.clone(),
        store: Some(match &args.store {
            Some(dir) => StoreChoice::Sled(dir.clone()),
            None => StoreChoice::Memory,
        }),
        durability: Some(DurabilityKind::Step),
        ..ConfigOverrides::default()
    };
    let started = match service::runtime()?.block_on(import(args, &overrides, items)) {
        Ok(started) => started,
        Err(error) => return Ok(service::report_error(&error)),
    };
    let text = if args.json {
        let rows: Vec<Value> = started
            .iter()
            .map(|view| json!({"order_id": view.variables.get("order_id"), "instance": view.id, "status": view.status}))
            .collect();
        format!("{}\n", serde_json::to_string(&rows)?)
    } else {
        started
            .iter()
            .map(|view| {
                let order = view
                    .variables
                    .get("order_id")
                    .map_or_else(|| "?".to_string(), Value::to_string);
                format!("{order} -> {}: {}\n", view.id, view.status)
            })
            .collect()
    };
    super::write_stdout(&text)?;
    Ok(
        if started
            .iter()
            .any(|view| view.status == InstanceStatus::Failed)
        {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// Sorts the batch with the sort rule and runs one instance per item in that order; returns them
/// in the order they were started.
async fn import(
    args: &ImportArgs,
    overrides: &ConfigOverrides,
    items: Vec<Value>,
) -> Result<Vec<InstanceView>, AppError> {
    if let Some(position) = items.iter().position(|item| !item.is_object()) {
        return Err(AppError::invalid_input(format!(
            "item {} of {} is not a JSON object",
            position + 1,
            args.items.display()
        )));
    }
    let mut config = service::config(overrides)?;
    if config.rules.is_none() {
        config.rules = flowbot_app::project::rules_folder_beside(&args.workflow);
    }
    let sort_rule = args
        .sort_rule
        .clone()
        .or_else(|| config.intake.sort_rule.clone());
    let mut builder = App::builder(config)
        .deploy_workflows(false)
        .schedule_timer_starts(false)
        .decisions(flowbot_app::project::decisions_beside(&args.workflow));
    if args.auto_complete {
        builder = builder.auto_complete(AutoComplete::default());
    }
    let app = builder.open().await?;
    let result = run_batch(&app, args, sort_rule, items).await;
    app.shutdown().await;
    result
}

async fn run_batch(
    app: &App,
    args: &ImportArgs,
    sort_rule: Option<String>,
    items: Vec<Value>,
) -> Result<Vec<InstanceView>, AppError> {
    let sorted = match sort_rule {
        Some(rule) => {
            let params = Map::from_iter([(
                "import_sort_by".to_string(),
                Value::from(args.sort_by.as_str()),
            )]);
            app.rules()
                .snapshot()
                .sort_by_rule(&RuleSource::File(rule), items, &params)
                .map_err(|e| AppError::new(ErrorKind::Invalid, e.to_string()))?
        }
        None => items,
    };
    let outcome = app.deploy_file(&args.workflow).await?;
    let process = match &args.process {
        Some(process) => process.clone(),
        None => outcome
            .deployed
            .first()
            .map(|p| p.process.clone())
            .ok_or_else(|| AppError::invalid_input("the workflow has no process to run"))?,
    };
    let mut started = Vec::with_capacity(sorted.len());
    for item in sorted {
        let view = app
            .start(StartRequest {
                process_id: process.clone(),
                variables: item.as_object().cloned().unwrap_or_default(),
                business_key: item
                    .get("order_id")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            })
            .await?;
        started.push(app.settle(&view.id).await?);
    }
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
            items: PathBuf::from("batch.json"),
            workflow: repo("workflows/order_processing.yaml"),
            process: None,
            rules: Some(repo("rules")),
            sort_rule: Some("import_order.rhai".into()),
            sort_by,
            auto_complete: true,
            store: None,
            json: false,
        }
    }

    fn overrides() -> ConfigOverrides {
        ConfigOverrides {
            config_file: Some(repo("flowbot.toml")),
            rules: Some(repo("rules")),
            store: Some(StoreChoice::Memory),
            ..ConfigOverrides::default()
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
    fn started_order(started: &[InstanceView]) -> Vec<String> {
        let mut by_id: Vec<(u64, String)> = started
            .iter()
            .map(|view| {
                let number = view
                    .id
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("numbered instance id");
                (
                    number,
                    view.variables["order_id"]
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
            let started = import(&args(sort_by), &overrides(), batch()).await.unwrap();
            assert_eq!(started_order(&started), expected, "{sort_by:?}");
            assert!(
                started
                    .iter()
                    .all(|view| view.status == InstanceStatus::Completed),
                "{started:?}"
            );
            assert_eq!(
                started[0].business_key.as_deref(),
                Some(expected[0]),
                "the order id is the business key"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_a_sort_rule_items_start_in_the_order_they_came() {
        let mut plain = args(SortBy::Created);
        plain.sort_rule = None;
        let overrides = ConfigOverrides {
            config_file: Some(repo("Cargo.toml").with_file_name("no-such-flowbot.toml")),
            ..overrides()
        };
        let err = import(&plain, &overrides, batch()).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Config,
            "a named config file that is missing is an error"
        );
        let started = import(
            &plain,
            &ConfigOverrides {
                config_file: None,
                ..overrides
            },
            batch(),
        )
        .await
        .unwrap();
        assert_eq!(started_order(&started), ["A", "B", "C"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_item_that_is_not_an_object_is_refused() {
        let err = import(
            &args(SortBy::Created),
            &overrides(),
            vec![json!({"order_id": "A"}), json!(7)],
        )
        .await
        .unwrap_err();
        assert_eq!(err.message(), "item 2 of batch.json is not a JSON object");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
