//! The `flowbot` binary: command-line front door to Flowbot.
//!
//! Every command lives in its own module under `cli/`, a thin adapter over the application layer
//! (`flowbot-app`); `main` only parses arguments, sets up logging (tracing to stderr, filtered by
//! `RUST_LOG`) and maps the outcome to an exit code.

mod cli;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: an instance turn allocates many small strings and
/// buffers, and glibc's malloc spent about a third of `flowbot bench`'s CPU time on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    match cli::execute(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only (stdout carries command output such as `run --json`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
