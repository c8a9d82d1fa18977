//! `flowbot model eval-confirm [FILE.jsonl]`: writes the confirmation of each reference order
//! (default `examples/confirmations.jsonl`, English and Chinese orders) through a workflow's
//! `generate` step (default: `workflows/order_processing.yaml`'s only one) and checks each text
//! by rules a customer would notice: the order id, the customer and the amount with its currency
//! code appear verbatim, and the text is in the order's language. `--compare A B` runs two model
//! files side by side.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use flowbot_dataset::Language;
use flowbot_engine::llm::{LlmOutput, TextGenerator};
use flowbot_engine::model::LlmMode;
use flowbot_engine::runtime::llm_step;
use flowbot_model_runtime::batch::BatchOptions;
use serde_json::{Map, Value};

use super::eval_extract::llm_task;
use super::ModelChoice;

/// The rules a confirmation is checked by, in report order.
const RULES: [&str; 5] = ["order id", "customer", "amount", "currency", "language"];

/// Arguments of `eval-confirm`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    /// Reference orders, one JSON object per line: the variables the step's prompt names
    /// (`order_id`, `customer_name`, `amount`, `currency`, `language_name`) and `language`
    /// (`en` or `zh`).
    #[arg(default_value = "examples/confirmations.jsonl")]
    orders: PathBuf,
    /// The workflow whose `generate` step writes the confirmation.
    #[arg(long, default_value = "workflows/order_processing.yaml")]
    workflow: PathBuf,
    /// The generate step (default: the workflow's only one).
    #[arg(long)]
    node: Option<String>,
    /// Print each confirmation with the rules it breaks.
    #[arg(long)]
    verbose: bool,
    /// Evaluate two model files and print them side by side; an adapter file is applied to
    /// `--model`.
    #[arg(long, num_args = 2, value_names = ["MODEL_A", "MODEL_B"])]
    compare: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelChoice,
}

/// One reference order.
struct Reference {
    place: String,
    variables: Map<String, Value>,
    language: Language,
}

/// The text of variable `name` as the prompt renders it.
fn text_of(variables: &Map<String, Value>, name: &str) -> String {
    match variables.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Which of [`RULES`] `text` keeps for `reference`.
fn check(text: &str, reference: &Reference) -> [bool; 5] {
    let has = |name: &str| {
        let value = text_of(&reference.variables, name);
        !value.is_empty() && text.contains(&value)
    };
    [
        has("order_id"),
        has("customer_name"),
        has("amount"),
        has("currency"),
        Language::detect(text) == reference.language,
    ]
}

fn references(path: &Path) -> anyhow::Result<Vec<Reference>> {
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut references = Vec::new();
    for (index, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("{}:{}", path.display(), index + 1);
        let variables: Map<String, Value> =
            serde_json::from_str(line).with_context(|| format!("{place}: not a JSON object"))?;
        let language = match variables.get("language").and_then(Value::as_str) {
            Some("en") => Language::En,
            Some("zh") => Language::Zh,
            _ => anyhow::bail!("{place}: `language` must be \"en\" or \"zh\""),
        };
        references.push(Reference {
            place,
            variables,
            language,
        });
    }
    anyhow::ensure!(!references.is_empty(), "{}: no orders", path.display());
    Ok(references)
}

impl ConfirmArgs {
    /// Runs the evaluation and prints the rates.
    pub fn run(self) -> anyhow::Result<()> {
        let references = references(&self.orders)?;
        let task = llm_task(&self.workflow, self.node.as_deref(), LlmMode::Generate)?;
        let models = match self.compare.as_slice() {
            [a, b] => vec![a.clone(), b.clone()],
            _ => vec![self.model.path()?],
        };
        let mut columns = Vec::new();
        for model in &models {
            let generator = self.model.load_local(
                model,
                BatchOptions {
                    slots: 1,
                    queue: references.len(),
                },
            )?;
            let mut kept = [0usize; RULES.len()];
            let mut all = 0usize;
            for reference in &references {
                let request = llm_step::build_request(&task, &reference.variables)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", reference.place))?;
                let text = match generator.generate(&request)?.output {
                    LlmOutput::Text(text) => text,
                    _ => anyhow::bail!("the generate step answered something other than text"),
                };
                let checks = check(&text, reference);
                for (count, ok) in kept.iter_mut().zip(checks) {
                    *count += usize::from(ok);
                }
                all += usize::from(checks.iter().all(|ok| *ok));
                if self.verbose {
                    let broken: Vec<&str> = RULES
                        .iter()
                        .zip(checks)
                        .filter(|(_, ok)| !ok)
                        .map(|(rule, _)| *rule)
                        .collect();
                    eprintln!(
                        "{} {}: {text:?}{}",
                        model.display(),
                        reference.place,
                        if broken.is_empty() {
                            String::new()
                        } else {
                            format!("  BREAKS: {}", broken.join(", "))
                        }
                    );
                }
            }
            columns.push((model.display().to_string(), kept, all));
        }
        let n = references.len();
        let rate = |k: usize| format!("{k}/{n} ({:.1}%)", 100.0 * k as f64 / n as f64);
        let width = columns[0].0.chars().count().max(20) + 2;
        let row = |label: &str, cells: Vec<String>| {
            let cells: Vec<String> = cells.iter().map(|c| format!("{c:<width$}")).collect();
            println!("{label:<14}{}", cells.join("").trim_end());
        };
        if columns.len() > 1 {
            row("", columns.iter().map(|c| c.0.clone()).collect());
        }
        row("orders", vec![n.to_string(); columns.len()]);
        for (i, rule) in RULES.iter().enumerate() {
            row(rule, columns.iter().map(|c| rate(c.1[i])).collect());
        }
        row("all rules", columns.iter().map(|c| rate(c.2)).collect());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reference(language: Language) -> Reference {
        let variables = json!({"order_id": "SO-1001", "customer_name": "ACME Ltd",
            "amount": "1234.50", "currency": "EUR", "language_name": "English"});
        Reference {
            place: "test".into(),
            variables: variables.as_object().unwrap().clone(),
            language,
        }
    }

    #[test]
    fn each_rule_is_checked_on_its_own() {
        let good = "Dear ACME Ltd, we received your order SO-1001, total 1234.50 EUR. We will tell you when it ships.";
        assert_eq!(check(good, &reference(Language::En)), [true; 5]);
        // The amount must be written as in the order, the currency by its code.
        let loose = "Dear ACME Ltd, we received your order SO-1001 of 1,234.5 euros.";
        assert_eq!(
            check(loose, &reference(Language::En)),
            [true, true, false, false, true]
        );
        // The language is the order's.
        let chinese =
            "尊敬的ACME Ltd，我们已收到您的订单SO-1001，总额1234.50 EUR，发货时将通知您。";
        assert_eq!(
            check(chinese, &reference(Language::En)),
            [true, true, true, true, false]
        );
        assert_eq!(check(chinese, &reference(Language::Zh)), [true; 5]);
    }
}
