//! Helpers shared by the end-to-end tests: locating (and building) the `flowbot` binary, running
//! it with a time limit, and finding the repository root and `../shared`.
//!
//! The binary: `$FLOWBOT_BIN` when set; otherwise `cargo build -p flowbot` is run once per test
//! process (a no-op when the binary is current) and `$CARGO_TARGET_DIR/debug/flowbot` (or
//! `<repo>/target/debug/flowbot`) is used. Building through cargo keeps the tests from running a
//! stale binary.

pub mod serve;
pub mod webhooks;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `../shared` beside the repository, when present (third-party corpus, reference models).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = repo_root().join("..").join("shared");
    dir.is_dir().then_some(dir)
}

/// The folder `relative` under `../shared`. Without it, a test checks nothing: locally it says
/// so and returns `None`; in CI (`CI` set) that is a failure, so a missing corpus never passes
/// silently there.
pub fn shared_or_skip(relative: &str) -> Option<PathBuf> {
    let dir = shared_dir()
        .map(|shared| shared.join(relative))
        .filter(|dir| dir.exists());
    if dir.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "../shared/{relative} is missing beside the repository, and CI is set: the test would check nothing"
        );
        eprintln!("skipped: no ../shared/{relative} beside the repository");
    }
    dir
}

/// The path of the built `flowbot` binary, building it first if needed.
pub fn flowbot_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FLOWBOT_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "flowbot"])
            .current_dir(repo_root())
            .status()
            .expect("cargo can be started to build flowbot");
        assert!(status.success(), "cargo build -p flowbot failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let bin = target.join("debug").join(if cfg!(windows) {
            "flowbot.exe"
        } else {
            "flowbot"
        });
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
}

/// What a finished (or killed) run printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code; `None` when it was killed for running past the limit.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Whether it ran past the limit and was killed.
    pub timed_out: bool,
}

impl Output {
    /// Panics, showing stdout and stderr, unless the command exited with 0.
    pub fn assert_success(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }

    /// stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON value ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The order case's extract step (schema as in `workflows/order_email.yaml`) with a short prompt,
/// as a workflow of its own: the tiny model holds 512 positions, too few for the shipped few-shot
/// prompt.
pub const EXTRACT_WORKFLOW: &str = r#"
process: extract_only
nodes:
  start: { start: ~, next: extract }
  extract:
    llm:
      mode: extract
      system: Extract the order as JSON.
      prompt: "{email_text}"
      schema:
        type: object
        properties:
          order_id: { type: string, maxLength: 40, x-copy: true }
          customer: { type: string, maxLength: 80, x-copy: true }
          total: { type: number, x-copy: true }
          currency: { enum: [CNY, USD, EUR, GBP, JPY, HKD, CHF, AUD] }
        required: [order_id, customer, total, currency]
      options: { max_tokens: 96 }
    next: done
  done: { end: ~ }
"#;

/// The real model: `$FLOWBOT_MODEL`, which the CI script sets after fetching it.
pub fn real_model() -> PathBuf {
    let path = std::env::var_os("FLOWBOT_MODEL")
        .map(PathBuf::from)
        .expect("FLOWBOT_MODEL must name the GGUF model file (run `flowbot model fetch` and export its path)");
    assert!(
        path.is_file(),
        "FLOWBOT_MODEL={} is not a file",
        path.display()
    );
    path
}

/// A tiny random-weight llama model (GGUF, seed 7) written once per test process into the
/// target folder: what the `llm` steps of the shipped processes run on in these tests, fast and
/// without a download. Tests of the real model name theirs with `--model`.
pub fn tiny_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let folder = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("flowbot-e2e");
        std::fs::create_dir_all(&folder).expect("the tiny model's folder can be created");
        let path = folder.join("tiny-model-7.gguf");
        // Written beside and renamed into place, so test processes running side by side never
        // read half a file; the same seed always writes the same bytes.
        let partial = folder.join(format!("tiny-model-7.gguf.{}", std::process::id()));
        flowbot_model_runtime::tiny_model::write_tiny_llama(&partial, 7)
            .expect("the tiny model can be written");
        std::fs::rename(&partial, &path).expect("the tiny model can be put in place");
        path
    })
}

/// Runs `flowbot ARGS` in the repository root; kills it after `limit`. `$FLOWBOT_MODEL` is the
/// [`tiny_model`], and unless ARGS name a `--config`, the repository's extraction adapter is off.
pub fn flowbot_with_limit(args: &[&str], limit: Duration) -> Output {
    let mut command = Command::new(flowbot_bin());
    command.args(args).env("FLOWBOT_MODEL", tiny_model());
    if !args.contains(&"--config") {
        // The repository's `flowbot.toml` names the extraction adapter of the default model,
        // which does not fit the tiny one.
        command.env("FLOWBOT_EXTRACT_ADAPTER", "");
    }
    let mut child = command
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowbot starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().expect("flowbot can be waited for") {
            Some(status) => break Some(status),
            None if started.elapsed() > limit => {
                timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    Output {
        code: status.and_then(|s| s.code()),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        timed_out,
    }
}

/// Runs `flowbot ARGS` with a 60-second limit (a hang fails the test instead of blocking it).
pub fn flowbot(args: &[&str]) -> Output {
    flowbot_with_limit(args, Duration::from_secs(60))
}
