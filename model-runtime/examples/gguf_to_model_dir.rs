//! Writes a Hugging Face model directory from a llama GGUF file, to run the same model through
//! the safetensors backend: the weights dequantized to f32 (query/key rows put back from
//! llama.cpp's interleaved rotary layout), `config.json` from the GGUF metadata, `tokenizer.json`
//! as the runtime builds it from the metadata, and `tokenizer_config.json` with the chat template
//! and the BOS/EOS tokens.
//!
//! `cargo run --release -p flowbot-model-runtime --example gguf_to_model_dir -- MODEL.gguf OUT_DIR`

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use flowbot_model_runtime::gguf::GgufFile;
use flowbot_model_runtime::tokenizer::TextTokenizer;
use serde_json::json;

type Error = Box<dyn std::error::Error>;

/// The Hugging Face name of a llama.cpp tensor name.
fn hf_name(gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (block, part) = rest.split_once('.')?;
    let long = match part {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{block}.{long}"))
}

/// Undoes llama.cpp's row interleaving of a query or key projection.
fn deinterleave_rotary_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    weight
        .reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: gguf_to_model_dir MODEL.gguf OUT_DIR".into());
    };
    let (input, output) = (PathBuf::from(input), PathBuf::from(output));
    let mut file = GgufFile::open(&input)?;
    let tokenizer = TextTokenizer::from_gguf(&file)?;
    let md = file.metadata();
    if md.opt_string("general.architecture") != Some("llama") {
        return Err(format!("{}: not a llama GGUF file", input.display()).into());
    }
    let number = |key: &str| md.opt_u64(&format!("llama.{key}")).ok_or_else(|| format!("metadata llama.{key} is missing"));
    let float = |key: &str| match md.get(&format!("llama.{key}")) {
        Some(candle_core::quantized::gguf_file::Value::F32(v)) => Some(f64::from(*v)),
        _ => None,
    };
    let heads = number("attention.head_count")? as usize;
    let kv_heads = md.opt_u64("llama.attention.head_count_kv").map_or(heads, |v| v as usize);
    let bos = md.opt_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32);
    let eos = md.opt_u64("tokenizer.ggml.eos_token_id").map(|v| v as u32);
    let tied = !file.content.tensor_infos.contains_key("output.weight");
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": number("embedding_length")?,
        "intermediate_size": number("feed_forward_length")?,
        "num_hidden_layers": number("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "vocab_size": tokenizer.vocab_size(),
        "max_position_embeddings": number("context_length")?,
        "rms_norm_eps": float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        "rope_theta": float("rope.freq_base").unwrap_or(10000.0),
        "tie_word_embeddings": tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    let tokenizer_config = json!({
        "chat_template": md.opt_string("tokenizer.chat_template"),
        "bos_token": bos.and_then(|id| tokenizer.token_text(id)),
        "eos_token": eos.and_then(|id| tokenizer.token_text(id)),
    });

    let names: Vec<String> = file.content.tensor_infos.keys().cloned().collect();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for name in names {
        let Some(hf) = hf_name(&name) else {
            eprintln!("skipping tensor {name}");
            continue;
        };
        let weight = file.content.tensor(&mut file.reader, &name, &Device::Cpu)?.dequantize(&Device::Cpu)?;
        let weight = if name.ends_with("attn_q.weight") {
            deinterleave_rotary_rows(&weight, heads)?
        } else if name.ends_with("attn_k.weight") {
            deinterleave_rotary_rows(&weight, kv_heads)?
        } else {
            weight
        };
        tensors.insert(hf, weight);
    }
    std::fs::create_dir_all(&output)?;
    std::fs::write(output.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    std::fs::write(output.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)?;
    tokenizer.save_tokenizer_json(&output.join("tokenizer.json"))?;
    candle_core::safetensors::save(&tensors, output.join("model.safetensors"))?;
    println!("{} tensors written to {}", tensors.len(), output.display());
    Ok(())
}
