//! Command-line subcommands, one module each.

pub mod model_bench;
