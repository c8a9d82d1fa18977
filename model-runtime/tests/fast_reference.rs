//! The fast backend on the real default model against the llama.cpp reference output (the
//! prompt ids themselves are checked through the runtime's tokenizer in `real_model.rs`).
//! The model must be present (`$FLOWBOT_MODEL`, else the model cache): these tests fail without it.

mod support;

use flowbot_model_runtime::fast::reference::{REFERENCE_GREEDY_IDS, REFERENCE_PROMPT_IDS};
use flowbot_model_runtime::fast::{FastLlama, FastOptions};
use flowbot_model_runtime::lm::CausalLm;

fn argmax(logits: &[f32]) -> u32 {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0 as u32
}

#[test]
fn greedy_ids_match_llama_cpp() {
    let mut lm = FastLlama::load(&support::default_model(), &FastOptions::default()).unwrap();
    assert_eq!(lm.max_positions(), 8192);
    assert_eq!(lm.vocab_size(), 49152);
    let mut next = argmax(&lm.forward(&REFERENCE_PROMPT_IDS, 0).unwrap());
    let mut generated = vec![next];
    while generated.len() < REFERENCE_GREEDY_IDS.len() {
        next = argmax(&lm.forward(&[next], lm.cached_len()).unwrap());
        generated.push(next);
    }
    assert_eq!(generated, REFERENCE_GREEDY_IDS, "kernels: {:?}", lm.isa());
}
