//! Flowbot's application layer: one place where a Flowbot service is put together and used, so
//! that the `flowbot` command-line interface, the HTTP server and services that embed Flowbot do
//! the same thing the same way.
//!
//! - [`AppConfig`]: settings from `flowbot.toml`, `FLOWBOT_*` variables and flags.
//! - [`App`]: the engine built once (store, rules, model), with typed services: check, deploy,
//!   reload, start, complete, correlate, signal, cancel, incidents, listings, history,
//!   notifications.
//! - [`intake`]: ERP exports cleaned, aligned and started as orders in rule 2's order
//!   ([`App::intake`], [`App::start_batch`]).
//! - [`view`]: the serde views every interface shows.
//! - [`bindings`]: HTTP routes declared in configuration (`[[routes]]`), each bound to one
//!   action (start, message, complete a task, set variables).
//! - [`corrections`]: reviewers' corrections of model output, recorded as training data.
//! - [`text_intake`]: free-text orders (an e-mail) read by the `order_email` process.
//! - [`AppError`]: one error type, mapped to exit codes and HTTP statuses.
//!
//! Embedding in a few lines:
//!
//! ```no_run
//! # async fn example() -> Result<(), flowbot_app::AppError> {
//! use flowbot_app::{App, AppConfig, TaskFilter};
//! let config = AppConfig { workflows: Some("workflows".into()), ..AppConfig::default() };
//! let app = App::open(config).await?;
//! let order = serde_json::json!({"order_id": "SO-1", "amount": 20000});
//! app.start(flowbot_app::StartRequest {
//!     process_id: "order_processing".into(),
//!     variables: order.as_object().cloned().unwrap_or_default(),
//!     business_key: Some("SO-1".into()),
//! })
//! .await?;
//! for task in app.open_tasks(&TaskFilter::default()) {
//!     println!("{} waits at {}", task.instance, task.node);
//! }
//! # Ok(()) }
//! ```

mod app;
pub mod bindings;
pub mod clock;
mod cluster;
pub mod config;
pub mod corrections;
mod error;
pub mod intake;
pub mod llm;
pub mod models;
pub mod project;
mod reload;
pub mod text_intake;
pub mod view;

pub use app::{
    check_file_name, migrate_store, App, AppBuilder, DeployedProcess, FetchProgress, FileOutcome,
    ReloadReport,
};
pub use config::{AppConfig, ConfigOverrides};
pub use error::{AppError, ErrorKind};
pub use reload::FolderWatcher;

pub use flowbot_engine::executor::{InstanceStatus, WaitType};
pub use flowbot_engine::runtime::{
    AutoComplete, Correlation, InstanceFilter, Page, StartRequest, TaskFilter,
};
