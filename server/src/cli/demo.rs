//! `flowbot demo [--addr HOST:PORT] [--exports DIR] [--pace MS] [--exit]`: the order robot's day,
//! served and driven in one process. Starts the service (REST, dashboard, notification feed) with
//! the repository's configuration on a manual clock and a memory store, fetches and loads the
//! model, imports the example ERP exports through the intake, then plays the day: a clerk
//! approves the orders waiting for review, customers pay some orders, the warehouse ships most of
//! them, and at the end of the day the clock moves past the daily settlement. It prints what
//! happened and keeps serving until Ctrl-C (`--exit`: stop when the day is done).
//!
//! The clerk, the customers and the warehouse act through the same services as the HTTP API.

use super::service;
use anyhow::Context;
use clap::Args;
use flowbot_app::config::{ClockKind, StoreChoice};
use flowbot_app::intake::{IntakeRequest, Upload};
use flowbot_app::{App, ConfigOverrides, InstanceFilter, InstanceStatus, TaskFilter};
use flowbot_engine::runtime::handler;
use flowbot_http::token::resolve_admin_token;
use flowbot_http::DataDirLock;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The exports of the example data and the mapping that describes them.
const EXPORTS: [&str; 3] = ["order_system.csv", "sales.csv", "finance.json"];

/// Arguments of `flowbot demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to listen (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "HOST:PORT")]
    pub addr: String,
    /// The folder of ERP exports (order_system.csv, sales.csv, finance.json, mapping.toml).
    #[arg(long, default_value = "examples/data", value_name = "DIR")]
    pub exports: PathBuf,
    /// Pause between two actions of the day, in milliseconds, to watch them in the browser.
    #[arg(long, default_value_t = 0)]
    pub pace: u64,
    /// Stop once the day is done instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// Runs the command.
pub fn execute(args: &DemoArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    service::runtime()?.block_on(demo(args, config_file))
}

async fn demo(args: &DemoArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let data_dir = std::env::temp_dir().join(format!("flowbot-demo-{}", std::process::id()));
    let overrides = ConfigOverrides {
        config_file,
        data_dir: Some(data_dir.clone()),
        store: Some(StoreChoice::Memory),
        clock: Some(ClockKind::Manual),
        addr: Some(args.addr.clone()),
        ..ConfigOverrides::default()
    };
    let mut config = match service::config(&overrides) {
        Ok(config) => config,
        Err(error) => return Ok(service::report_error(&error)),
    };
    config
        .workflows
        .get_or_insert_with(|| PathBuf::from("workflows"));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let (token, _) = resolve_admin_token(&config)?;
    let addr = config.http.addr.clone();
    eprintln!("== starting the order robot (the model is fetched and loaded first)");
    let opened = App::builder(config)
        .fetch_progress(service::fetch_progress())
        // Systems the demo has no connection to (ERP import, warehouse, accounting) answer at once.
        .fallback_handler(handler(|_| async { Ok(Map::new()) }))
        .open()
        .await;
    let app = match opened {
        Ok(app) => Arc::new(app),
        Err(error) => return Ok(service::report_error(&error)),
    };
    let bindings = match flowbot_http::bindings::load(&app) {
        Ok(bindings) => bindings,
        Err(error) => {
            app.shutdown().await;
            return Ok(service::report_error(&error));
        }
    };
    let listener = flowbot_http::bind(&addr).await?;
    let local = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flowbot_http::serve(
        app.clone(),
        listener,
        token,
        bindings,
        async move {
            let _ = stopped.await;
        },
    ));
    eprintln!(
        "dashboard: http://{local}/   (REST API under /api/v1, seed routes such as POST /import)"
    );

    let day = Instant::now();
    let outcome = play_the_day(&app, args).await;
    let elapsed = day.elapsed();
    match outcome {
        Ok(summary) => println!("{}", summary.render(elapsed)),
        Err(error) => eprintln!("error: {error:#}"),
    }
    if !args.exit {
        eprintln!("serving on http://{local}/ until Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(ExitCode::SUCCESS)
}

/// What the day did, for the closing report.
#[derive(Debug, Default)]
struct Summary {
    rows: usize,
    bad_rows: Vec<String>,
    orders: usize,
    reviewed: usize,
    paid: usize,
    shipped: usize,
    statuses: BTreeMap<String, usize>,
    notifications: BTreeMap<String, usize>,
    end_of_day_notifications: usize,
    confirmation: Option<String>,
}

impl Summary {
    fn render(&self, elapsed: Duration) -> String {
        let mut out = format!(
            "== the day in {:.1} s\nintake: {} rows read, {} bad rows reported (e.g. {}), {} orders started\n",
            elapsed.as_secs_f64(),
            self.rows,
            self.bad_rows.len(),
            self.bad_rows.first().map_or("none", String::as_str),
            self.orders,
        );
        out += &format!(
            "clerk: {} large orders reviewed; customers paid {}; the warehouse shipped {}\n",
            self.reviewed, self.paid, self.shipped
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        out += &format!("orders now: {}\n", statuses.join(", "));
        let receivers: Vec<String> = self
            .notifications
            .iter()
            .map(|(receiver, n)| format!("{receiver} {n}"))
            .collect();
        out += &format!(
            "notifications: {} ({} of them at the end of the day)\n",
            receivers.join(", "),
            self.end_of_day_notifications
        );
        if let Some(text) = &self.confirmation {
            out += &format!("a confirmation the model wrote: {text}\n");
        }
        out
    }
}

async fn play_the_day(app: &App, args: &DemoArgs) -> anyhow::Result<Summary> {
    let pace = Duration::from_millis(args.pace);
    let mut summary = Summary::default();

    eprintln!("== intake of {}", args.exports.display());
    let mut files = Vec::new();
    for name in EXPORTS {
        let path = args.exports.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push(Upload {
            name: name.to_string(),
            bytes,
        });
    }
    let mapping_path = args.exports.join("mapping.toml");
    let mapping = std::fs::read_to_string(&mapping_path)
        .with_context(|| format!("reading {}", mapping_path.display()))?;
    let outcome = app
        .intake(IntakeRequest {
            files,
            mapping: Some(mapping),
            ..IntakeRequest::default()
        })
        .await?;
    summary.rows = outcome.report.totals.rows;
    summary.bad_rows = outcome
        .report
        .bad_rows
        .iter()
        .map(|bad| format!("{} row {}: {}", bad.file, bad.row, bad.reason))
        .collect();
    summary.orders = outcome.started.len();
    let orders: Vec<(String, String)> = outcome
        .started
        .iter()
        .map(|started| (started.order_id.clone(), started.instance.clone()))
        .collect();

    let bar = ProgressBar::new(orders.len() as u64 * 2).with_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("reviews");
    let reviews = app.open_tasks(&TaskFilter {
        node: Some("review_order".into()),
        ..TaskFilter::default()
    });
    for task in &reviews {
        app.complete_task(&task.id, object(json!({"approved": true})))
            .await?;
        summary.reviewed += 1;
        tokio::time::sleep(pace).await;
    }
    bar.inc(orders.len() as u64);

    bar.set_message("shipments");
    for (index, (_, instance)) in orders.iter().enumerate() {
        let view = app.settle(instance).await?;
        if index % 2 == 0 && view.variables.get("paid") != Some(&Value::Bool(true)) {
            app.set_variables(
                instance,
                object(json!({"paid": true, "payment_status": "paid"})),
            )
            .await?;
            summary.paid += 1;
        }
        if index % 3 != 2 {
            let task = app.open_tasks(&TaskFilter {
                node: Some("ship_order".into()),
                instance: Some(instance.clone()),
                ..TaskFilter::default()
            });
            if let Some(task) = task.first() {
                let carrier = ["DHL", "SF Express", "UPS"][index % 3];
                let weight = 2.5 + (index % 17) as f64;
                app.complete_task(
                    &task.id,
                    object(json!({"shipment": format!("{carrier}, {weight} kg")})),
                )
                .await?;
                summary.shipped += 1;
            }
        }
        bar.inc(1);
        tokio::time::sleep(pace).await;
    }
    bar.finish_and_clear();

    eprintln!("== the end of the business day: the clock moves 24 h, the daily settlement runs");
    let before = app.notifications_after(0, None, usize::MAX)?.len();
    app.advance_clock(app.now_ms() + 24 * 3_600_000)?;
    wait_for_settlement(app).await?;
    for (_, instance) in &orders {
        app.settle(instance).await?;
    }

    let notifications = app.notifications_after(0, None, usize::MAX)?;
    summary.end_of_day_notifications = notifications.len().saturating_sub(before);
    for notification in &notifications {
        *summary
            .notifications
            .entry(receiver_role(&notification.receiver))
            .or_default() += 1;
    }
    for (_, instance) in &orders {
        let view = app.instance(instance)?;
        *summary
            .statuses
            .entry(status_word(view.status))
            .or_default() += 1;
        if summary.confirmation.is_none() {
            if let Some(Value::String(text)) = view.variables.get("confirmation") {
                summary.confirmation = Some(text.clone());
            }
        }
    }
    Ok(summary)
}

/// Waits until the daily settlement's instance of the day has ended (at most a minute).
async fn wait_for_settlement(app: &App) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = app.list_instances(
            &InstanceFilter {
                process_id: Some("daily_settlement".into()),
                ..InstanceFilter::default()
            },
            None,
            100,
        )?;
        if page.items.iter().any(|view| !view.status.is_active()) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the daily settlement did not run within a minute of the end of the day"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The receivers of the order case by role: warehouse and finance by name, customers together.
fn receiver_role(receiver: &str) -> String {
    match receiver {
        "warehouse" | "finance" => receiver.to_string(),
        _ => "customers".to_string(),
    }
}

fn status_word(status: InstanceStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{status:?}"))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
