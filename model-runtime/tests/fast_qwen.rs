//! The fast backend's qwen2 (biases) and qwen3 (QK-norm) forward passes on tiny random GGUF
//! files with K-quant, Q5_0 and Q8_0 matrices, against candle's quantized qwen2 and qwen3 on the
//! same files.

mod support;

use std::io::Cursor;

use flowbot_model_runtime::fast::{Arch, FastLlama, FastOptions, Isa};
use flowbot_model_runtime::lm::CausalLm;
use support::qwen::{candle_logits, tiny_qwen, TOKENS, VOCAB};

#[test]
fn qwen2_and_qwen3_logits_agree_with_candle() {
    for (arch, expected) in [("qwen2", Arch::Qwen2), ("qwen3", Arch::Qwen3)] {
        let bytes = tiny_qwen(arch, 8);
        let want = candle_logits(arch, &bytes);
        assert_eq!(want.len(), VOCAB, "{arch}");
        let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for isa in Isa::available() {
            let mut lm = FastLlama::from_reader(
                &mut Cursor::new(&bytes),
                &FastOptions {
                    threads: Some(2),
                    isa: Some(isa),
                },
            )
            .unwrap();
            assert_eq!(lm.hyper().arch, expected);
            let got = lm.forward(&TOKENS, 0).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 0.03 * range,
                "{arch} {isa:?}: max diff {worst}, logit range {range}"
            );
        }
    }
}
