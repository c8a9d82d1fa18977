//! A tiny llama-family model with seeded random weights and a real byte-level BPE tokenizer. Tests
//! and demos use it where the real model would be too slow or absent; its output is deterministic
//! noise. The same weights can be written two ways: as a GGUF file (candle's GGUF writer, llama.cpp
//! tensor names and layout) and as a Hugging Face model directory (`config.json`,
//! `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`), so that the two loaders can be
//! checked against each other.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::gguf_export::{gguf_tensor_name, interleave_rotary_rows};

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
/// The chat template (ChatML) both formats carry.
const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
/// RMS-norm epsilon.
const RMS_EPS: f32 = 1e-5;
/// Rotary base frequency.
const ROPE_THETA: f32 = 10000.0;
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
    dims: &[usize],
    center: f32,
    scale: f32,
) -> candle_core::Result<Tensor> {
    let count = dims.iter().product();
    let data: Vec<f32> = (0..count)
        .map(|_| center + rng.gen_range(-scale..scale))
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu)
}

/// The tiny vocabulary: control tokens, the 256 byte tokens, then one token per merge; and the
/// merges as `"a b"` lines.
fn vocabulary() -> (Vec<String>, Vec<String>) {
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
    (tokens, merges)
}

/// The tiny model's weights in the Hugging Face layout and names, and its vocabulary.
pub struct TinyLlama {
    tokens: Vec<String>,
    merges: Vec<String>,
    /// `(name, tensor)` in the order they were drawn, Hugging Face names (`model.layers.0...`).
    tensors: Vec<(String, Tensor)>,
}

impl TinyLlama {
    /// Draws the weights; the same seed draws the same weights. Norm weights are drawn around 1
    /// so that mixing up two norms changes the output.
    pub fn random(seed: u64) -> candle_core::Result<Self> {
        let mut rng = StdRng::seed_from_u64(seed);
        let (tokens, merges) = vocabulary();
        let vocab = tokens.len();
        let kv_dim = DIM / HEADS * KV_HEADS;
        let mut tensors = vec![(
            "model.embed_tokens.weight".to_string(),
            random_tensor(&mut rng, &[vocab, DIM], 0.0, 0.5)?,
        )];
        for i in 0..BLOCKS {
            for (name, dims) in [
                ("self_attn.q_proj", [DIM, DIM]),
                ("self_attn.k_proj", [kv_dim, DIM]),
                ("self_attn.v_proj", [kv_dim, DIM]),
                ("self_attn.o_proj", [DIM, DIM]),
                ("mlp.gate_proj", [FFN, DIM]),
                ("mlp.up_proj", [FFN, DIM]),
                ("mlp.down_proj", [DIM, FFN]),
            ] {
                tensors.push((
                    format!("model.layers.{i}.{name}.weight"),
                    random_tensor(&mut rng, &dims, 0.0, 0.2)?,
                ));
            }
            for name in ["input_layernorm", "post_attention_layernorm"] {
                tensors.push((
                    format!("model.layers.{i}.{name}.weight"),
                    random_tensor(&mut rng, &[DIM], 1.0, 0.3)?,
                ));
            }
        }
        tensors.push((
            "model.norm.weight".to_string(),
            random_tensor(&mut rng, &[DIM], 1.0, 0.3)?,
        ));
        Ok(Self {
            tokens,
            merges,
            tensors,
        })
    }

    /// Writes a GGUF file: llama.cpp names, query/key rows interleaved for llama.cpp's rotary
    /// layout, projections and embedding stored as `matrices` (e.g. `Q8_0`, or `F32` for an exact
    /// copy), norms as F32. The output projection is tied to the embedding.
    pub fn write_gguf(&self, path: &Path, matrices: GgmlDType) -> candle_core::Result<()> {
        let vocab = self.tokens.len();
        let mut token_types = vec![Value::I32(3); TINY_CONTROL_TOKENS.len()];
        token_types.resize(vocab, Value::I32(1));
        let string = |s: &str| Value::String(s.to_string());
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
            ("llama.rope.freq_base", Value::F32(ROPE_THETA)),
            (
                "llama.attention.layer_norm_rms_epsilon",
                Value::F32(RMS_EPS),
            ),
            ("tokenizer.ggml.model", string("gpt2")),
            ("tokenizer.ggml.pre", string("smollm")),
            (
                "tokenizer.ggml.tokens",
                Value::Array(self.tokens.iter().map(|t| string(t)).collect()),
            ),
            ("tokenizer.ggml.token_type", Value::Array(token_types)),
            (
                "tokenizer.ggml.merges",
                Value::Array(self.merges.iter().map(|m| string(m)).collect()),
            ),
            ("tokenizer.ggml.bos_token_id", Value::U32(1)),
            ("tokenizer.ggml.eos_token_id", Value::U32(2)),
            ("tokenizer.chat_template", string(CHAT_TEMPLATE)),
        ];
        let mut tensors: Vec<(String, QTensor)> = Vec::new();
        for (name, tensor) in &self.tensors {
            let gguf_name = gguf_tensor_name(name).ok_or_else(|| {
                candle_core::Error::Msg(format!("no llama.cpp name for `{name}`"))
            })?;
            let stored = if name.ends_with("q_proj.weight") {
                QTensor::quantize(&interleave_rotary_rows(tensor, HEADS)?, matrices)?
            } else if name.ends_with("k_proj.weight") {
                QTensor::quantize(&interleave_rotary_rows(tensor, KV_HEADS)?, matrices)?
            } else if tensor.rank() == 1 {
                QTensor::quantize(tensor, GgmlDType::F32)?
            } else {
                QTensor::quantize(tensor, matrices)?
            };
            tensors.push((gguf_name, stored));
        }
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensor_refs: Vec<(&str, &QTensor)> =
            tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        gguf_file::write(&mut file, &metadata_refs, &tensor_refs)?;
        std::io::Write::flush(&mut file)?;
        Ok(())
    }

    /// Writes a Hugging Face model directory (created if needed): `config.json` (llama, tied
    /// embeddings), `model.safetensors` with the weights as `dtype` (F32 for an exact copy),
    /// `tokenizer.json` built with the `tokenizers` crate, and `tokenizer_config.json` with the
    /// chat template and the BOS/EOS tokens.
    pub fn write_model_dir(&self, dir: &Path, dtype: DType) -> candle_core::Result<()> {
        std::fs::create_dir_all(dir)?;
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": DIM,
            "intermediate_size": FFN,
            "num_hidden_layers": BLOCKS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "vocab_size": self.tokens.len(),
            "max_position_embeddings": TINY_CONTEXT,
            "rms_norm_eps": RMS_EPS,
            "rope_theta": ROPE_THETA,
            "tie_word_embeddings": true,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "torch_dtype": match dtype {
                DType::BF16 => "bfloat16",
                DType::F16 => "float16",
                _ => "float32",
            },
        });
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config).map_err(candle_core::Error::wrap)?,
        )?;
        let tensors = self
            .tensors
            .iter()
            .map(|(name, tensor)| Ok((name.clone(), tensor.to_dtype(dtype)?)))
            .collect::<candle_core::Result<HashMap<String, Tensor>>>()?;
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        self.tokenizer()?
            .save(dir.join("tokenizer.json"), true)
            .map_err(|e| candle_core::Error::Msg(format!("writing tokenizer.json: {e}")))?;
        let tokenizer_config = serde_json::json!({
            "bos_token": TINY_CONTROL_TOKENS[1],
            "eos_token": TINY_CONTROL_TOKENS[2],
            "chat_template": CHAT_TEMPLATE,
        });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tokenizer_config).map_err(candle_core::Error::wrap)?,
        )?;
        Ok(())
    }

    /// The byte-level BPE tokenizer of the vocabulary, as `tokenizer.json` describes it.
    fn tokenizer(&self) -> candle_core::Result<Tokenizer> {
        let vocab: tokenizers::models::bpe::Vocab = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = self
            .merges
            .iter()
            .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| candle_core::Error::Msg(format!("building the tiny tokenizer: {e}")))?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre: Vec<PreTokenizerWrapper> = vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ];
        tokenizer.with_pre_tokenizer(Some(Sequence::new(pre)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        let control: Vec<AddedToken> = TINY_CONTROL_TOKENS
            .iter()
            .map(|t| AddedToken::from(t.to_string(), true))
            .collect();
        tokenizer.add_special_tokens(&control);
        Ok(tokenizer)
    }
}

/// Writes the tiny model to `path` as a GGUF file with Q8_0 matrices; the same seed writes the
/// same file.
pub fn write_tiny_llama(path: &Path, seed: u64) -> candle_core::Result<()> {
    TinyLlama::random(seed)?.write_gguf(path, GgmlDType::Q8_0)
}

/// Writes the tiny model of `seed` as a Hugging Face model directory with f32 weights (the same
/// weights [`write_tiny_llama`] writes for that seed).
pub fn write_tiny_model_dir(dir: &Path, seed: u64) -> candle_core::Result<()> {
    TinyLlama::random(seed)?.write_model_dir(dir, DType::F32)
}
