//! `flowbot model bench`: load time, prompt and decode speed and time to first token of a
//! model backend on the reference prompt.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use flowbot_model_runtime::candle_lm::{CandleLm, DeviceChoice};
use flowbot_model_runtime::fast::reference::{REFERENCE_GREEDY_IDS, REFERENCE_PROMPT_IDS};
use flowbot_model_runtime::fast::{FastLlama, FastOptions, Isa, LoraAdapter};
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::lm::CausalLm;
use flowbot_model_runtime::model_dir::ModelDir;
use flowbot_model_runtime::safetensors_lm::{compute_dtype, SafetensorsLm};
use serde::Serialize;

use super::ModelChoice;

/// Backends `model bench` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Flowbot's own CPU forward pass and kernels.
    Fast,
    /// candle's quantized llama (the baseline; any `--device`).
    Candle,
}

/// Kernel implementations selectable for the fast backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KernelChoice {
    /// Portable scalar code.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 with VNNI.
    Avx512,
}

/// Options of `flowbot model bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelChoice,
    /// Worker threads (default: all CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Greedy decode steps after the prompt (EOS ignored).
    #[arg(long, default_value_t = 128)]
    pub steps: usize,
    /// Backend to measure (a model directory always runs on candle's llama).
    #[arg(long, value_enum, default_value_t = Backend::Fast)]
    pub backend: Backend,
    /// Kernel implementation of the fast backend (default: the fastest this CPU has).
    #[arg(long, value_enum)]
    pub kernels: Option<KernelChoice>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What one bench run measured.
#[derive(Debug, Serialize)]
struct BenchReport {
    load_ms: f64,
    prompt_tok_s: f64,
    decode_tok_s: f64,
    ttft_ms: f64,
    /// Time to first token when the system-prompt prefix is already cached (the fast backend
    /// rewinds its cache; candle cannot, and re-runs the whole prompt).
    ttft_cached_prefix_ms: f64,
    backend: &'static str,
    kernels: String,
    threads: usize,
    prompt_tokens: usize,
    decode_steps: usize,
    reference_ids_match: bool,
    peak_rss_mb: Option<f64>,
}

/// Peak resident memory of this process (Linux), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

impl BenchArgs {
    /// Runs the benchmark and prints the result.
    pub fn run(self) -> Result<()> {
        run(self)
    }
}

fn run(args: BenchArgs) -> Result<()> {
    let path = args.model.path()?;
    if args.model.adapter.is_some() && (path.is_dir() || args.backend != Backend::Fast) {
        bail!("--adapter is applied by the fast backend to a GGUF file only");
    }
    let device: DeviceChoice = args
        .model
        .device
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--device {e}"))?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let started = Instant::now();
    let (mut lm, kernels): (Box<dyn CausalLm>, String) = match args.backend {
        // A model directory runs on candle's llama whatever --backend says.
        _ if path.is_dir() => {
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
            let dir = ModelDir::open(&path)?;
            let device = device.open()?;
            let dtype = compute_dtype(&device);
            (
                Box::new(SafetensorsLm::load(&dir, device)?),
                format!("candle llama, {dtype:?}, on {}", args.model.device),
            )
        }
        Backend::Fast => {
            if device != DeviceChoice::Cpu {
                bail!(
                    "the fast backend runs on the CPU only; use --backend candle for --device {}",
                    args.model.device
                );
            }
            let isa = args.kernels.map(|k| match k {
                KernelChoice::Scalar => Isa::Scalar,
                KernelChoice::Avx2 => Isa::Avx2,
                KernelChoice::Avx512 => Isa::Avx512Vnni,
            });
            let mut lm = FastLlama::load(
                &path,
                &FastOptions {
                    threads: Some(threads),
                    isa,
                },
            )?;
            if let Some(adapter) = &args.model.adapter {
                lm = lm.with_adapter(&LoraAdapter::load(adapter)?)?;
            }
            let isa = format!("{:?}, {:?} row walk", lm.isa(), lm.row_walk());
            (Box::new(lm), isa)
        }
        Backend::Candle => {
            // candle sizes its pool once per process from this variable.
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
            let mut file = GgufFile::open(&path)?;
            (
                Box::new(CandleLm::load(&mut file, device.open()?)?),
                format!("candle on {}", args.model.device),
            )
        }
    };
    let load = started.elapsed();

    let prompt_started = Instant::now();
    let logits = lm.forward(&REFERENCE_PROMPT_IDS, 0).context("prompt")?;
    let mut next = argmax(&logits);
    let prompt = prompt_started.elapsed();
    let mut generated = vec![next];
    let decode_started = Instant::now();
    for _ in 0..args.steps {
        let logits = lm
            .forward(&[next], lm.cached_len())
            .context("decode step")?;
        next = argmax(&logits);
        generated.push(next);
    }
    let decode = decode_started.elapsed();

    // A second request sharing the system prompt: rewind to the end of the system turn.
    let prefix = REFERENCE_PROMPT_IDS
        .iter()
        .skip(1)
        .position(|&id| id == REFERENCE_PROMPT_IDS[0])
        .map_or(0, |i| i + 1);
    let start = prefix.min(lm.cached_len());
    let cached_started = Instant::now();
    let logits = lm
        .forward(&REFERENCE_PROMPT_IDS[start..], start)
        .context("prompt after a cached prefix")?;
    let cached_first = argmax(&logits);
    let ttft_cached = cached_started.elapsed();
    if cached_first != generated[0] {
        bail!(
            "the prompt after a cached prefix gave token {cached_first}, the full prompt {}",
            generated[0]
        );
    }
    let compared = generated.len().min(REFERENCE_GREEDY_IDS.len());

    let report = BenchReport {
        load_ms: load.as_secs_f64() * 1e3,
        prompt_tok_s: REFERENCE_PROMPT_IDS.len() as f64 / prompt.as_secs_f64(),
        decode_tok_s: args.steps as f64 / decode.as_secs_f64(),
        ttft_ms: prompt.as_secs_f64() * 1e3,
        ttft_cached_prefix_ms: ttft_cached.as_secs_f64() * 1e3,
        backend: match args.backend {
            _ if path.is_dir() => "safetensors",
            Backend::Fast => "fast",
            Backend::Candle => "candle",
        },
        kernels,
        threads,
        prompt_tokens: REFERENCE_PROMPT_IDS.len(),
        decode_steps: args.steps,
        reference_ids_match: generated[..compared] == REFERENCE_GREEDY_IDS[..compared],
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("model        {}", path.display());
        println!(
            "backend      {} ({}), {} threads",
            report.backend, report.kernels, report.threads
        );
        println!("load         {:.1} ms", report.load_ms);
        println!(
            "prompt       {} tokens, {:.1} tok/s",
            report.prompt_tokens, report.prompt_tok_s
        );
        println!("first token  {:.1} ms", report.ttft_ms);
        println!(
            "first token  {:.1} ms with the system prompt cached",
            report.ttft_cached_prefix_ms
        );
        println!(
            "decode       {} steps, {:.1} tok/s",
            report.decode_steps, report.decode_tok_s
        );
        println!(
            "reference    first {compared} greedy ids {}",
            if report.reference_ids_match {
                "match"
            } else {
                "DIFFER"
            }
        );
        if let Some(rss) = report.peak_rss_mb {
            println!("peak RSS     {rss:.0} MB");
        }
    }
    Ok(())
}
