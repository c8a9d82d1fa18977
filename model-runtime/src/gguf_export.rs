//! Turning a llama GGUF file into a Hugging Face model directory ([`crate::model_dir`]), and the
//! tensor-name and rotary-layout mapping between the two formats.
//!
//! llama.cpp names tensors `blk.N.attn_q.weight` where Hugging Face writes
//! `model.layers.N.self_attn.q_proj.weight`, and its converter reorders the rows of the query and
//! key projections so that rotary pairs are interleaved (candle's quantized llama uses
//! `rope_i`, candle's llama `rope` over two halves). [`interleave_rotary_rows`] and
//! [`deinterleave_rotary_rows`] convert between the two layouts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::{Device, Tensor};
use serde_json::json;

use crate::gguf::{GgufError, GgufFile};
use crate::lm::candle_message;
use crate::tokenizer::{TextTokenizer, TokenizerError};

/// Errors turning a GGUF file into a model directory.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The GGUF file is unreadable.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Its tokenizer cannot be built or written.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The file is not a llama, or lacks a size the config needs.
    #[error("{path}: {message}")]
    Unsupported {
        /// The GGUF file.
        path: PathBuf,
        /// What is missing or unsupported.
        message: String,
    },
    /// A tensor could not be read, converted or written.
    #[error("{path}: {message}")]
    Tensor {
        /// The file read or written.
        path: PathBuf,
        /// candle's message.
        message: String,
    },
    /// An output file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Pairs of llama.cpp / Hugging Face names of the per-block tensors.
const BLOCK_TENSORS: [[&str; 2]; 9] = [
    ["attn_q", "self_attn.q_proj"],
    ["attn_k", "self_attn.k_proj"],
    ["attn_v", "self_attn.v_proj"],
    ["attn_output", "self_attn.o_proj"],
    ["ffn_gate", "mlp.gate_proj"],
    ["ffn_up", "mlp.up_proj"],
    ["ffn_down", "mlp.down_proj"],
    ["attn_norm", "input_layernorm"],
    ["ffn_norm", "post_attention_layernorm"],
];

/// Pairs of llama.cpp / Hugging Face names of the other tensors.
const MODEL_TENSORS: [[&str; 2]; 3] = [
    ["token_embd.weight", "model.embed_tokens.weight"],
    ["output_norm.weight", "model.norm.weight"],
    ["output.weight", "lm_head.weight"],
];

/// The llama.cpp name of a Hugging Face llama tensor name.
pub fn gguf_tensor_name(hf: &str) -> Option<String> {
    rename_tensor(hf, false)
}

/// The Hugging Face name of a llama.cpp tensor name.
pub fn hf_tensor_name(gguf: &str) -> Option<String> {
    rename_tensor(gguf, true)
}

/// Maps a tensor name from one scheme to the other (`to_hf`: llama.cpp to Hugging Face).
fn rename_tensor(name: &str, to_hf: bool) -> Option<String> {
    // Each pair is [llama.cpp, Hugging Face].
    let (from, to) = if to_hf { (0, 1) } else { (1, 0) };
    if let Some(pair) = MODEL_TENSORS.iter().find(|pair| pair[from] == name) {
        return Some(pair[to].to_owned());
    }
    let prefixes = ["blk.", "model.layers."];
    let (block, part) = name.strip_prefix(prefixes[from])?.split_once('.')?;
    let part = part.strip_suffix(".weight")?;
    let pair = BLOCK_TENSORS.iter().find(|pair| pair[from] == part)?;
    Some(format!("{}{block}.{}.weight", prefixes[to], pair[to]))
}

/// Reorders the rows of a query or key projection from the Hugging Face layout (rotary halves) to
/// the llama.cpp layout (rotary pairs interleaved), as llama.cpp's converter does.
pub fn interleave_rotary_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    weight
        .reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// The inverse of [`interleave_rotary_rows`].
pub fn deinterleave_rotary_rows(weight: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = weight.dims2()?;
    weight
        .reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ExportError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text).map_err(|source| ExportError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes the model directory `out` (created if needed) from the llama GGUF file `gguf`: every
/// weight dequantized to f32 (query/key rows back in the Hugging Face order) in
/// `model.safetensors`, `config.json` from the metadata, `tokenizer.json` as the runtime builds it
/// from the metadata, `tokenizer_config.json` with the chat template and BOS/EOS tokens. Returns
/// the number of tensors written.
pub fn write_model_dir_from_gguf(gguf: &Path, out: &Path) -> Result<usize, ExportError> {
    let mut file = GgufFile::open(gguf)?;
    let tokenizer = TextTokenizer::from_gguf(&file)?;
    let md = file.metadata();
    let unsupported = |message: String| ExportError::Unsupported {
        path: gguf.to_owned(),
        message,
    };
    if md.opt_string("general.architecture") != Some("llama") {
        return Err(unsupported("not a llama GGUF file".into()));
    }
    let number = |key: &str| {
        md.opt_u64(&format!("llama.{key}"))
            .ok_or_else(|| unsupported(format!("metadata key `llama.{key}` is missing")))
    };
    let float = |key: &str| match md.get(&format!("llama.{key}")) {
        Some(Value::F32(v)) => Some(f64::from(*v)),
        _ => None,
    };
    let heads = number("attention.head_count")? as usize;
    let kv_heads = md
        .opt_u64("llama.attention.head_count_kv")
        .map_or(heads, |v| v as usize);
    let bos = md.opt_u64("tokenizer.ggml.bos_token_id").map(|v| v as u32);
    let eos = md.opt_u64("tokenizer.ggml.eos_token_id").map(|v| v as u32);
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
        "tie_word_embeddings": !file.content.tensor_infos.contains_key("output.weight"),
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
        let Some(hf) = hf_tensor_name(&name) else {
            tracing::warn!(tensor = %name, "tensor without a Hugging Face llama name; left out");
            continue;
        };
        let read = |e: candle_core::Error| ExportError::Tensor {
            path: gguf.to_owned(),
            message: format!("tensor `{name}`: {}", candle_message(&e)),
        };
        let weight = file
            .content
            .tensor(&mut file.reader, &name, &Device::Cpu)
            .and_then(|t| t.dequantize(&Device::Cpu))
            .map_err(read)?;
        let weight = if name.ends_with("attn_q.weight") {
            deinterleave_rotary_rows(&weight, heads).map_err(read)?
        } else if name.ends_with("attn_k.weight") {
            deinterleave_rotary_rows(&weight, kv_heads).map_err(read)?
        } else {
            weight
        };
        tensors.insert(hf, weight);
    }
    std::fs::create_dir_all(out).map_err(|source| ExportError::Io {
        path: out.to_owned(),
        source,
    })?;
    write_json(&out.join("config.json"), &config)?;
    write_json(&out.join("tokenizer_config.json"), &tokenizer_config)?;
    tokenizer.save_tokenizer_json(&out.join("tokenizer.json"))?;
    let weights = out.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| ExportError::Tensor {
        path: weights.clone(),
        message: candle_message(&e),
    })?;
    Ok(tensors.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_map_both_ways() {
        for (hf, gguf) in [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.12.self_attn.k_proj.weight",
                "blk.12.attn_k.weight",
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                "blk.0.ffn_norm.weight",
            ),
        ] {
            assert_eq!(gguf_tensor_name(hf).as_deref(), Some(gguf));
            assert_eq!(hf_tensor_name(gguf).as_deref(), Some(hf));
        }
        assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
        assert_eq!(
            gguf_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
    }

    #[test]
    fn rotary_row_orders_are_inverse() {
        let rows: Vec<f32> = (0..16 * 3).map(|v| v as f32).collect();
        let weight = Tensor::from_vec(rows, (16, 3), &Device::Cpu).unwrap();
        let interleaved = interleave_rotary_rows(&weight, 2).unwrap();
        // Head 0 has rows 0..8: halves 0..4 and 4..8 become pairs (0, 4), (1, 5), ...
        let first_column: Vec<f32> = interleaved
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(
            &first_column[..8],
            &[0.0, 12.0, 3.0, 15.0, 6.0, 18.0, 9.0, 21.0]
        );
        let back = deinterleave_rotary_rows(&interleaved, 2).unwrap();
        assert_eq!(
            back.to_vec2::<f32>().unwrap(),
            weight.to_vec2::<f32>().unwrap()
        );
    }
}
