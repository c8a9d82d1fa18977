//! The command-line interface: one module per command, each a thin adapter over the application
//! layer (`flowbot-app`). To add a command, add its module, a variant to [`Command`] and a line to
//! [`execute`].

pub mod bench;
pub mod check;
pub mod corrections;
pub mod dataset;
pub mod db;
pub mod decide;
pub mod demo;
mod effects;
pub mod graph;
pub mod history;
pub mod import;
pub mod intake;
pub mod model;
pub mod resume;
pub mod run;
pub mod schema;
pub mod serve;
mod service;
pub mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flowbot: run BPMN and YAML business processes with a local language model built in.
#[derive(Debug, Parser)]
#[command(name = "flowbot", version)]
pub struct Cli {
    /// The configuration file (default: $FLOWBOT_CONFIG, else ./flowbot.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check process files (BPMN, YAML) and rule files (.rhai); folders are searched recursively.
    Check(check::CheckArgs),
    /// Run one process instance (in memory, or in a sled store) and print where it went.
    Run(run::RunArgs),
    /// Evaluate a decision (DMN or YAML decision table) over the given variables.
    Decide(decide::DecideArgs),
    /// Carry on what is due in a sled store (timers, jobs in flight) and print its instances.
    Resume(resume::ResumeArgs),
    /// Deploy the workflows folder and redeploy what changes in it and in the rules folder.
    Watch(watch::WatchArgs),
    /// Serve the REST and admin API, the notification feed and the dashboard over HTTP.
    Serve(serve::ServeArgs),
    /// The order robot's day: serve, import the example exports, play the day, show the result.
    Demo(demo::DemoArgs),
    /// Print the process graph as Graphviz dot or Mermaid.
    Graph(graph::GraphArgs),
    /// Print the JSON Schema of the YAML process language.
    Schema(schema::SchemaArgs),
    /// Print the history (audit log) of an instance from a store.
    History(history::HistoryArgs),
    /// Start one instance per item of a batch, in the order a sort rule gives.
    Import(import::ImportArgs),
    /// Read ERP exports (CSV, JSON, JSONL): clean, align the same order across sources, sort.
    Intake(intake::IntakeArgs),
    /// Run N instances of a process to completion and report instances/s and steps/s.
    Bench(bench::BenchArgs),
    /// The PostgreSQL store's database: `db migrate` applies the schema migrations.
    Db(db::DbArgs),
    /// Local language model: fetch, inspect, generate, evaluate, benchmark.
    Model(model::ModelArgs),
    /// Training data for the order case's language-model steps: build train/dev/test sets.
    Dataset(dataset::DatasetArgs),
    /// Reviewers' corrections of model output, recorded as training data: export them.
    Corrections(corrections::CorrectionsArgs),
}

/// Writes command output to stdout. A closed pipe (`flowbot schema | head`) ends the output
/// quietly instead of failing.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// Runs a command and returns the exit code it asks for.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Check(args) => check::execute(&args),
        Command::Run(args) => run::execute(&args, config),
        Command::Decide(args) => decide::execute(&args),
        Command::Resume(args) => resume::execute(&args, config),
        Command::Watch(args) => watch::execute(&args, config),
        Command::Serve(args) => serve::execute(&args, config),
        Command::Demo(args) => demo::execute(&args, config),
        Command::Graph(args) => graph::execute(&args),
        Command::Schema(args) => schema::execute(&args),
        Command::History(args) => history::run(args),
        Command::Bench(args) => bench::run(args, config),
        Command::Db(args) => db::execute(&args, config),
        Command::Model(args) => args.run().map(|()| ExitCode::SUCCESS),
        Command::Import(args) => import::execute(&args, config),
        Command::Intake(args) => intake::execute(&args),
        Command::Dataset(args) => dataset::execute(&args),
        Command::Corrections(args) => corrections::execute(&args, config),
    }
}
