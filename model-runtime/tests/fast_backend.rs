//! The fast backend on tiny random models: agreement with candle's quantized llama, cache
//! rewind, batching, and errors.

mod support;

use std::io::Cursor;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use flowbot_model_runtime::fast::{FastLlama, FastOptions, Isa};
use flowbot_model_runtime::lm::{CausalLm, LmError};
use support::{tiny_gguf, TinyModel};

const TOKENS: [u32; 12] = [1, 17, 200, 45, 45, 3, 298, 120, 77, 0, 5, 64];

fn tiny(dtype: GgmlDType, untied_output: bool) -> Vec<u8> {
    tiny_gguf(
        &TinyModel {
            dtype,
            untied_output,
            context: 64,
        },
        42,
    )
}

fn fast(bytes: &[u8], isa: Option<Isa>) -> FastLlama {
    FastLlama::from_reader(
        &mut Cursor::new(bytes),
        &FastOptions {
            threads: Some(2),
            isa,
        },
    )
    .unwrap()
}

fn candle_logits(bytes: &[u8], tokens: &[u32]) -> Vec<f32> {
    let mut reader = Cursor::new(bytes);
    let content = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
    let mut model = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
    let input = Tensor::new(tokens, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn logits_agree_with_candle() {
    for (dtype, untied) in [
        (GgmlDType::Q8_0, false),
        (GgmlDType::Q4_1, false),
        (GgmlDType::Q4_1, true),
    ] {
        let bytes = tiny(dtype, untied);
        let want = candle_logits(&bytes, &TOKENS);
        let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for isa in Isa::available() {
            let got = fast(&bytes, Some(isa)).forward(&TOKENS, 0).unwrap();
            assert_eq!(got.len(), want.len());
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 0.03 * range,
                "{dtype:?} untied={untied} {isa:?}: max diff {worst}, logit range {range}"
            );
        }
    }
}

#[test]
fn batched_prompt_equals_token_by_token() {
    let bytes = tiny(GgmlDType::Q4_1, false);
    let batched = fast(&bytes, None).forward(&TOKENS, 0).unwrap();
    let mut lm = fast(&bytes, None);
    let mut last = Vec::new();
    for (pos, &t) in TOKENS.iter().enumerate() {
        last = lm.forward(&[t], pos).unwrap();
    }
    assert_eq!(batched, last);
    assert_eq!(lm.cached_len(), TOKENS.len());
}

#[test]
fn rewinding_to_a_prefix_gives_the_same_logits() {
    let bytes = tiny(GgmlDType::Q4_1, false);
    let mut lm = fast(&bytes, None);
    let first = lm.forward(&TOKENS, 0).unwrap();
    lm.forward(&[9, 8, 7], TOKENS.len()).unwrap();
    assert_eq!(lm.cached_len(), TOKENS.len() + 3);
    // Keep the first 8 positions, run the rest of the prompt again.
    let again = lm.forward(&TOKENS[8..], 8).unwrap();
    assert_eq!(again, first);
    assert_eq!(lm.cached_len(), TOKENS.len());
    // A different continuation from the same prefix differs.
    let other = lm.forward(&[5, 6], 8).unwrap();
    assert_ne!(other, first);
}

#[test]
fn bad_requests_are_errors() {
    let bytes = tiny(GgmlDType::Q8_0, false);
    let mut lm = fast(&bytes, None);
    assert_eq!(lm.max_positions(), 64);
    assert_eq!(lm.vocab_size(), 299);
    assert!(matches!(lm.forward(&[], 0), Err(LmError::Forward(_))));
    assert!(
        matches!(lm.forward(&[1, 2], 1), Err(LmError::Forward(m)) if m.contains("past the 0 cached"))
    );
    assert!(matches!(lm.forward(&[299], 0), Err(LmError::Forward(m)) if m.contains("299")));
    let long = vec![3u32; 65];
    assert!(matches!(
        lm.forward(&long, 0),
        Err(LmError::ContextFull {
            position: 64,
            limit: 64
        })
    ));
    // The full context itself fits.
    assert_eq!(lm.forward(&long[..64], 0).unwrap().len(), 299);
    assert!(matches!(
        lm.forward(&[3], 64),
        Err(LmError::ContextFull { .. })
    ));
}

#[test]
fn bad_files_are_load_errors() {
    let err = |bytes: &[u8]| match FastLlama::from_reader(
        &mut Cursor::new(bytes),
        &FastOptions::default(),
    ) {
        Err(LmError::Load(msg)) => msg,
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("loaded a bad file"),
    };
    assert!(err(b"not a gguf").contains("GGUF"));
    let good = tiny(GgmlDType::Q8_0, false);
    let truncated = err(&good[..good.len() / 2]);
    assert!(truncated.contains("run past the end"), "{truncated}");
    let f32_model = tiny(GgmlDType::F32, false);
    assert!(err(&f32_model).contains("supports Q4_0, Q4_1, Q5_0"));
}

#[test]
fn generator_runs_on_the_fast_backend_and_reuses_its_cache() {
    use flowbot_model_runtime::tiny_model::write_tiny_llama;
    use flowbot_model_runtime::{load_generator, Backend, GenerateOptions};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_llama(&path, 3).unwrap();
    let mut generator = load_generator(&path, Backend::Fast(FastOptions::default()))
        .unwrap()
        .generator;
    let options = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let first = generator
        .generate(Some("be brief"), "hello there", &options, None)
        .unwrap();
    assert!(!first.tokens.is_empty());
    // The second request shares the prompt: the backend rewinds to it and must repeat itself.
    let second = generator
        .generate(Some("be brief"), "hello there", &options, None)
        .unwrap();
    assert_eq!(first.tokens, second.tokens);
    let other = generator
        .generate(Some("be brief"), "something else", &options, None)
        .unwrap();
    assert!(other.prompt_tokens > 0);
}
