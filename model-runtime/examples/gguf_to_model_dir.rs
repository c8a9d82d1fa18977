//! Writes a Hugging Face model directory from a llama GGUF file (weights dequantized to f32), to
//! run the same model through the safetensors backend.
//!
//! `cargo run -p flowbot-model-runtime --example gguf_to_model_dir -- MODEL.gguf OUT_DIR`

use std::path::PathBuf;

use flowbot_model_runtime::gguf_export::write_model_dir_from_gguf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: gguf_to_model_dir MODEL.gguf OUT_DIR".into());
    };
    let written = write_model_dir_from_gguf(&PathBuf::from(input), &PathBuf::from(output))?;
    println!("{written} tensors written to {output}");
    Ok(())
}
