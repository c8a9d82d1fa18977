//! Command-line interface: one module per command.

pub mod model;

use clap::{Parser, Subcommand};

/// Flowbot: business processes with a local language model.
#[derive(Debug, Parser)]
#[command(name = "flowbot", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Local language model: fetch, inspect, generate, evaluate.
    Model(model::ModelArgs),
}

impl Cli {
    /// Runs the chosen command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Model(args) => args.run(),
        }
    }
}
