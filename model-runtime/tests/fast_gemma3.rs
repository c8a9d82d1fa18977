//! The fast backend's gemma3 forward pass on a tiny random gemma3 GGUF, against candle's
//! gemma3 implementation of the same weights (Hugging Face layout and names); and the candle
//! backend (candle's quantized Gemma 3 on the GGUF) against the same reference.

mod support;

use std::io::Cursor;

use candle_core::Device;
use flowbot_model_runtime::candle_lm::CandleLm;
use flowbot_model_runtime::fast::{Arch, FastLlama, FastOptions, Isa};
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::lm::CausalLm;
use support::gemma3::{candle_logits, tiny_gemma, VOCAB, WINDOW};

const TOKENS: [u32; 12] = [2, 17, 200, 45, 45, 3, 298, 120, 77, 0, 5, 64];

#[test]
fn gemma3_logits_agree_with_candle() {
    let model = tiny_gemma(5);
    let want = candle_logits(&model, &TOKENS);
    assert_eq!(want.len(), VOCAB);
    let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for isa in Isa::available() {
        let mut lm = FastLlama::from_reader(
            &mut Cursor::new(&model.gguf),
            &FastOptions {
                threads: Some(2),
                isa: Some(isa),
            },
        )
        .unwrap();
        assert_eq!(lm.hyper().arch, Arch::Gemma3);
        assert!(lm.hyper().is_sliding(0) && !lm.hyper().is_sliding(5));
        let got = lm.forward(&TOKENS, 0).unwrap();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 0.03 * range,
            "{isa:?}: max diff {worst}, logit range {range}"
        );
    }
}

#[test]
fn the_sliding_window_changes_what_a_late_token_sees() {
    // The same prompt with a different first token: global layers see the change at the last
    // position, so the logits differ; the test guards against a window that drops everything.
    let model = tiny_gemma(6);
    let mut lm =
        FastLlama::from_reader(&mut Cursor::new(&model.gguf), &FastOptions::default()).unwrap();
    let a = lm.forward(&TOKENS, 0).unwrap();
    let mut other = TOKENS;
    other[1] = 18;
    let b = lm.forward(&other, 0).unwrap();
    assert_ne!(a, b);
    // Decoding token by token equals the batched prompt.
    let mut step = Vec::new();
    for (pos, &t) in TOKENS.iter().enumerate() {
        step = lm.forward(&[t], pos).unwrap();
    }
    let batched = lm.forward(&TOKENS, 0).unwrap();
    assert_eq!(step, batched);
}

/// The largest difference between two logit vectors.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn the_candle_backend_runs_gemma3_files() {
    let model = tiny_gemma(7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-gemma3.gguf");
    std::fs::write(&path, &model.gguf).unwrap();
    let mut lm = CandleLm::load(&mut GgufFile::open(&path).unwrap(), Device::Cpu).unwrap();
    assert_eq!(lm.vocab_size(), VOCAB);
    assert_eq!(lm.max_positions(), 128);
    // A prompt longer than the sliding window, so that the sliding layers drop positions.
    assert!(TOKENS.len() > WINDOW);
    let want = candle_logits(&model, &TOKENS);
    let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let whole = lm.forward(&TOKENS, 0).unwrap();
    assert!(
        max_diff(&whole, &want) <= 0.03 * range,
        "max diff {}, logit range {range}",
        max_diff(&whole, &want)
    );
    // A prompt continued after a cached prefix, and one decoded token by token, agree with it.
    lm.forward(&TOKENS[..3], 0).unwrap();
    let continued = lm.forward(&TOKENS[3..], 3).unwrap();
    assert!(max_diff(&continued, &whole) <= 1e-3 * range);
    let mut stepped = Vec::new();
    for (pos, &token) in TOKENS.iter().enumerate() {
        stepped = lm.forward(&[token], pos).unwrap();
    }
    assert!(max_diff(&stepped, &whole) <= 1e-3 * range);
}

/// Three sequences that share a prefix longer than the sliding window, run as one batch with the
/// prefix copied between their caches (so the attention reads it from one copy), get the logits
/// each gets alone, bit for bit: for their new prompts and for a token decoded after them. The
/// sliding layers read only the part of the shared prefix inside each row's window.
#[test]
fn a_batch_sharing_a_prefix_longer_than_the_window_gives_each_the_logits_it_gets_alone() {
    use flowbot_model_runtime::lm::SlotRun;
    let model = tiny_gemma(9);
    let load = || {
        FastLlama::from_reader(
            &mut Cursor::new(&model.gguf),
            &FastOptions {
                threads: Some(2),
                isa: None,
            },
        )
        .unwrap()
    };
    let prefix = &TOKENS[..8];
    assert!(prefix.len() > WINDOW);
    let tails: [&[u32]; 3] = [&[7, 8, 9], &[10], &[11, 12, 13, 14, 15, 16, 17, 18, 19, 20]];
    let next_token = [1u32];
    let alone: Vec<(Vec<f32>, Vec<f32>)> = tails
        .iter()
        .map(|tail| {
            let mut lm = load();
            let ids: Vec<u32> = prefix.iter().chain(tail.iter()).copied().collect();
            let first = lm.forward(&ids, 0).unwrap();
            let next = lm.forward(&next_token, ids.len()).unwrap();
            (first, next)
        })
        .collect();

    let mut batch = Box::new(load()).into_batch(tails.len());
    let run = |slot: usize, tokens: &'static [u32], start: usize, logits: bool| SlotRun {
        slot,
        tokens,
        start,
        logits,
    };
    batch
        .forward_batch(&[run(0, &TOKENS[..8], 0, false)])
        .unwrap();
    for slot in 1..tails.len() {
        batch.copy_prefix(0, slot, 0..prefix.len()).unwrap();
    }
    let runs: Vec<SlotRun<'_>> = tails
        .iter()
        .enumerate()
        .map(|(slot, tail)| SlotRun {
            slot,
            tokens: tail,
            start: prefix.len(),
            logits: true,
        })
        .collect();
    let first = batch.forward_batch(&runs).unwrap();
    let decode: Vec<SlotRun<'_>> = tails
        .iter()
        .enumerate()
        .map(|(slot, tail)| SlotRun {
            slot,
            tokens: &next_token,
            start: prefix.len() + tail.len(),
            logits: true,
        })
        .collect();
    let next = batch.forward_batch(&decode).unwrap();
    for (i, (want_first, want_next)) in alone.iter().enumerate() {
        assert_eq!(
            &first[i * VOCAB..(i + 1) * VOCAB],
            &want_first[..],
            "sequence {i}: its prompt"
        );
        assert_eq!(
            &next[i * VOCAB..(i + 1) * VOCAB],
            &want_next[..],
            "sequence {i}: the next token"
        );
    }
}
