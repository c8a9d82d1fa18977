//! `flowbot model bench`: prompt and decode speed, time to first token with and without the
//! prefix cache, and peak memory, on the reference order-confirmation prompt.

use std::time::Instant;

use clap::Args;
use flowbot_model_runtime::{load_generator, GenerateOptions};
use serde_json::json;

use super::ModelChoice;

const SYSTEM: &str = "You write short, polite order confirmations.";
const USER: &str = "Order SO-1001 from ACME Ltd, total 1234.50 CNY. Write a one-sentence confirmation for the customer.";
const USER_2: &str = "Order SO-1002 from Northwind Traders, total 980.00 EUR. Write a one-sentence confirmation for the customer.";

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Tokens to decode.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    #[command(flatten)]
    model: ModelChoice,
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl BenchArgs {
    /// Runs the benchmark and prints one JSON object.
    pub fn run(self) -> anyhow::Result<()> {
        let path = self.model.path()?;
        let mut loaded = load_generator(&path, self.model.backend()?)?;
        let g = &mut loaded.generator;
        // Decoding runs to the full budget, as the llama.cpp harness does.
        let options = GenerateOptions { max_tokens: self.decode_tokens, ignore_eos: true, ..Default::default() };
        let cold = g.generate(Some(SYSTEM), USER, &options, None)?;
        let started = Instant::now();
        let warm = g.generate(Some(SYSTEM), USER_2, &GenerateOptions { max_tokens: 1, ..Default::default() }, None)?;
        let warm_ttft = started.elapsed();
        let prompt_secs = cold.time_to_first_token.as_secs_f64();
        let decode_secs = (cold.elapsed - cold.time_to_first_token).as_secs_f64();
        let report = json!({
            "model": loaded.model_id,
            "device": self.model.device,
            "threads": std::env::var("CANDLE_NUM_THREADS").or_else(|_| std::env::var("RAYON_NUM_THREADS")).ok(),
            "load_ms": loaded.load_time.as_millis() as u64,
            "prompt_tokens": cold.prompt_tokens,
            "prompt_tokens_per_s": cold.prompt_tokens as f64 / prompt_secs.max(1e-9),
            "decoded_tokens": cold.tokens.len(),
            "decode_tokens_per_s": cold.tokens.len().saturating_sub(1) as f64 / decode_secs.max(1e-9),
            "ttft_ms_cold": cold.time_to_first_token.as_secs_f64() * 1e3,
            "ttft_ms_prefix_cached": warm_ttft.as_secs_f64() * 1e3,
            "prefix_tokens_reused": warm.reused_prompt_tokens,
            "peak_rss_bytes": peak_rss_bytes(),
        });
        println!("{report}");
        Ok(())
    }
}
