//! `flowbot dataset build` end to end: the files it writes, their determinism, the problems it
//! reports; and `flowbot model eval-extract` reading a split it wrote.

use flowbot_e2e::{flowbot, EXTRACT_WORKFLOW};
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use serde_json::Value;

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_data_set_is_built_from_orders_and_labelled_emails_and_evaluated() {
    let tmp = tempfile::tempdir().unwrap();
    let orders = tmp.path().join("orders.jsonl");
    std::fs::write(
        &orders,
        "{\"order_id\": \"SO-1\", \"customer\": \"ACME Ltd\", \"amount\": 12.5, \"currency\": \"USD\"}\n\
         {\"order_id\": \"SO-2\", \"amount\": 7}\n",
    )
    .unwrap();
    let build = |out: &std::path::Path| {
        flowbot(&[
            "dataset",
            "build",
            "--orders",
            orders.to_str().unwrap(),
            "--emails",
            "examples/data/emails",
            "--synthetic",
            "40",
            "--augment",
            "1",
            "--seed",
            "9",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (first, second) = (tmp.path().join("a"), tmp.path().join("b"));
    let output = build(&first);
    output.assert_success();
    build(&second).assert_success();
    let stats: Value = serde_json::from_str(&output.stdout).unwrap();
    for name in ["train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"] {
        assert_eq!(
            std::fs::read(first.join(name)).unwrap(),
            std::fs::read(second.join(name)).unwrap(),
            "{name} differs between two builds with the same seed"
        );
    }
    let dropped = stats["dropped"].as_array().unwrap();
    assert!(
        dropped.iter().any(
            |p| p["source"].as_str().unwrap().ends_with("orders.jsonl:2")
                && p["reason"].as_str().unwrap().contains("customer")
        ),
        "{dropped:?}"
    );
    let test = lines(&first.join("test.jsonl"));
    let train = lines(&first.join("train.jsonl"));
    assert_eq!(stats["test"]["examples"], test.len());
    assert_eq!(stats["train"]["examples"], train.len());
    assert!(test.iter().all(|e| e["augmented"] == false));
    assert!(train.iter().any(|e| e["augmented"] == true));
    assert!(
        train.iter().chain(&test).any(|e| e["origin"] == "labelled"),
        "the labelled e-mails are in the set"
    );

    // The test split is what eval-extract reads; a tiny random-weight model (512 positions: the
    // order case's few-shot prompt does not fit) still answers in the extract step's schema.
    let workflow = tmp.path().join("extract.yaml");
    std::fs::write(&workflow, EXTRACT_WORKFLOW).unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_llama(&model, 3).unwrap();
    let eval = flowbot(&[
        "model",
        "eval-extract",
        first.join("test.jsonl").to_str().unwrap(),
        "--workflow",
        workflow.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ]);
    eval.assert_success();
    let n = test.len();
    assert!(
        eval.stdout
            .contains(&format!("valid JSON:     {n}/{n} (100.0%)")),
        "{}\n{}",
        eval.stdout,
        eval.stderr
    );
}

#[test]
fn nothing_to_build_from_and_a_bad_split_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let nothing = flowbot(&["dataset", "build", "--out", out.to_str().unwrap()]);
    assert_ne!(nothing.code, Some(0), "{}", nothing.stderr);
    assert!(
        nothing.stderr.contains("nothing to build from"),
        "{}",
        nothing.stderr
    );
    let bad = flowbot(&[
        "dataset",
        "build",
        "--synthetic",
        "5",
        "--split",
        "8:2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("split `8:2`"), "{}", bad.stderr);
    assert!(!out.exists(), "nothing written");
}
