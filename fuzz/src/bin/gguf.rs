#![no_main]
//! The GGUF header and metadata reader (model files come from users), then what is built from the
//! metadata: `model info`'s facts and the tokenizer.

use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::tokenizer::TextTokenizer;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("flowbot-fuzz-{}.gguf", std::process::id()))
    });
    if std::fs::write(path, data).is_err() {
        return;
    }
    let Ok(file) = GgufFile::open(path) else {
        return;
    };
    let metadata = file.metadata();
    let _ = metadata.string("general.architecture");
    let _ = metadata.opt_u64("llama.context_length");
    let _ = metadata.string_array("tokenizer.ggml.merges");
    let _ = metadata.opt_int_array("tokenizer.ggml.token_type");
    if let Ok(tokenizer) = TextTokenizer::from_gguf(&file) {
        let ids = tokenizer
            .encode("Order SO-1 from ACME, 1,234.50 EUR <|im_end|>")
            .unwrap_or_default();
        let _ = tokenizer.decode(&ids);
    }
});
