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
    init_logging(&args.command);
    match cli::execute(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr only (stdout carries command output such as `run --json`). `serve` logs at
/// `info` by default (requests it refuses, admin calls, reloads), as JSON with `--log-format
/// json`; the other commands at `warn`.
fn init_logging(command: &cli::Command) {
    let (level, json, serve) = match command {
        cli::Command::Serve(args) => ("info", args.log_format == cli::serve::LogFormat::Json, true),
        _ => ("warn", false, false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(false).init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        builder.with_ansi(ansi).with_target(serve).init();
    }
}
