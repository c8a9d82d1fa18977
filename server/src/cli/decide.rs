//! `flowbot decide FILE [--decision ID] --vars JSON [--json]`: evaluates a decision of a DMN or
//! YAML decision file over the given variables and prints the result and the rules that matched.
//! Without `--decision`, the file's one decision that no other decision requires is evaluated.
//! Exit 0 when the decision was evaluated, 1 when the file has errors or the evaluation failed.

use anyhow::{bail, Context};
use clap::Args;
use flowbot_app::project;
use flowbot_engine::diagnostics::has_errors;
use flowbot_engine::dmn::DecisionFile;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `flowbot decide`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The decision file (`.dmn`, or YAML with `decision:`).
    pub path: PathBuf,
    /// The decision's id (default: the one no other decision of the file requires).
    #[arg(long)]
    pub decision: Option<String>,
    /// The input variables, a JSON object.
    #[arg(long, default_value = "{}")]
    pub vars: String,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn execute(args: &DecideArgs) -> anyhow::Result<ExitCode> {
    let variables: Value = serde_json::from_str(&args.vars).context("--vars is not valid JSON")?;
    let Value::Object(variables) = variables else {
        bail!("--vars must be a JSON object, like {{\"amount\": 500}}");
    };
    if !project::is_decision_file(&args.path) {
        bail!(
            "{} is not a decision file (a .dmn file, or YAML starting with `decision:`)",
            args.path.display()
        );
    }
    let (file, mut diagnostics) = project::read_decision_file(&args.path);
    let (decisions, more) = project::build_decisions(&[&args.path]);
    diagnostics.extend(more);
    project::sort(&mut diagnostics);
    for diagnostic in &diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(file) = file.filter(|_| !has_errors(&diagnostics)) else {
        return Ok(ExitCode::FAILURE);
    };
    let id = match &args.decision {
        Some(id) => id.clone(),
        None => top_decision(&file)?,
    };
    match decisions.evaluate(&id, &variables) {
        Ok(evaluation) => {
            let result = evaluation.value.to_json();
            if args.json {
                let report = json!({
                    "decision": id,
                    "result": result,
                    "matched": evaluation.matched,
                });
                super::write_stdout(&format!("{report}\n"))?;
            } else {
                let mut text = format!("{id}: {result}\n");
                for rule in &evaluation.matched {
                    let rule_id = rule
                        .rule_id
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "  matched {} rule {}{rule_id}\n",
                        rule.decision, rule.rule
                    ));
                }
                super::write_stdout(&text)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            let at = err.location().map(|a| format!("{a}: ")).unwrap_or_default();
            eprintln!("{at}error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The decision no other decision of the file requires, when there is exactly one.
fn top_decision(file: &DecisionFile) -> anyhow::Result<String> {
    let tops: Vec<&str> = file
        .decisions
        .iter()
        .filter(|d| {
            !file
                .decisions
                .iter()
                .any(|o| o.required_decisions.iter().any(|r| r.id == d.id))
        })
        .map(|d| d.id.as_str())
        .collect();
    match tops.as_slice() {
        [one] => Ok(one.to_string()),
        _ => bail!(
            "{} has several decisions; choose one with --decision ({})",
            file.source.display(),
            tops.join(", ")
        ),
    }
}
