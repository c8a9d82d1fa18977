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

/// The instruction shared by every call (the prefix cache keeps it between e-mails).
const SYSTEM: &str = "Extract the sales order from the customer's e-mail as JSON. \
order_id: the order or purchase-order number exactly as written. \
customer: the ordering company's name exactly as written. \
total: the total amount as a number without thousands separators. \
currency: ISO code (¥, RMB, 元, 人民币 = CNY; $ = USD; € = EUR; £ = GBP; 円, yen = JPY; HK$ = HKD; francs = CHF; A$ = AUD).";

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

/// Removes thousands separators from amounts written `12,450.00` (digit groups of three after a
/// comma): the model otherwise ends the JSON number at the comma. Other text is unchanged.
fn without_thousands_separators(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let grouped = c == ','
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1..i + 4).is_some_and(|g| g.iter().all(char::is_ascii_digit))
            && !chars.get(i + 4).is_some_and(char::is_ascii_digit);
        if !grouped {
            out.push(c);
        }
    }
    out
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
        anyhow::ensure!(!mails.is_empty(), "{}: no .txt e-mails found", self.dir.display());
        // The same path an `extract` step of a process takes.
        let generator: Box<dyn TextGenerator> = match (&self.openai_url, &self.openai_model) {
            (Some(url), Some(model)) => Box::new(RemoteTextGenerator::new(url, model)),
            _ => Box::new(LocalTextGenerator::load(&self.model.path()?, self.model.backend()?)?),
        };
        let options = LlmOptions { max_tokens: Some(96), ..Default::default() };
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
                prompt: without_thousands_separators(text.trim()),
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

#[cfg(test)]
mod tests {
    use super::without_thousands_separators;

    #[test]
    fn only_digit_groups_lose_their_commas() {
        assert_eq!(without_thousands_separators("total $1,234,567.50, thanks"), "total $1234567.50, thanks");
        assert_eq!(without_thousands_separators("SO-1, 2,3 and 12,3456"), "SO-1, 2,3 and 12,3456");
        assert_eq!(without_thousands_separators("¥56,320.00。"), "¥56320.00。");
    }
}
