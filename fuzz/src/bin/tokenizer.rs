#![no_main]
//! The tokenizer on arbitrary bytes: the text is encoded, the ids decoded, and the raw bytes read
//! as token ids are decoded too (ids from a model's output are arbitrary).

use flowbot_fuzz::text;
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::tiny_model::write_tiny_llama;
use flowbot_model_runtime::tokenizer::TextTokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The tokenizer of the seeded tiny model the test suite uses (byte-level BPE from GGUF metadata).
fn tokenizer() -> &'static TextTokenizer {
    static TOKENIZER: OnceLock<TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let path = std::env::temp_dir().join(format!(
            "flowbot-fuzz-tokenizer-{}.gguf",
            std::process::id()
        ));
        write_tiny_llama(&path, 7).expect("tiny model");
        let tokenizer = TextTokenizer::from_gguf(&GgufFile::open(&path).expect("tiny model"))
            .expect("tokenizer");
        let _ = std::fs::remove_file(&path);
        tokenizer
    })
}

fuzz_target!(|data: &[u8]| {
    let tokenizer = tokenizer();
    if let Ok(ids) = tokenizer.encode(&text(data)) {
        let _ = tokenizer.decode(&ids);
    }
    let ids: Vec<u32> = data
        .chunks(4)
        .map(|c| c.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)))
        .collect();
    let _ = tokenizer.decode(&ids);
    let _ = tokenizer.decode_bytes(&ids);
});
