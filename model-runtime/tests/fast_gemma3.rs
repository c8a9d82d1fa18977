//! The fast backend's gemma3 forward pass on a tiny random gemma3 GGUF, against candle's
//! gemma3 implementation of the same weights (Hugging Face layout and names).

mod support;

use std::io::Cursor;

use flowbot_model_runtime::fast::{Arch, FastLlama, FastOptions, Isa};
use flowbot_model_runtime::lm::CausalLm;
use support::gemma3::{candle_logits, tiny_gemma, VOCAB};

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
