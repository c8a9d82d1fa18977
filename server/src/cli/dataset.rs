//! `flowbot dataset build [--orders FILE.jsonl] [--corrections FILE.jsonl] [--emails DIR]...
//! [--synthetic N] [--emails-per-order N] --out DIR [--split 8:1:1] [--seed N] [--augment N]
//! [--json]`: the order-extraction training set, built by `flowbot-dataset`.

use anyhow::Context;
use clap::{Args, Subcommand};
use flowbot_dataset::split::Ratio;
use flowbot_dataset::{build, BuildConfig, SplitStats};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot dataset`.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DatasetCommand,
}

/// The data-set commands.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Build train/dev/test JSONL files and stats.json from orders, corrections and e-mails.
    Build(BuildArgs),
}

/// Arguments of `flowbot dataset build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Aligned orders from `flowbot intake --out` (JSONL): e-mails are written from each.
    #[arg(long)]
    pub orders: Option<PathBuf>,
    /// Reviewers' corrections (JSONL: `input`, `corrected`).
    #[arg(long)]
    pub corrections: Option<PathBuf>,
    /// A folder of labelled e-mails (`NAME.txt` + `NAME.expected.json`); may be repeated.
    #[arg(long)]
    pub emails: Vec<PathBuf>,
    /// Invented orders to write e-mails from, beside `--orders`.
    #[arg(long, default_value_t = 0)]
    pub synthetic: usize,
    /// E-mails written per order.
    #[arg(long, default_value_t = 2)]
    pub emails_per_order: usize,
    /// train:dev:test.
    #[arg(long, default_value = "8:1:1")]
    pub split: String,
    /// Seed of generation, split and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Augmented variants added per train example.
    #[arg(long, default_value_t = 0)]
    pub augment: usize,
    /// The folder to write to.
    #[arg(long)]
    pub out: PathBuf,
    /// Print stats.json on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &DatasetArgs) -> anyhow::Result<ExitCode> {
    let DatasetCommand::Build(args) = &args.command;
    let ratio: Ratio = args.split.parse()?;
    if args.orders.is_none()
        && args.corrections.is_none()
        && args.emails.is_empty()
        && args.synthetic == 0
    {
        anyhow::bail!(
            "nothing to build from: give --orders, --corrections, --emails or --synthetic N"
        );
    }
    let report = build(&BuildConfig {
        orders: args.orders.clone(),
        corrections: args.corrections.clone(),
        emails: args.emails.clone(),
        synthetic: args.synthetic,
        emails_per_order: args.emails_per_order,
        ratio,
        seed: args.seed,
        augment: args.augment,
        out: args.out.clone(),
    })
    .with_context(|| format!("building the data set in {}", args.out.display()))?;
    let stats = &report.stats;
    if args.json {
        super::write_stdout(&(serde_json::to_string_pretty(stats)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let line = |name: &str, split: &SplitStats| {
        let languages: Vec<String> = split
            .languages
            .iter()
            .map(|(language, n)| format!("{language} {n}"))
            .collect();
        format!(
            "{name:<6}{:>7} examples ({} augmented; {})\n",
            split.examples,
            split.augmented,
            languages.join(", ")
        )
    };
    out.push_str(&line("train", &stats.train));
    out.push_str(&line("dev", &stats.dev));
    out.push_str(&line("test", &stats.test));
    writeln!(
        out,
        "{} duplicates kept once, {} items left out{}",
        stats.duplicates,
        stats.dropped.len(),
        if stats.dropped.is_empty() { "" } else { ":" }
    )?;
    for problem in &stats.dropped {
        writeln!(out, "  {}: {}", problem.source, problem.reason)?;
    }
    for file in &report.files {
        writeln!(out, "wrote {}", file.display())?;
    }
    super::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}
