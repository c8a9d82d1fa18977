//! `flowbot model eval-extract DIR`: runs order-field extraction over e-mails (`NAME.txt` with
//! `NAME.expected.json` beside it) and reports the valid-JSON rate and field exact-match.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use flowbot_engine::llm::{LlmMode, LlmOptions, LlmOutput, LlmRequest, TextGenerator};
use serde_json::{json, Value};

use super::ModelChoice;
use crate::llm_backend::{LocalTextGenerator, RemoteTextGenerator};

/// Currencies the extractor may answer (ISO codes).
const CURRENCIES: [&str; 8] = ["CNY", "USD", "EUR", "GBP", "JPY", "HKD", "CHF", "AUD"];

/// The extraction instruction, with worked examples (invented e-mails, none of them in the
/// evaluation set). It is the same for every e-mail, so the prefix cache computes it once.
const SYSTEM: &str = r#"Extract the sales order from the customer's e-mail as JSON.
order_id: the order or purchase-order number exactly as written.
customer: the name of the ordering company exactly as written (a company, not a person).
total: the total amount of the order (not a quantity).
currency: ISO code of the total's currency (¥, RMB, 元, 人民币 = CNY; $, dollars, 美元 = USD; €, euros, 欧元 = EUR; £, pounds = GBP; yen, 日元 = JPY; HK$ = HKD; francs = CHF; A$ = AUD).

E-mail:
Hello, Delta Paper Corp places order DP-3141 for 40 reams of paper. Total: $2,315.70. Regards, Amy Ross
JSON: {"order_id": "DP-3141", "customer": "Delta Paper Corp", "total": 2315.70, "currency": "USD"}

E-mail:
Hi 刘经理, order 2718-K from Nordic Timber AB: 60 pallets, total 4.905,00 € (euros). 请确认。 Erik
JSON: {"order_id": "2718-K", "customer": "Nordic Timber AB", "total": 4905.00, "currency": "EUR"}

E-mail:
您好，天津远洋物流有限公司下单，订单号 TJ-5067，共 12 箱，合计人民币 8,140.00 元。谢谢！陈明
JSON: {"order_id": "TJ-5067", "customer": "天津远洋物流有限公司", "total": 8140.00, "currency": "CNY"}"#;

/// Arguments of `eval-extract`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Directory of `NAME.txt` e-mails with `NAME.expected.json`.
    dir: PathBuf,
    /// Print each e-mail's result.
    #[arg(long)]
    verbose: bool,
    /// Use an OpenAI-compatible server (e.g. http://gpu-1:8000/v1) instead of the local model.
    #[arg(long, requires = "openai_model")]
    openai_url: Option<String>,
    /// The model name to ask the server for.
    #[arg(long)]
    openai_model: Option<String>,
    #[command(flatten)]
    model: ModelChoice,
}

/// Order id, customer and total are copied from the e-mail (`x-copy`): the model chooses the
/// span or the number, the decoder rules out text that is not in the e-mail.
fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "order_id": {"type": "string", "maxLength": 40, "x-copy": true},
            "customer": {"type": "string", "maxLength": 80, "x-copy": true},
            "total": {"type": "number", "x-copy": true},
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
        // The same path an `extract` step of a process takes.
        let generator: Box<dyn TextGenerator> = match (&self.openai_url, &self.openai_model) {
            (Some(url), Some(model)) => Box::new(RemoteTextGenerator::new(url, model)),
            _ => Box::new(LocalTextGenerator::load(
                &self.model.path()?,
                self.model.backend()?,
            )?),
        };
        let options = LlmOptions {
            max_tokens: Some(96),
            ..Default::default()
        };
        let mut emails = Vec::new();
        for mail in &mails {
            let text = std::fs::read_to_string(mail)
                .with_context(|| format!("{}: cannot read", mail.display()))?;
            let expected_path = mail.with_extension("expected.json");
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(&expected_path)
                    .with_context(|| format!("{}: cannot read", expected_path.display()))?,
            )
            .with_context(|| format!("{}: not JSON", expected_path.display()))?;
            let name = mail
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            emails.push((name, text.trim().to_owned(), expected));
        }
        let mut answers: Vec<Option<(Value, std::time::Duration)>> = Vec::new();
        for (name, text, _) in &emails {
            let request = LlmRequest {
                mode: LlmMode::Extract,
                system: Some(SYSTEM.to_owned()),
                prompt: text.clone(),
                schema: Some(schema()),
                labels: Vec::new(),
                options: options.clone(),
            };
            answers.push(match generator.generate(&request) {
                Ok(response) => {
                    let LlmOutput::Json(value) = response.output else {
                        anyhow::bail!("{name}: the extractor answered something other than JSON");
                    };
                    Some((value, response.elapsed))
                }
                Err(error) => {
                    eprintln!("{name}: {error}");
                    None
                }
            });
        }
        let fields = ["order_id", "customer", "total", "currency"];
        let mut valid = 0usize;
        let mut matches = [0usize; 4];
        let mut all_fields = 0usize;
        let mut total_time = std::time::Duration::ZERO;
        for ((name, _, expected), answer) in emails.iter().zip(&answers) {
            let Some((value, elapsed)) = answer else {
                continue;
            };
            valid += 1;
            total_time += *elapsed;
            let hits: Vec<bool> = fields
                .iter()
                .map(|f| field_matches(f, value.get(*f), expected.get(*f)))
                .collect();
            for (i, hit) in hits.iter().enumerate() {
                matches[i] += usize::from(*hit);
            }
            let all = hits.iter().all(|h| *h);
            all_fields += usize::from(all);
            if self.verbose {
                eprintln!(
                    "{name}: {value} ({} ms){}",
                    elapsed.as_millis(),
                    if all { "" } else { "  MISMATCH" }
                );
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
        if valid > 0 {
            println!(
                "time per e-mail: {} ms (mean)",
                total_time.as_millis() / valid as u128
            );
        }
        Ok(())
    }
}
