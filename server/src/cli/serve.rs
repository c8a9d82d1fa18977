//! `flowbot serve [--addr HOST:PORT] [--data DIR] [--workflows DIR] [--rules DIR] [--store
//! memory|postgres://...|DIR] [--node-id NAME] [--cluster] [--durability step|group] [--complete-jobs] [--model PATH]
//! [--log-format text|json]`: the HTTP
//! service (REST and admin API, WebSocket notifications, metrics, dashboard) until SIGTERM or
//! Ctrl-C. A thin adapter: the configuration and the application come from `flowbot-app`, the
//! routes and the server from `flowbot-http`.

use super::service;
use clap::{Args, ValueEnum};
use flowbot_app::config::{DurabilityKind, StoreChoice};
use flowbot_app::{App, ConfigOverrides};
use flowbot_engine::runtime::handler;
use flowbot_http::token::{resolve_admin_token, TokenSource};
use flowbot_http::{DataDirLock, ServeError};
use serde_json::Map;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `flowbot serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where to listen (default: the configured address, else 127.0.0.1:8080; port 0 picks a
    /// free one).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The data folder: store, admin token, lock (default: the configured one, else ./.data).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The workflows folder, deployed at start and watched (default: the configured one, else
    /// `workflows`).
    #[arg(long, value_name = "DIR")]
    pub workflows: Option<PathBuf>,
    /// The rules folder, loaded at start and watched (default: the configured one, else `rules`
    /// beside the workflows folder when present).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// `memory` (nothing survives a restart), a PostgreSQL database (`postgres://USER@HOST/DB`)
    /// or a sled folder (default: the configured store, else sled in `<data>/store`).
    #[arg(long, value_name = "memory|postgres://...|DIR")]
    pub store: Option<String>,
    /// This node's name in a shared database (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub node_id: Option<String>,
    /// Share the PostgreSQL database with other nodes started with `--cluster` (docs/cluster.md):
    /// the nodes divide the instances among them and take over those of a node that stops.
    #[arg(long)]
    pub cluster: bool,
    /// When a sled step is on disk: `group` (many instances share a flush; the default) or
    /// `step`.
    #[arg(long, value_enum)]
    pub durability: Option<Durability>,
    /// Complete service tasks that have no registered handler at once, with no outputs (demos,
    /// tests, benchmarks); without it such a job raises an incident.
    #[arg(long)]
    pub complete_jobs: bool,
    /// The model of LLM steps: a GGUF file or a model folder (default: the configured one, else
    /// the default model, fetched on first use).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// A LoRA adapter (`adapter.gguf` of `flowbot model finetune --method lora`) applied to the
    /// model at run time.
    #[arg(long, value_name = "PATH")]
    pub adapter: Option<PathBuf>,
    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// One flush per step.
    Step,
    /// Group commit.
    Group,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the command.
pub fn execute(args: &ServeArgs, config_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let overrides = ConfigOverrides {
        config_file,
        data_dir: args.data.clone(),
        workflows: args.workflows.clone(),
        rules: args.rules.clone(),
        store: args.store.as_deref().map(StoreChoice::parse),
        node_id: args.node_id.clone(),
        cluster: args.cluster.then_some(true),
        durability: args.durability.map(|d| match d {
            Durability::Step => DurabilityKind::Step,
            Durability::Group => DurabilityKind::Group,
        }),
        addr: args.addr.clone(),
        model: args.model.clone(),
        adapter: args.adapter.clone(),
        ..ConfigOverrides::default()
    };
    match service::runtime()?.block_on(serve(&overrides, args.complete_jobs)) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(ServeError::App(error)) => Ok(service::report_error(&error)),
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn serve(overrides: &ConfigOverrides, complete_jobs: bool) -> Result<(), ServeError> {
    let mut config = service::config(overrides)?;
    config
        .workflows
        .get_or_insert_with(|| PathBuf::from("workflows"));
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let (token, source) = resolve_admin_token(&config)?;
    match source {
        TokenSource::Configured => {}
        TokenSource::Stored(path) => eprintln!("admin token: {}", path.display()),
        TokenSource::Generated(path) => eprintln!(
            "admin token generated: {} (readable by this user only)",
            path.display()
        ),
    }
    let addr = config.http.addr.clone();
    let mut builder = App::builder(config).fetch_progress(service::fetch_progress());
    if complete_jobs {
        builder = builder.fallback_handler(handler(|_| async { Ok(Map::new()) }));
    }
    let app = Arc::new(builder.open().await?);
    let bindings = match flowbot_http::bindings::load(&app) {
        Ok(bindings) => bindings,
        Err(error) => {
            app.shutdown().await;
            return Err(error.into());
        }
    };
    let listener = flowbot_http::bind(&addr).await?;
    let local = listener.local_addr()?;
    let advertised = match &app.config().http.advertise_url {
        Some(url) => url.clone(),
        None if app.config().store.cluster && local.ip().is_unspecified() => {
            app.shutdown().await;
            return Err(flowbot_app::AppError::config(format!(
                "this node listens on {local}, which other nodes cannot reach it at: set \
                 http.advertise_url (FLOWBOT_ADVERTISE_URL) to its address, e.g. http://host-a:{}",
                local.port()
            ))
            .into());
        }
        None => format!("http://{local}"),
    };
    if let Err(error) = app.advertise(&advertised).await {
        app.shutdown().await;
        return Err(error.into());
    }
    tracing::info!(addr = %local, "listening");
    eprintln!("listening on http://{local}");
    flowbot_http::serve(app, listener, token, bindings, shutdown_signal()).await
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
