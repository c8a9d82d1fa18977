//! The `flowbot` binary.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Flowbot: business processes with a local language model.
#[derive(Debug, Parser)]
#[command(name = "flowbot", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Local language model commands.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Measure load time, prompt and decode speed on the reference prompt.
    Bench(cli::model_bench::BenchArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Model(ModelCommand::Bench(args)) => cli::model_bench::run(args),
    }
}
