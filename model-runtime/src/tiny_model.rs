//! A tiny llama-family GGUF with seeded random weights and a real byte-level BPE tokenizer, written
//! with candle's GGUF writer. Tests and demos use it where the real model would be too slow or
//! absent; its output is deterministic noise.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Embedding width.
const DIM: usize = 64;
/// Transformer blocks.
const BLOCKS: usize = 2;
/// Attention heads.
const HEADS: usize = 4;
/// Key/value heads.
const KV_HEADS: usize = 2;
/// Feed-forward width.
const FFN: usize = 128;
/// Context length written into the metadata.
pub const TINY_CONTEXT: usize = 512;
/// Control tokens, ids 0..3.
pub const TINY_CONTROL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// Merged pairs after the 256 byte tokens.
const MERGES: [(&str, &str); 24] = [
    ("t", "h"),
    ("h", "e"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("r", "e"),
    ("o", "n"),
    ("a", "t"),
    ("e", "n"),
    ("n", "d"),
    ("Ġ", "t"),
    ("Ġ", "a"),
    ("Ġt", "he"),
    ("o", "r"),
    ("e", "s"),
    ("i", "s"),
    ("o", "u"),
    ("\"", ":"),
    ("{", "\""),
    ("\"", ","),
    ("Ġ", "\""),
    ("s", "t"),
    ("a", "r"),
    ("o", "rd"),
];

/// The GPT-2 byte-level character of each byte.
fn byte_char(b: u8) -> char {
    let printable =
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    if printable {
        return char::from(b);
    }
    let rank = (0..b)
        .filter(|&x| {
            !((b'!'..=b'~').contains(&x)
                || (0xA1..=0xAC).contains(&x)
                || (0xAE..=0xFF).contains(&x))
        })
        .count();
    char::from_u32(256 + rank as u32).unwrap_or('?')
}

fn random_tensor(
    rng: &mut StdRng,
    shape: (usize, usize),
    scale: f32,
) -> candle_core::Result<Tensor> {
    let data: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| rng.gen_range(-scale..scale))
        .collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// Writes the tiny model to `path`; the same seed writes the same file.
pub fn write_tiny_llama(path: &Path, seed: u64) -> candle_core::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tokens: Vec<String> = TINY_CONTROL_TOKENS.iter().map(|s| s.to_string()).collect();
    tokens.extend((0..=255u8).map(|b| byte_char(b).to_string()));
    let ord_merge = ("o", "rd");
    let mut merges = Vec::new();
    for (a, b) in MERGES {
        let merged = format!("{a}{b}");
        // "o rd" needs "rd" first.
        if (a, b) == ord_merge && !tokens.contains(&"rd".to_string()) {
            merges.push("r d".to_string());
            tokens.push("rd".into());
        }
        merges.push(format!("{a} {b}"));
        tokens.push(merged);
    }
    let vocab = tokens.len();
    let mut token_types = vec![Value::I32(3); TINY_CONTROL_TOKENS.len()];
    token_types.resize(vocab, Value::I32(1));

    let string = |s: &str| Value::String(s.to_string());
    let template = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", string("llama")),
        ("general.name", string("tiny-random-llama")),
        ("llama.context_length", Value::U32(TINY_CONTEXT as u32)),
        ("llama.embedding_length", Value::U32(DIM as u32)),
        ("llama.block_count", Value::U32(BLOCKS as u32)),
        ("llama.feed_forward_length", Value::U32(FFN as u32)),
        ("llama.attention.head_count", Value::U32(HEADS as u32)),
        ("llama.attention.head_count_kv", Value::U32(KV_HEADS as u32)),
        (
            "llama.rope.dimension_count",
            Value::U32((DIM / HEADS) as u32),
        ),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", string("gpt2")),
        ("tokenizer.ggml.pre", string("smollm")),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| string(t)).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(token_types)),
        (
            "tokenizer.ggml.merges",
            Value::Array(merges.iter().map(|m| string(m)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.chat_template", string(template)),
    ];

    let kv_dim = DIM / HEADS * KV_HEADS;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q8 = |t: Tensor| QTensor::quantize(&t, GgmlDType::Q8_0);
    let f32 = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32);
    let ones = |n: usize| Tensor::ones(n, candle_core::DType::F32, &Device::Cpu);
    tensors.push((
        "token_embd.weight".into(),
        q8(random_tensor(&mut rng, (vocab, DIM), 0.5)?)?,
    ));
    tensors.push(("output_norm.weight".into(), f32(ones(DIM)?)?));
    for i in 0..BLOCKS {
        let p = format!("blk.{i}");
        for (name, shape) in [
            ("attn_q", (DIM, DIM)),
            ("attn_k", (kv_dim, DIM)),
            ("attn_v", (kv_dim, DIM)),
            ("attn_output", (DIM, DIM)),
            ("ffn_gate", (FFN, DIM)),
            ("ffn_up", (FFN, DIM)),
            ("ffn_down", (DIM, FFN)),
        ] {
            tensors.push((
                format!("{p}.{name}.weight"),
                q8(random_tensor(&mut rng, shape, 0.2)?)?,
            ));
        }
        tensors.push((format!("{p}.attn_norm.weight"), f32(ones(DIM)?)?));
        tensors.push((format!("{p}.ffn_norm.weight"), f32(ones(DIM)?)?));
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs)?;
    std::io::Write::flush(&mut file)?;
    Ok(())
}
