//! `flowbot model eval-extract DIR`: runs order-field extraction over e-mails (`NAME.txt` with
//! `NAME.expected.json` beside it) and reports the valid-JSON rate and field exact-match.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use flowbot_engine::llm::{LlmMode, LlmOptions, LlmOutput, LlmRequest, TextGenerator};
use serde_json::{json, Value};

use super::ModelChoice;
use crate::llm_backend::LocalTextGenerator;

/// Currencies the extractor may answer (ISO codes).
const CURRENCIES: [&str; 8] = ["CNY", "USD", "EUR", "GBP", "JPY", "HKD", "CHF", "AUD"];

/// The instruction shared by every call (the prefix cache keeps it between e-mails).
const SYSTEM: &str = "You read customer e-mails about sales orders and extract four fields as JSON:\n\
order_id: the order or purchase-order number exactly as written (e.g. SO-1001, PO#7781).\n\
customer: the ordering company's name exactly as written (the company, not the person).\n\
total: the total amount as a plain number without thousands separators (\"1,234.50\" -> 1234.5; \"1.234,50 €\" -> 1234.5).\n\
currency: the ISO code: ¥/RMB/元/人民币/yuan -> CNY, $/dollars -> USD, €/euros -> EUR, £/pounds -> GBP, 円/yen -> JPY, HK$ -> HKD, francs -> CHF, A$ -> AUD.\n\
Example: \"Hi, ACME Ltd here. Please ship order SO-1001, total $1,234.50.\" -> \
{\"order_id\": \"SO-1001\", \"customer\": \"ACME Ltd\", \"total\": 1234.5, \"currency\": \"USD\"}";

/// Arguments of `eval-extract`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Directory of `NAME.txt` e-mails with `NAME.expected.json`.
    dir: PathBuf,
    /// Print each e-mail's result.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    model: ModelChoice,
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 40},
            "customer": {"type": "string", "maxLength": 80},
            "total": {"type": "number"},
            "currency": {"enum": CURRENCIES}
        },
        "required": ["order_id", "customer", "total", "currency"]
    })
}

fn field_matches(field: &str, got: Option<&Value>, expected: Option<&Value>) -> bool {
    match (field, got, expected) {
        ("total", Some(g), Some(e)) => match (g.as_f64(), e.as_f64()) {
            (Some(g), Some(e)) => (g - e).abs() < 0.005,
            _ => false,
        },
        (_, Some(Value::String(g)), Some(Value::String(e))) => g.trim() == e.trim(),
        _ => false,
    }
}

impl EvalArgs {
    /// Runs the evaluation and prints the report.
    pub fn run(self) -> anyhow::Result<()> {
        let mut mails: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .collect();
        mails.sort();
        anyhow::ensure!(
            !mails.is_empty(),
            "{}: no .txt e-mails found",
            self.dir.display()
        );
        let path = self.model.path()?;
        // The same path an `extract` step of a process takes.
        let generator = LocalTextGenerator::load(&path, self.model.backend()?)?;
        let options = LlmOptions {
            max_tokens: Some(96),
            ..Default::default()
        };
        let fields = ["order_id", "customer", "total", "currency"];
        let mut valid = 0usize;
        let mut matches = [0usize; 4];
        let mut all_fields = 0usize;
        for mail in &mails {
            let text = std::fs::read_to_string(mail)
                .with_context(|| format!("{}: cannot read", mail.display()))?;
            let expected_path = mail.with_extension("expected.json");
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(&expected_path)
                    .with_context(|| format!("{}: cannot read", expected_path.display()))?,
            )
            .with_context(|| format!("{}: not JSON", expected_path.display()))?;
            let request = LlmRequest {
                mode: LlmMode::Extract,
                system: Some(SYSTEM.to_owned()),
                prompt: text.trim().to_owned(),
                schema: Some(schema()),
                labels: Vec::new(),
                options: options.clone(),
            };
            let result = generator.generate(&request);
            let name = mail
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match result {
                Ok(response) => {
                    let LlmOutput::Json(value) = response.output else {
                        anyhow::bail!("{name}: the extractor answered something other than JSON");
                    };
                    valid += 1;
                    let hits: Vec<bool> = fields
                        .iter()
                        .map(|f| field_matches(f, value.get(*f), expected.get(*f)))
                        .collect();
                    for (i, hit) in hits.iter().enumerate() {
                        matches[i] += usize::from(*hit);
                    }
                    all_fields += usize::from(hits.iter().all(|h| *h));
                    if self.verbose {
                        eprintln!(
                            "{name}: {value} ({} ms){}",
                            response.elapsed.as_millis(),
                            if hits.iter().all(|h| *h) {
                                ""
                            } else {
                                "  MISMATCH"
                            }
                        );
                    }
                }
                Err(error) => eprintln!("{name}: {error}"),
            }
        }
        let n = mails.len();
        let pct = |k: usize| 100.0 * k as f64 / n as f64;
        println!("e-mails:        {n}");
        println!("valid JSON:     {valid}/{n} ({:.1}%)", pct(valid));
        for (i, f) in fields.iter().enumerate() {
            println!(
                "{:<15} {}/{n} ({:.1}%)",
                format!("{f}:"),
                matches[i],
                pct(matches[i])
            );
        }
        println!("all four:       {all_fields}/{n} ({:.1}%)", pct(all_fields));
        Ok(())
    }
}
