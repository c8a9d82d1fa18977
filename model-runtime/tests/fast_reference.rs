//! The fast backend on the real default model against the llama.cpp reference output.
//! The model must be present (`$FLOWBOT_MODEL` or `.data/models/`): these tests fail without it.

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
fn reference_prompt_ids_are_the_tokenized_chat() {
    let tokenizer = support::gguf_tokenizer(&support::default_model());
    let encoding = tokenizer
        .encode(support::reference_prompt(), false)
        .unwrap();
    assert_eq!(encoding.get_ids(), REFERENCE_PROMPT_IDS);
    assert_eq!(
        &REFERENCE_PROMPT_IDS[..10],
        &[1, 9690, 198, 2683, 2965, 1890, 28, 26310, 1686, 5143]
    );
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
