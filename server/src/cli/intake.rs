//! `flowbot intake PATH... [--mapping FILE] [--out FILE.jsonl] [--report FILE.json]
//! [--sort created|updated|paid] [--time-zone TZ] [--json]`: reads ERP exports with
//! `flowbot-intake`, aligns the same order across them and sorts the orders (rule 2's times).
//! Exit 0 when every file was read (bad rows are in the report), 1 when a file cannot be read
//! at all (then nothing is written).

use super::import::SortBy;
use anyhow::Context;
use clap::Args;
use flowbot_intake::{align, read_path, Batch, Limits, Mapping, Options, Tz};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Extensions of the files taken from a folder.
const EXPORT_EXTENSIONS: [&str; 5] = ["csv", "tsv", "json", "jsonl", "ndjson"];

/// Arguments of `flowbot intake`.
#[derive(Debug, Args)]
pub struct IntakeArgs {
    /// Export files (CSV, JSON, JSONL), or folders: their .csv, .tsv, .json, .jsonl and .ndjson
    /// files, by name, not recursive.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Mapping file (TOML): per file its source, encoding, delimiter, formats and columns
    /// (docs/intake.md).
    #[arg(long)]
    pub mapping: Option<PathBuf>,
    /// Write the aligned orders here, one JSON object per line.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the report (files, bad rows with file, row and reasons, totals) here as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Which time orders the batch; orders without it come last.
    #[arg(long, value_enum, default_value = "created")]
    pub sort: SortBy,
    /// The time zone every time is converted into (an IANA name); zone-less times are read in
    /// it unless the mapping gives their file a zone.
    #[arg(long, default_value = "UTC")]
    pub time_zone: String,
    /// Print one JSON object on stdout: `{"report": …, "orders": […]}`.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &IntakeArgs) -> anyhow::Result<ExitCode> {
    let time_zone: Tz = args.time_zone.parse().map_err(|_| {
        anyhow::anyhow!(
            "unknown time zone `{}` (an IANA name such as Asia/Shanghai or UTC)",
            args.time_zone
        )
    })?;
    let mapping = args
        .mapping
        .as_deref()
        .map(Mapping::load)
        .transpose()?
        .unwrap_or_default();
    let options = Options {
        mapping,
        limits: Limits::default(),
        time_zone,
    };
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    for path in export_files(&args.paths)? {
        match read_path(&path, &options) {
            Ok(file) => files.push(file),
            Err(error) => unreadable.push(error),
        }
    }
    if !unreadable.is_empty() {
        for error in &unreadable {
            eprintln!("error: {error}");
        }
        eprintln!(
            "{} of the files cannot be read; nothing was written",
            unreadable.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let sort_by = match args.sort {
        SortBy::Created => flowbot_intake::SortBy::Created,
        SortBy::Updated => flowbot_intake::SortBy::Updated,
        SortBy::Paid => flowbot_intake::SortBy::Paid,
    };
    let batch = align(files, sort_by);
    if let Some(path) = &args.out {
        write_file(path, &batch.orders_jsonl()?)?;
    }
    if let Some(path) = &args.report {
        write_file(path, &(batch.report_json()? + "\n"))?;
    }
    let text = if args.json {
        batch.to_json()? + "\n"
    } else {
        summary(&batch, args)
    };
    super::write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The files named, folders replaced by their export files.
fn export_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| file.is_file() && is_export(file))
            .collect();
        anyhow::ensure!(
            !found.is_empty(),
            "{} holds no export files (.csv, .tsv, .json, .jsonl, .ndjson)",
            path.display()
        );
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn is_export(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            EXPORT_EXTENSIONS.contains(&extension.to_ascii_lowercase().as_str())
        })
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// What a person reads: per file what was read, the totals, every bad row, what was written.
fn summary(batch: &Batch, args: &IntakeArgs) -> String {
    let report = &batch.report;
    let totals = &report.totals;
    let mut text = String::new();
    for file in &report.files {
        let delimiter = file
            .delimiter
            .as_deref()
            .map(|d| format!(", delimiter {d:?}"))
            .unwrap_or_default();
        let bom = if file.bom { " with BOM" } else { "" };
        let _ = writeln!(
            text,
            "{} ({}, {}, {}{bom}{delimiter}): {} rows, {} good, {} bad",
            file.file,
            file.source,
            file.format.name(),
            file.encoding,
            file.rows,
            file.good_rows,
            file.bad_rows
        );
    }
    let _ = writeln!(
        text,
        "{} orders from {} good rows of {} ({} bad, {} blank skipped); {} from several sources, {} conflicts resolved by update time; sorted by {} time",
        totals.orders,
        totals.good_rows,
        totals.rows,
        totals.bad_rows,
        totals.blank_rows,
        totals.merged_orders,
        totals.conflicts,
        report.sorted_by.name(),
    );
    for bad in &report.bad_rows {
        let _ = writeln!(
            text,
            "  {} row {} (line {}): {}",
            bad.file, bad.row, bad.line, bad.reason
        );
    }
    if let Some(path) = &args.out {
        let _ = writeln!(text, "orders: {}", path.display());
    }
    if let Some(path) = &args.report {
        let _ = writeln!(text, "report: {}", path.display());
    }
    text
}
