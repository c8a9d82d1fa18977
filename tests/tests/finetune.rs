//! `flowbot model finetune` end to end: on a tiny random-weight model, a data set built by
//! `flowbot dataset build`, the tuned model and its manifest, the tuned model run by
//! `eval-extract` (still valid JSON for every e-mail, also beside the base with `--compare`), the
//! `lora` and `full` methods, and inputs that cannot be trained on; on the real model, through the
//! shipped workflow's prompt; and `[model] extract_path` (a tuned model) or `extract_adapter`
//! (an adapter over the general model) giving the extract steps, and only those, to the tuned
//! weights; the `lora` adapter run over its base with `--adapter`, and refused by another model.

use std::time::Duration;

use flowbot_e2e::{flowbot, flowbot_with_limit, real_model, EXTRACT_WORKFLOW};
use flowbot_model_runtime::fast::lora::BASE_SHA256_KEY;
use flowbot_model_runtime::finetune::{write_lora_adapter, Adaptation, TrainableLlama};
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use serde_json::{json, Value};

#[test]
fn a_head_is_trained_on_a_built_data_set_and_the_tuned_model_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    flowbot(&[
        "dataset",
        "build",
        "--synthetic",
        "30",
        "--seed",
        "5",
        "--out",
        data.to_str().unwrap(),
    ])
    .assert_success();
    let workflow = tmp.path().join("extract.yaml");
    std::fs::write(&workflow, EXTRACT_WORKFLOW).unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_llama(&model, 4).unwrap();
    let out = tmp.path().join("tuned");
    let train = flowbot(&[
        "model",
        "finetune",
        "--train",
        data.join("train.jsonl").to_str().unwrap(),
        "--dev",
        data.join("dev.jsonl").to_str().unwrap(),
        "--workflow",
        workflow.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--epochs",
        "3",
        "--patience",
        "3",
        "--lr",
        "0.01",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    train.assert_success();
    let manifest: Value = serde_json::from_str(&train.stdout).unwrap();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, written);
    assert_eq!(manifest["method"], "head");
    assert_eq!(manifest["model"], "model.gguf");
    let train_lines = std::fs::read_to_string(data.join("train.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        manifest["data"]["train"]["examples"].as_u64().unwrap()
            + manifest["data"]["train"]["left_out"].as_u64().unwrap(),
        train_lines as u64
    );
    assert_eq!(manifest["data"]["train"]["left_out"], 0, "{}", train.stderr);
    let data_hash = manifest["data"]["train"]["sha256"].as_str().unwrap();
    assert!(
        data_hash.len() == 64 && data_hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{manifest}"
    );
    assert_eq!(manifest["epochs"].as_array().unwrap().len(), 3);
    // On the dev split, the kept head's loss is below the base model's.
    let best = manifest["best_epoch"].as_u64().unwrap() as usize;
    assert!(best >= 1, "{manifest}");
    let initial = manifest["initial"]["loss"].as_f64().unwrap();
    let kept = manifest["epochs"][best - 1]["dev"]["loss"]
        .as_f64()
        .unwrap();
    assert!(kept < initial, "{kept} vs {initial}");
    // The manifest names the base model by its hash, as does the tuned file.
    let base_info = flowbot(&[
        "model",
        "info",
        "--json",
        "--model",
        model.to_str().unwrap(),
    ]);
    let base_info: Value = serde_json::from_str(&base_info.stdout).unwrap();
    assert_eq!(manifest["base_model"]["sha256"], base_info["sha256"]);
    let tuned = out.join("model.gguf");
    let tuned_info = flowbot(&[
        "model",
        "info",
        "--json",
        "--model",
        tuned.to_str().unwrap(),
    ]);
    tuned_info.assert_success();
    let tuned_info: Value = serde_json::from_str(&tuned_info.stdout).unwrap();
    assert_eq!(manifest["sha256"], tuned_info["sha256"]);

    // The tuned model answers in the schema for every e-mail of the test split.
    let test = data.join("test.jsonl");
    let n = std::fs::read_to_string(&test).unwrap().lines().count();
    let eval = flowbot(&[
        "model",
        "eval-extract",
        test.to_str().unwrap(),
        "--workflow",
        workflow.to_str().unwrap(),
        "--model",
        tuned.to_str().unwrap(),
    ]);
    eval.assert_success();
    assert!(
        eval.stdout
            .contains(&format!("valid JSON:     {n}/{n} (100.0%)")),
        "{}\n{}",
        eval.stdout,
        eval.stderr
    );
    // --compare prints base and tuned model side by side, each scored on every e-mail.
    let compare = flowbot(&[
        "model",
        "eval-extract",
        test.to_str().unwrap(),
        "--workflow",
        workflow.to_str().unwrap(),
        "--compare",
        model.to_str().unwrap(),
        tuned.to_str().unwrap(),
    ]);
    compare.assert_success();
    let lines: Vec<&str> = compare.stdout.lines().collect();
    assert!(
        lines[0].contains("tiny.gguf") && lines[0].contains("model.gguf"),
        "{}",
        compare.stdout
    );
    let valid = lines.iter().find(|l| l.starts_with("valid JSON")).unwrap();
    assert_eq!(
        valid.matches(&format!("{n}/{n} (100.0%)")).count(),
        2,
        "{}",
        compare.stdout
    );
}

#[test]
fn lora_and_full_train_inside_the_model_and_the_tuned_model_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    flowbot(&[
        "dataset",
        "build",
        "--synthetic",
        "16",
        "--seed",
        "6",
        "--out",
        data.to_str().unwrap(),
    ])
    .assert_success();
    let workflow = tmp.path().join("extract.yaml");
    std::fs::write(&workflow, EXTRACT_WORKFLOW).unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_llama(&model, 4).unwrap();
    for (method, lr) in [("lora", "0.01"), ("full", "0.002")] {
        let out = tmp.path().join(method);
        let train = flowbot(&[
            "model",
            "finetune",
            "--method",
            method,
            "--rank",
            "4",
            "--train",
            data.join("train.jsonl").to_str().unwrap(),
            "--dev",
            data.join("dev.jsonl").to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "2",
            "--patience",
            "2",
            "--batch",
            "4",
            "--lr",
            lr,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ]);
        train.assert_success();
        let manifest: Value = serde_json::from_str(&train.stdout).unwrap();
        assert_eq!(manifest["method"], method);
        let rank = if method == "lora" {
            json!(4)
        } else {
            Value::Null
        };
        assert_eq!(manifest["options"]["rank"], rank, "{manifest}");
        assert!(manifest["seconds"]["load"].as_f64().is_some(), "{manifest}");
        assert_eq!(manifest["epochs"].as_array().unwrap().len(), 2);
        let best = manifest["best_epoch"].as_u64().unwrap() as usize;
        assert!(
            best >= 1,
            "{method}: no epoch improved on the base: {manifest}"
        );
        let initial = manifest["initial"]["loss"].as_f64().unwrap();
        let kept = manifest["epochs"][best - 1]["dev"]["loss"]
            .as_f64()
            .unwrap();
        assert!(kept < initial, "{method}: {kept} vs {initial}");

        // The tuned file loads in the fast backend and answers in the schema for every e-mail.
        let test = data.join("test.jsonl");
        let n = std::fs::read_to_string(&test).unwrap().lines().count();
        let eval = flowbot(&[
            "model",
            "eval-extract",
            test.to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
            "--model",
            out.join("model.gguf").to_str().unwrap(),
        ]);
        eval.assert_success();
        assert!(
            eval.stdout
                .contains(&format!("valid JSON:     {n}/{n} (100.0%)")),
            "{method}: {}\n{}",
            eval.stdout,
            eval.stderr
        );

        // `lora` also writes the adapter alone, which runs over the unchanged base.
        let adapter = out.join("adapter.gguf");
        if method == "full" {
            assert_eq!(manifest["adapter"], Value::Null);
            assert!(!adapter.exists());
            continue;
        }
        assert_eq!(manifest["adapter"]["file"], "adapter.gguf");
        assert_eq!(
            manifest["adapter"]["sha256"],
            flowbot_model_runtime::gguf::sha256_file(&adapter).unwrap()
        );
        // `eval-extract` of the test split on `base` with the adapter.
        let eval_with_adapter = |base: &std::path::Path| {
            flowbot(&[
                "model",
                "eval-extract",
                test.to_str().unwrap(),
                "--workflow",
                workflow.to_str().unwrap(),
                "--model",
                base.to_str().unwrap(),
                "--adapter",
                adapter.to_str().unwrap(),
            ])
        };
        let eval = eval_with_adapter(&model);
        eval.assert_success();
        assert!(
            eval.stdout.contains("tiny.gguf + ")
                && eval.stdout.contains("adapter.gguf")
                && eval
                    .stdout
                    .contains(&format!("valid JSON:     {n}/{n} (100.0%)")),
            "{}\n{}",
            eval.stdout,
            eval.stderr
        );
        // The adapter records its base: another model refuses it.
        let other = tmp.path().join("other.gguf");
        write_tiny_llama(&other, 5).unwrap();
        let refused = eval_with_adapter(&other);
        assert!(
            refused.code != Some(0)
                && refused
                    .stderr
                    .contains("the adapter was trained on the model"),
            "{}",
            refused.stderr
        );
    }
}

#[test]
fn examples_the_decoder_could_not_write_are_left_out_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let workflow = tmp.path().join("extract.yaml");
    std::fs::write(&workflow, EXTRACT_WORKFLOW).unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_llama(&model, 4).unwrap();
    let split = tmp.path().join("split.jsonl");
    std::fs::write(
        &split,
        concat!(
            r#"{"text": "Order SO-1 from ACME Ltd, total USD 12.50", "output": {"order_id": "SO-1", "customer": "ACME Ltd", "total": 12.5, "currency": "USD"}}"#,
            "\n",
            r#"{"text": "Order SO-2 from ACME Ltd, total USD 7.00", "output": {"order_id": "SO-9", "customer": "ACME Ltd", "total": 7, "currency": "USD"}}"#,
            "\n",
        ),
    )
    .unwrap();
    let run = |train: &std::path::Path| {
        flowbot(&[
            "model",
            "finetune",
            "--train",
            train.to_str().unwrap(),
            "--dev",
            split.to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            tmp.path().join("out").to_str().unwrap(),
        ])
    };
    let output = run(&split);
    output.assert_success();
    assert!(
        output
            .stderr
            .contains("split.jsonl:2: the decoder cannot write")
            && output.stderr.contains("(in `order_id`)"),
        "{}",
        output.stderr
    );
    // Nothing to train on at all is an error that says so.
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"text": "no order here", "output": {"order_id": "X-1", "customer": "Y", "total": 1, "currency": "USD"}}"#,
    )
    .unwrap();
    let output = run(&bad);
    assert_eq!(output.code, Some(1), "{}", output.stderr);
    assert!(
        output.stderr.contains("no example can be trained on"),
        "{}",
        output.stderr
    );
}

#[test]
fn the_real_model_is_tuned_through_the_order_workflows_extract_step() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    flowbot(&[
        "dataset",
        "build",
        "--synthetic",
        "8",
        "--seed",
        "3",
        "--out",
        data.to_str().unwrap(),
    ])
    .assert_success();
    let train = data.join("train.jsonl");
    let examples = std::fs::read_to_string(&train).unwrap().lines().count();
    let out = tmp.path().join("tuned");
    let model = real_model();
    // The shipped workflow's prompt (system prompt with worked examples) and the real tokenizer:
    // every generated example is one the decoder can write; trained and scored on the same
    // examples, the loss must fall.
    // Minutes, not seconds, when the suite runs beside it on two cores.
    let limit = Duration::from_secs(900);
    let run = flowbot_with_limit(
        &[
            "model",
            "finetune",
            "--train",
            train.to_str().unwrap(),
            "--dev",
            train.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "2",
            "--patience",
            "2",
            "--lr",
            "1e-3",
            "--batch",
            "4",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ],
        limit,
    );
    run.assert_success();
    let manifest: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(manifest["data"]["train"]["examples"], examples as u64);
    assert_eq!(manifest["data"]["train"]["left_out"], 0, "{}", run.stderr);
    let initial = manifest["initial"]["loss"].as_f64().unwrap();
    let last = manifest["epochs"][1]["dev"]["loss"].as_f64().unwrap();
    assert!(last < initial * 0.8, "{initial} -> {last}");
    assert_eq!(manifest["best_epoch"], 2);
    // The tuned file runs the order workflow's extract step: valid JSON for every e-mail.
    let eval = flowbot_with_limit(
        &[
            "model",
            "eval-extract",
            train.to_str().unwrap(),
            "--model",
            out.join("model.gguf").to_str().unwrap(),
        ],
        limit,
    );
    eval.assert_success();
    assert!(
        eval.stdout
            .contains(&format!("valid JSON:     {examples}/{examples} (100.0%)")),
        "{}",
        eval.stdout
    );
}

/// An extract step and a generate step in one process.
const TWO_STEPS: &str = r#"
process: extract_then_write
nodes:
  start: { start: ~, next: extract }
  extract:
    llm:
      mode: extract
      prompt: "{email_text}"
      schema:
        type: object
        properties:
          order_id: { type: string, maxLength: 12 }
        required: [order_id]
      options: { max_tokens: 24 }
    next: write
  write:
    llm:
      mode: generate
      prompt: "Confirm the order."
      output: confirmation
      options: { max_tokens: 8 }
    next: done
  done: { end: ~ }
"#;

/// Runs `workflow` with `config` and returns each LLM call's node, model id and model SHA-256
/// from the run's history, with the whole report.
fn llm_calls(
    workflow: &std::path::Path,
    config: &std::path::Path,
) -> (Vec<(String, String, Value)>, Value) {
    let run = flowbot(&[
        "run",
        workflow.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--vars",
        r#"{"email_text": "Order SO-1 from ACME"}"#,
        "--json",
    ]);
    run.assert_success();
    let report = run.json();
    let calls = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entry"]["kind"] == "llm_called")
        .map(|r| {
            (
                r["entry"]["node"].as_str().unwrap().to_owned(),
                r["entry"]["model_id"].as_str().unwrap().to_owned(),
                r["entry"]["model_sha256"].clone(),
            )
        })
        .collect();
    (calls, report)
}

#[test]
fn a_model_tuned_for_extraction_answers_the_extract_steps_only() {
    let tmp = tempfile::tempdir().unwrap();
    let workflow = tmp.path().join("two_steps.yaml");
    std::fs::write(&workflow, TWO_STEPS).unwrap();
    // The general model is the suite's tiny model (`$FLOWBOT_MODEL` of every run); the extract
    // model another one.
    let general = flowbot_e2e::tiny_model();
    let extract = tmp.path().join("extract.gguf");
    write_tiny_llama(&extract, 6).unwrap();
    let sha256 = |path: &std::path::Path| {
        flowbot(&["model", "info", "--json", "--model", path.to_str().unwrap()]).json()["sha256"]
            .clone()
    };
    let config = tmp.path().join("flowbot.toml");
    std::fs::write(&config, "[model]\nextract_path = \"extract.gguf\"\n").unwrap();
    let (calls, report) = llm_calls(&workflow, &config);
    let general_id = general.file_stem().unwrap().to_str().unwrap();
    assert_eq!(
        calls,
        vec![
            ("extract".to_owned(), "extract".to_owned(), sha256(&extract)),
            ("write".to_owned(), general_id.to_owned(), sha256(general)),
        ],
        "{report}"
    );
    // An extract adapter: the general model answers both steps, the extract step with the
    // adapter applied (its id names the adapter).
    let adapter = tmp.path().join("order-adapter.gguf");
    let trainable = TrainableLlama::load(
        general,
        Adaptation::Lora {
            rank: 2,
            alpha: 4.0,
        },
        1,
    )
    .unwrap();
    let general_sha256 = flowbot_model_runtime::gguf::sha256_file(general).unwrap();
    write_lora_adapter(
        general,
        &trainable.adapter_tensors(),
        4.0,
        &[(BASE_SHA256_KEY, general_sha256.as_str())],
        &adapter,
    )
    .unwrap();
    std::fs::write(
        &config,
        "[model]\nextract_adapter = \"order-adapter.gguf\"\n",
    )
    .unwrap();
    let (calls, report) = llm_calls(&workflow, &config);
    assert_eq!(
        calls,
        vec![
            (
                "extract".to_owned(),
                format!("{general_id}+order-adapter"),
                json!(general_sha256)
            ),
            (
                "write".to_owned(),
                general_id.to_owned(),
                json!(general_sha256)
            ),
        ],
        "{report}"
    );

    // A missing extract model is a configuration error that names it.
    std::fs::write(&config, "[model]\nextract_path = \"missing.gguf\"\n").unwrap();
    let missing = flowbot(&[
        "run",
        workflow.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--vars",
        r#"{"email_text": "Order SO-1"}"#,
    ]);
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("missing.gguf") && missing.stderr.contains("model.extract_path"),
        "{}",
        missing.stderr
    );
}

#[test]
fn ctrl_c_stops_training_and_keeps_the_best_head_so_far() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    flowbot(&[
        "dataset",
        "build",
        "--synthetic",
        "10",
        "--out",
        data.to_str().unwrap(),
    ])
    .assert_success();
    let workflow = tmp.path().join("extract.yaml");
    std::fs::write(&workflow, EXTRACT_WORKFLOW).unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_llama(&model, 8).unwrap();
    let out = tmp.path().join("tuned");
    // Far more epochs than could run before the interrupt.
    let mut child = Command::new(flowbot_e2e::flowbot_bin())
        .current_dir(flowbot_e2e::repo_root())
        .args([
            "model",
            "finetune",
            "--train",
            data.join("train.jsonl").to_str().unwrap(),
            "--dev",
            data.join("dev.jsonl").to_str().unwrap(),
            "--workflow",
            workflow.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--epochs",
            "1000000",
            "--patience",
            "1000000",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("training on") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "finetune ended before training"
        );
    }
    // A few epochs in (each takes milliseconds on the tiny model).
    std::thread::sleep(Duration::from_millis(1000));
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let manifest: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(manifest["stop"], "cancelled", "{manifest}");
    let epochs = manifest["epochs"].as_array().unwrap().len();
    assert!((1..1_000_000).contains(&epochs), "{epochs} epochs");
    assert!(out.join("model.gguf").is_file());
    assert_eq!(
        serde_json::from_str::<Value>(&std::fs::read_to_string(out.join("manifest.json")).unwrap())
            .unwrap(),
        manifest
    );
}
