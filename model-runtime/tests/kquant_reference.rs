//! Greedy parity with llama.cpp on K-quant files: the default model re-quantized to Q4_K_M by our
//! own quantizer, and the real Gemma 3 270M Q4_K_M on the fast backend and on candle
//! (`$FLOWBOT_GEMMA_MODEL`, else the model cache's
//! `gemma-3-270m-q4_k_m.gguf`; `flowbot model fetch gemma3-270m` installs it, CI does). These
//! tests fail when a model is missing.

mod support;

use std::path::PathBuf;

use flowbot_model_runtime::candle_lm::CandleLm;
use flowbot_model_runtime::fast::reference::{
    GEMMA3_GREEDY_IDS, GEMMA3_PROMPT_IDS, REFERENCE_PROMPT_IDS, REFERENCE_Q4_K_M_GREEDY_IDS,
    REFERENCE_SYSTEM, REFERENCE_USER,
};
use flowbot_model_runtime::fast::{FastLlama, FastOptions, Isa};
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::lm::CausalLm;
use flowbot_model_runtime::requantize::requantize_q4_k_m;
use flowbot_model_runtime::{load_generator, Backend};

fn gemma_model() -> PathBuf {
    let path = std::env::var_os("FLOWBOT_GEMMA_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            flowbot_model_runtime::fetch::model_cache_dir().join("gemma-3-270m-q4_k_m.gguf")
        });
    assert!(
        path.is_file(),
        "Gemma 3 270M not found at {}: run `flowbot model fetch gemma3-270m` or set FLOWBOT_GEMMA_MODEL",
        path.display()
    );
    path
}

fn greedy(lm: &mut dyn CausalLm, prompt: &[u32], count: usize) -> Vec<u32> {
    let argmax = |logits: &[f32]| {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32
    };
    let mut generated = vec![argmax(&lm.forward(prompt, 0).unwrap())];
    while generated.len() < count {
        let last = *generated.last().unwrap();
        generated.push(argmax(&lm.forward(&[last], lm.cached_len()).unwrap()));
    }
    generated
}

#[test]
fn smollm2_requantized_to_q4_k_m_matches_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smollm2-q4_k_m.gguf");
    let counts = requantize_q4_k_m(&support::default_model(), &path).unwrap();
    // 576-wide rows fall back to Q5_0/Q8_0; the 1536-wide ffn_down rows hold K-quants.
    assert_eq!(counts.get("Q4K"), Some(&16), "{counts:?}");
    assert_eq!(counts.get("Q6K"), Some(&14), "{counts:?}");
    // This model sits on near ties under greedy decoding: llama.cpp's own choices lead their
    // runners-up by 0.19, 0.12, 0.14 and 0.0016 logits at the first four steps and by 0.22 at
    // the fifteenth, so the order of f32 sums decides them. With the scalar and AVX2 kernels the
    // first 14 ids agree exactly (measured); the AVX-512 kernels sum in another order and part
    // at the second step, as llama.cpp itself does between batch sizes. The Gemma test below is
    // the tight one (20 of 20 ids).
    for isa in [Isa::Scalar, Isa::Avx2]
        .into_iter()
        .filter(|isa| isa.is_supported())
    {
        let options = FastOptions {
            threads: None,
            isa: Some(isa),
        };
        let mut lm = FastLlama::load(&path, &options).unwrap();
        let ids = greedy(&mut lm, &REFERENCE_PROMPT_IDS, 14);
        assert_eq!(ids, REFERENCE_Q4_K_M_GREEDY_IDS[..14], "{isa:?}");
    }
}

#[test]
fn gemma3_prompt_and_greedy_ids_match_llama_cpp() {
    let path = gemma_model();
    let generator = load_generator(&path, Backend::Fast(FastOptions::default()))
        .unwrap()
        .generator;
    let prompt = generator
        .prompt(Some(REFERENCE_SYSTEM), REFERENCE_USER)
        .unwrap();
    assert_eq!(prompt.ids, GEMMA3_PROMPT_IDS);
    drop(generator);
    let mut lm = FastLlama::load(&path, &FastOptions::default()).unwrap();
    assert_eq!(lm.vocab_size(), 262_144);
    assert_eq!(greedy(&mut lm, &GEMMA3_PROMPT_IDS, 20), GEMMA3_GREEDY_IDS);
}

#[test]
fn gemma3_on_candle_matches_llama_cpp() {
    let path = gemma_model();
    let mut file = GgufFile::open(&path).unwrap();
    let mut lm = CandleLm::load(&mut file, candle_core::Device::Cpu).unwrap();
    assert_eq!(lm.vocab_size(), 262_144);
    assert_eq!(greedy(&mut lm, &GEMMA3_PROMPT_IDS, 20), GEMMA3_GREEDY_IDS);
}
