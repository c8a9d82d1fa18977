//! Training inside the model (`lora`, `full`) on the tiny random-weight model: the differentiable
//! forward gives candle's llama's logits over the same weights, every trained tensor receives a gradient, training
//! lowers the dev loss, and the tuned GGUF file (adapters folded in) and the adapter file
//! applied at run time over the base both give the trained model's logits when the fast backend
//! runs them.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use flowbot_model_runtime::candle_lm::DeviceChoice;
use flowbot_model_runtime::fast::lora::BASE_SHA256_KEY;
use flowbot_model_runtime::fast::{FastLlama, FastOptions, LoraAdapter};
use flowbot_model_runtime::finetune::{
    train_network, write_lora_adapter, write_with_tensors, Adaptation, StopReason, TrainExample,
    TrainOptions, TrainableLlama,
};
use flowbot_model_runtime::lm::CausalLm;
use flowbot_model_runtime::model_dir::ModelDir;
use flowbot_model_runtime::safetensors_lm::SafetensorsLm;
use flowbot_model_runtime::tiny_model::{write_tiny_llama, TinyLlama};
use flowbot_model_runtime::{load_adapted, Backend};

const LORA: Adaptation = Adaptation::Lora {
    rank: 4,
    alpha: 8.0,
};

fn examples(count: usize, seed: u64) -> Vec<TrainExample> {
    support::copying_examples(count, seed)
}

/// The fast backend's next-token logits after each position of `tokens`.
fn fast_logits(model: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    fast_logits_with(model, None, tokens)
}

/// [`fast_logits`] with the adapter file `adapter` applied at run time.
fn fast_logits_with(model: &Path, adapter: Option<&Path>, tokens: &[u32]) -> Vec<Vec<f32>> {
    (1..=tokens.len())
        .map(|end| {
            let mut lm = FastLlama::load(
                model,
                &FastOptions {
                    threads: Some(1),
                    ..FastOptions::default()
                },
            )
            .unwrap();
            if let Some(adapter) = adapter {
                lm = lm
                    .with_adapter(&LoraAdapter::load(adapter).unwrap())
                    .unwrap();
            }
            lm.forward(&tokens[..end], 0).unwrap()
        })
        .collect()
}

fn rows(logits: &candle_core::Tensor) -> Vec<Vec<f32>> {
    logits.to_vec2().unwrap()
}

/// The largest difference between the two, relative to the largest logit.
fn relative_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut gap = 0.0f32;
    let mut scale = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            gap = gap.max((p - q).abs());
            scale = scale.max(p.abs());
        }
    }
    gap / scale
}

/// The reference's next-token logits after each position of `tokens`: candle's llama over the
/// same weights in f32 (the Hugging Face layout).
fn reference_logits(dir: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    let model = ModelDir::open(dir).unwrap();
    (1..=tokens.len())
        .map(|end| {
            let mut lm = SafetensorsLm::load(&model, Device::Cpu).unwrap();
            lm.forward(&tokens[..end], 0).unwrap()
        })
        .collect()
}

#[test]
fn the_training_forward_gives_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    // The same weights twice: a GGUF file with f32 matrices, and a Hugging Face directory.
    let tiny = TinyLlama::random(21).unwrap();
    let base = dir.path().join("tiny.gguf");
    tiny.write_gguf(&base, GgmlDType::F32).unwrap();
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    tiny.write_model_dir(&hf, DType::F32).unwrap();
    let tokens: Vec<u32> = vec![1, 40, 41, 42, 7, 99, 250, 3, 18, 77];
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let reference = reference_logits(&hf, &tokens);
    for adaptation in [LORA, Adaptation::Full] {
        let model = TrainableLlama::load(&base, adaptation, 1).unwrap();
        let ours = rows(&model.logits(&tokens, &positions).unwrap());
        let gap = relative_gap(&reference, &ours);
        assert!(gap < 1e-4, "{adaptation:?}: relative gap {gap}");
    }
    // A wrong rotary layout or norm would move the logits far more than rounding does.
    let model = TrainableLlama::load(&base, LORA, 1).unwrap();
    let shifted: Vec<u32> = tokens.iter().rev().copied().collect();
    let other = rows(&model.logits(&shifted, &positions).unwrap());
    assert!(relative_gap(&reference, &other) > 0.1);
}

#[test]
fn a_run_after_a_kept_prefix_gives_the_logits_of_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 25).unwrap();
    let model = TrainableLlama::load(&base, LORA, 1).unwrap();
    let tokens: Vec<u32> = vec![1, 40, 41, 42, 7, 99, 250, 3, 18, 77];
    let whole = rows(&model.logits(&tokens, &[6, 8, 9]).unwrap());
    let prefix = model.prefix(&tokens[..5]).unwrap();
    assert_eq!(prefix.len(), 5);
    let rest = rows(
        &model
            .logits_after(Some(&prefix), &tokens[5..], &[1, 3, 4])
            .unwrap(),
    );
    assert!(relative_gap(&whole, &rest) < 1e-5);
}

#[test]
fn gradients_gathered_at_a_cut_prefix_equal_those_of_whole_runs() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 26).unwrap();
    let train = examples(2, 3);
    // Adapters with a non-zero `B`, so that every adapter tensor has a gradient.
    let model = TrainableLlama::load(&base, LORA, 5).unwrap();
    let options = TrainOptions {
        epochs: 1,
        learning_rate: 1e-2,
        batch_examples: 2,
        ..TrainOptions::default()
    };
    let model = train_network(
        model,
        &train,
        &train,
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .unwrap()
    .model;
    // Whole runs, one backward pass.
    let (first, _) = model.answer_loss(&train[0]).unwrap();
    let (second, _) = model.answer_loss(&train[1]).unwrap();
    let whole = (first + second).unwrap().backward().unwrap();
    // The shared start once, each example after a cut copy, then the cut's gradients pulled back.
    let shared = 5;
    let prefix = model.prefix(&train[0].prompt[..shared]).unwrap();
    let (cut, leaves) = prefix.leaves().unwrap();
    let mut split: Vec<Vec<f32>> = vec![Vec::new(); model.trained().len()];
    let mut add = |grads: &candle_core::backprop::GradStore| {
        for ((_, var), sum) in model.trained().iter().zip(&mut split) {
            let grad: Vec<f32> = grads
                .get(var.as_tensor())
                .map(|g| g.flatten_all().unwrap().to_vec1().unwrap())
                .unwrap_or_else(|| vec![0.0; var.elem_count()]);
            if sum.is_empty() {
                *sum = grad;
            } else {
                sum.iter_mut().zip(grad).for_each(|(s, g)| *s += g);
            }
        }
    };
    let mut at_cut: Vec<(candle_core::Tensor, candle_core::Tensor)> = Vec::new();
    for example in &train {
        let first_scored = example.prompt.len() - 1;
        let mut sequence = example.prompt.clone();
        sequence.extend_from_slice(&example.answer[..3]);
        let positions: Vec<usize> = (0..4).map(|j| first_scored + j - shared).collect();
        let logits = model
            .logits_after(Some(&cut), &sequence[shared..], &positions)
            .unwrap();
        let wanted = candle_core::Tensor::new(example.answer.as_slice(), &Device::Cpu).unwrap();
        let grads = candle_nn::loss::cross_entropy(&logits, &wanted)
            .unwrap()
            .backward()
            .unwrap();
        add(&grads);
        for (i, (k, v)) in leaves.iter().enumerate() {
            let (gk, gv) = (
                grads.get(k.as_tensor()).unwrap().clone(),
                grads.get(v.as_tensor()).unwrap().clone(),
            );
            if at_cut.len() <= i {
                at_cut.push((gk, gv));
            } else {
                let (sk, sv) = &at_cut[i];
                at_cut[i] = ((sk + gk).unwrap(), (sv + gv).unwrap());
            }
        }
    }
    add(&prefix.pull(&at_cut).unwrap().backward().unwrap());
    for ((name, var), split) in model.trained().iter().zip(&split) {
        let whole: Vec<f32> = whole
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let scale = whole.iter().map(|g| g.abs()).fold(0.0f32, f32::max);
        let gap = whole
            .iter()
            .zip(split)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            scale > 0.0 && gap <= 1e-4 * scale,
            "{name}: gap {gap} of {scale}"
        );
    }
}

#[test]
fn every_trained_tensor_receives_a_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 22).unwrap();
    // q, k, v, o, gate, up, down in each of the tiny model's blocks, A and B each; for `full`
    // the embeddings, the output norm, and per block two norms and seven projections.
    assert_every_trained_tensor_has_a_gradient(&base, [2 * 7 * 2, 2 + 2 * (2 + 7)]);
}

/// Trains `base` one step with each method, then checks that every trained tensor receives a
/// non-zero gradient (through a whole run and a run after a kept prefix), and that `lora` and
/// `full` train `expected` tensors.
fn assert_every_trained_tensor_has_a_gradient(base: &Path, expected: [usize; 2]) {
    let train = examples(2, 1);
    for (adaptation, expected) in [LORA, Adaptation::Full].into_iter().zip(expected) {
        // One step first: an adapter's `B` starts at zero, and so does the gradient of its `A`.
        let model = TrainableLlama::load(base, adaptation, 3).unwrap();
        let options = TrainOptions {
            epochs: 1,
            learning_rate: 1e-2,
            batch_examples: 2,
            ..TrainOptions::default()
        };
        let run = train_network(
            model,
            &train,
            &train,
            &options,
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let model = run.model;
        let (loss, tokens) = model.answer_loss(&train[0]).unwrap();
        assert_eq!(tokens, 4);
        // As a training step runs it: the shared start kept, the rest after it.
        let prompt = &train[1].prompt;
        let prefix = model.prefix(&prompt[..5]).unwrap();
        let logits = model
            .logits_after(Some(&prefix), &prompt[5..], &[prompt.len() - 6])
            .unwrap();
        let wanted = candle_core::Tensor::new(&[train[1].answer[0]], &Device::Cpu).unwrap();
        let after_prefix = candle_nn::loss::cross_entropy(&logits, &wanted).unwrap();
        let grads = (loss + after_prefix).unwrap().backward().unwrap();
        let trained = model.trained();
        let at = base.display();
        assert_eq!(trained.len(), expected, "{at} {adaptation:?}");
        for (name, var) in trained {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{at} {adaptation:?}: {name} has no gradient"));
            let norm: f32 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(
                norm > 0.0,
                "{at} {adaptation:?}: {name} has a zero gradient"
            );
        }
    }
}

#[test]
fn qwen_and_gemma3_train_on_the_forward_of_their_reference() {
    use support::{gemma3, qwen};
    let dir = tempfile::tempdir().unwrap();
    // gemma3 against candle's gemma3 in f32 on the same weights: post norms, QK-norm, GELU,
    // embedding scale, sliding-window layers with their own rotary base.
    let gemma = gemma3::tiny_gemma(5);
    let gemma_path = dir.path().join("gemma3.gguf");
    std::fs::write(&gemma_path, &gemma.gguf).unwrap();
    let tokens = [2u32, 17, 200, 45, 45, 3, 298, 120, 77, 0, 5, 64];
    let want = gemma3::candle_logits(&gemma, &tokens);
    for adaptation in [LORA, Adaptation::Full] {
        let model = TrainableLlama::load(&gemma_path, adaptation, 1).unwrap();
        let got = rows(&model.logits(&tokens, &[tokens.len() - 1]).unwrap());
        let gap = relative_gap(std::slice::from_ref(&want), &got);
        assert!(gap < 1e-4, "gemma3 {adaptation:?}: relative gap {gap}");
    }
    // Per block: four norms, two QK norms, seven projections.
    let layers = gemma3::LAYERS;
    assert_every_trained_tensor_has_a_gradient(&gemma_path, [layers * 7 * 2, 2 + layers * 13]);

    // qwen2 (query, key and value biases) and qwen3 (QK-norm) against candle's quantized
    // models, which quantize the activations too: the bound is the fast backend's.
    // Tied embeddings; per block two norms, three biases (qwen2) or two QK norms (qwen3), seven
    // projections.
    for (arch, vectors) in [("qwen2", 2 + 3), ("qwen3", 2 + 2)] {
        let bytes = qwen::tiny_qwen(arch, 8);
        let path = dir.path().join(format!("{arch}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        let want = qwen::candle_logits(arch, &bytes);
        let model = TrainableLlama::load(&path, LORA, 1).unwrap();
        let got = rows(
            &model
                .logits(&qwen::TOKENS, &[qwen::TOKENS.len() - 1])
                .unwrap(),
        );
        let gap = relative_gap(std::slice::from_ref(&want), &got);
        assert!(gap < 0.03, "{arch}: relative gap {gap}");
        let layers = qwen::LAYERS;
        assert_every_trained_tensor_has_a_gradient(
            &path,
            [layers * 7 * 2, 2 + layers * (vectors + 7)],
        );
    }
}

#[test]
fn training_lowers_the_loss_and_the_tuned_file_runs_what_was_trained() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 23).unwrap();
    let train = examples(8, 2);
    for (adaptation, learning_rate) in [(LORA, 2e-2), (Adaptation::Full, 5e-3)] {
        let model = TrainableLlama::load(&base, adaptation, 4).unwrap();
        let options = TrainOptions {
            epochs: 8,
            learning_rate,
            batch_examples: 4,
            patience: 8,
            ..TrainOptions::default()
        };
        let mut steps = 0;
        let run = train_network(
            model,
            &train,
            &train,
            &options,
            &AtomicBool::new(false),
            &mut |_| steps += 1,
        )
        .unwrap();
        assert_eq!(steps, 16);
        assert_eq!(run.report.stop, StopReason::Epochs);
        let best = &run.report.epochs[run.report.best_epoch - 1].dev;
        assert!(
            best.loss < run.report.initial.loss / 2.0,
            "{adaptation:?}: {best:?} vs {:?}",
            run.report.initial
        );

        // The tuned file: the base with the trained tensors put in (adapters folded in).
        let tuned = dir.path().join("tuned.gguf");
        let changed = run.model.changed_tensors().unwrap();
        let expected = match adaptation {
            Adaptation::Lora { .. } => 2 * 7,
            Adaptation::Full => 2 + 2 * (2 + 7),
        };
        assert_eq!(changed.len(), expected);
        write_with_tensors(&base, &changed, &[("flowbot.finetune.method", "x")], &tuned).unwrap();
        let (sequence, _) = (train[0].prompt.clone(), ());
        let positions: Vec<usize> = (0..sequence.len()).collect();
        let trained = rows(&run.model.logits(&sequence, &positions).unwrap());
        let from_file = fast_logits(&tuned, &sequence);
        let gap = relative_gap(&from_file, &trained);
        assert!(gap < 0.03, "{adaptation:?}: relative gap {gap}");
        // ... and training changed them: the base file's logits are further away.
        let untouched = fast_logits(&base, &sequence);
        assert!(
            relative_gap(&untouched, &trained) > 2.0 * gap,
            "{adaptation:?}: the tuned file runs the base model"
        );
        if let Adaptation::Lora { alpha, .. } = adaptation {
            // The adapter file applied at run time over the unchanged base runs the same model
            // as the merged file.
            let adapter = dir.path().join("adapter.gguf");
            let tensors = run.model.adapter_tensors();
            assert_eq!(tensors.len(), 2 * 2 * 7);
            write_lora_adapter(&base, &tensors, alpha as f32, &[], &adapter).unwrap();
            let applied = fast_logits_with(&base, Some(&adapter), &sequence);
            let gap_trained = relative_gap(&applied, &trained);
            assert!(
                gap_trained < 0.03,
                "adapter vs trained: relative gap {gap_trained}"
            );
            let gap_merged = relative_gap(&applied, &from_file);
            assert!(
                gap_merged < 0.03,
                "adapter vs merged: relative gap {gap_merged}"
            );
            assert!(relative_gap(&untouched, &applied) > 2.0 * gap_trained);
        }
    }
}

#[test]
fn an_adapter_is_refused_by_a_model_it_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 26).unwrap();
    let model = TrainableLlama::load(&base, LORA, 1).unwrap();
    let tensors = model.adapter_tensors();
    let adapter = dir.path().join("adapter.gguf");
    let base_sha256 = flowbot_model_runtime::gguf::sha256_file(&base).unwrap();
    write_lora_adapter(
        &base,
        &tensors,
        8.0,
        &[(BASE_SHA256_KEY, base_sha256.as_str())],
        &adapter,
    )
    .unwrap();
    let backend = Backend::Fast(FastOptions::default());
    let error = |model: &Path, adapter: &Path, backend: Backend| match load_adapted(
        model,
        Some(adapter),
        backend,
    ) {
        Ok(_) => panic!("{} loaded with {}", model.display(), adapter.display()),
        Err(e) => e.to_string(),
    };
    // Its own base takes it; B starts at zero, so the logits are the base's.
    let tokens = [1u32, 40, 41, 42];
    assert_eq!(
        fast_logits_with(&base, Some(&adapter), &tokens),
        fast_logits(&base, &tokens)
    );
    assert!(load_adapted(&base, Some(&adapter), backend).is_ok());

    // Another model of the same shape: the recorded SHA-256 differs.
    let other = dir.path().join("other.gguf");
    write_tiny_llama(&other, 27).unwrap();
    let message = error(&other, &adapter, backend);
    assert!(
        message.contains("the adapter was trained on the model with SHA-256"),
        "{message}"
    );

    // Without the recorded hash the shapes decide: any model of the same shape takes it, an
    // adapter of another shape fits none.
    let unpinned = dir.path().join("unpinned.gguf");
    write_lora_adapter(&base, &tensors, 8.0, &[], &unpinned).unwrap();
    assert!(load_adapted(&other, Some(&unpinned), backend).is_ok());
    let narrow = dir.path().join("narrow.gguf");
    let mut reshaped = tensors.clone();
    let (name, _) = &reshaped[0];
    assert_eq!(name, "blk.0.attn_q.weight.lora_a");
    reshaped[0].1 = candle_core::Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap();
    write_lora_adapter(&base, &reshaped, 8.0, &[], &narrow).unwrap();
    let message = error(&base, &narrow, backend);
    assert!(
        message.contains("`blk.0.attn_q` adapts a 32→64 projection, the model's is 64→64"),
        "{message}"
    );

    // A folder, a model given as the adapter, and an adapter on candle.
    let message = error(&base, dir.path(), backend);
    assert!(
        message.contains("is a folder; an adapter is a GGUF file"),
        "{message}"
    );
    let message = error(&base, &other, backend);
    assert!(message.contains("not a LoRA adapter"), "{message}");
    let message = error(&base, &adapter, Backend::Candle(DeviceChoice::Cpu));
    assert!(message.contains("fast CPU backend only"), "{message}");
}

#[test]
fn a_bad_rank_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny.gguf");
    write_tiny_llama(&base, 24).unwrap();
    let error = TrainableLlama::load(
        &base,
        Adaptation::Lora {
            rank: 0,
            alpha: 1.0,
        },
        1,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the adapter rank must be between 1"),
        "{error}"
    );
}
