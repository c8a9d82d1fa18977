//! Output-layer fine-tuning on the tiny random-weight model: the cached hidden states are the
//! model's own, training lowers the loss, and the tuned GGUF file runs with the trained head.

mod support;

use std::sync::atomic::AtomicBool;

use candle_core::{Device, Tensor};
use flowbot_model_runtime::fast::{FastLlama, FastOptions};
use flowbot_model_runtime::finetune::{
    collect_features, initial_head, train_head, write_with_output_head, AnswerPart, TrainExample,
    TrainOptions,
};
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::lm::CausalLm;
use flowbot_model_runtime::tiny_model::write_tiny_llama;

fn examples(count: usize, seed: u64) -> Vec<TrainExample> {
    support::copying_examples(count, seed)
}

fn one_thread() -> FastOptions {
    FastOptions {
        threads: Some(1),
        ..FastOptions::default()
    }
}

/// `row · headᵀ`: the logits a head gives one hidden state.
fn logits_of(head: &Tensor, row: &[f32]) -> Vec<f32> {
    let row = Tensor::from_slice(row, (1, row.len()), &Device::Cpu).unwrap();
    row.matmul(&head.t().unwrap())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().map(|x| x.abs()).fold(0.0, f32::max)
}

#[test]
fn hidden_states_are_the_ones_that_give_the_models_logits() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 11).unwrap();
    let examples = examples(3, 1);
    let mut lm = FastLlama::load(&base, &one_thread()).unwrap();
    let features = collect_features(&mut lm, &examples, |_| {}).unwrap();
    assert_eq!(features.examples(), 3);
    assert_eq!(features.rows(), 12);
    let head = initial_head(&base).unwrap();
    // Row 4k + j predicts answer token j of example k: after the prompt and j answer tokens, the
    // model's own logits (one fresh pass, no cache reuse) are the head applied to that row.
    for (k, example) in examples.iter().enumerate() {
        for j in 0..example.answer.len() {
            let mut fresh = FastLlama::load(&base, &one_thread()).unwrap();
            let tokens: Vec<u32> = example
                .prompt
                .iter()
                .chain(&example.answer[..j])
                .copied()
                .collect();
            let logits = fresh.forward(&tokens, 0).unwrap();
            let row = 4 * k + j;
            assert_eq!(features.target(row), example.answer[j]);
            let ours = logits_of(&head, features.row(row));
            // The backend quantizes the hidden state to 8 bits before its output product.
            assert!(
                max_abs_diff(&logits, &ours) < 0.02 * max_abs(&logits),
                "example {k} token {j}"
            );
        }
    }
}

#[test]
fn a_trained_head_lowers_the_loss_and_runs_from_the_tuned_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 12).unwrap();
    let examples = examples(24, 2);
    let mut lm = FastLlama::load(&base, &one_thread()).unwrap();
    let mut done = Vec::new();
    let features = collect_features(&mut lm, &examples, |n| done.push(n)).unwrap();
    assert_eq!(done, (1..=24).collect::<Vec<_>>());
    let initial = initial_head(&base).unwrap();
    let options = TrainOptions {
        epochs: 40,
        learning_rate: 0.02,
        batch_examples: 4,
        patience: 40,
        ..TrainOptions::default()
    };
    let run = train_head(
        &initial,
        &features,
        &features,
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap();
    let best = &run.report.epochs[run.report.best_epoch - 1].dev;
    assert!(
        best.loss < run.report.initial.loss / 2.0,
        "{best:?} vs {:?}",
        run.report.initial
    );
    assert!(best.token_accuracy > run.report.initial.token_accuracy);

    let tuned = dir.path().join("tuned.gguf");
    write_with_output_head(
        &base,
        &run.head,
        &[("flowbot.finetune.method", "head")],
        &tuned,
    )
    .unwrap();
    let file = GgufFile::open(&tuned).unwrap();
    assert!(file.content.tensor_infos.contains_key("output.weight"));
    assert_eq!(
        file.metadata().opt_string("flowbot.finetune.method"),
        Some("head")
    );
    // The tuned file gives the trained head's logits, not the base model's.
    let mut reloaded = FastLlama::load(&tuned, &one_thread()).unwrap();
    let mut base_lm = FastLlama::load(&base, &one_thread()).unwrap();
    let prompt = &examples[5].prompt;
    let logits = reloaded.forward(prompt, 0).unwrap();
    let base_logits = base_lm.forward(prompt, 0).unwrap();
    let row = features.row(5 * 4);
    let trained = logits_of(&run.head, row);
    assert!(max_abs_diff(&logits, &trained) < 0.03 * max_abs(&trained));
    assert!(max_abs_diff(&logits, &base_logits) > 0.1 * max_abs(&base_logits));
    // Everything below the head is the base model's: the hidden states are unchanged.
    let again = collect_features(&mut reloaded, &examples[..2], |_| {}).unwrap();
    assert_eq!(again.row(0), features.row(0));
}

#[test]
fn with_parts_only_their_tokens_are_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 13).unwrap();
    let whole = examples(2, 3);
    let mut sparse = whole.clone();
    for example in &mut sparse {
        example.parts = vec![
            AnswerPart {
                name: "first".into(),
                tokens: 0..1,
            },
            AnswerPart {
                name: "third".into(),
                tokens: 2..3,
            },
        ];
    }
    let mut lm = FastLlama::load(&base, &one_thread()).unwrap();
    let all = collect_features(&mut lm, &whole, |_| {}).unwrap();
    let kept = collect_features(&mut lm, &sparse, |_| {}).unwrap();
    assert_eq!(kept.rows(), 4);
    for (k, example) in sparse.iter().enumerate() {
        for (i, j) in [0usize, 2].into_iter().enumerate() {
            assert_eq!(kept.target(2 * k + i), example.answer[j]);
            assert_eq!(kept.row(2 * k + i), all.row(4 * k + j));
        }
    }
}
