//! Subcommands, one module each.

mod bench;
mod effects;
mod history;
mod load;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Flowbot: BPMN workflows with business rules and a local language model.
#[derive(Debug, Parser)]
#[command(name = "flowbot", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the history (audit log) of an instance from a store.
    History(history::HistoryArgs),
    /// Run N instances of a process to completion and report throughput.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::History(args) => history::run(args),
            Command::Bench(args) => bench::run(args),
        }
    }
}
