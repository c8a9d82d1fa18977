//! A tiny random gemma3 model, written as a GGUF file and kept in the Hugging Face layout, and
//! candle's gemma3 forward over it: the reference the gemma3 forward passes are held to.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::gemma3;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const VOCAB: usize = 300;
pub const DIM: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 32;
pub const FFN: usize = 128;
/// Seven layers: the sixth is global, the others slide.
pub const LAYERS: usize = 7;
/// A window shorter than the prompt, so that the sliding layers drop positions.
pub const WINDOW: usize = 5;
pub const EPS: f64 = 1e-6;

pub struct TinyGemma {
    /// Hugging Face name -> weights (already rounded through Q8_0 for the matrices, so that both
    /// implementations see the same values).
    pub hf: HashMap<String, Tensor>,
    pub gguf: Vec<u8>,
}

fn random(rng: &mut StdRng, dims: &[usize], center: f32, scale: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| center + rng.gen_range(-scale..scale))
        .collect();
    Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
}

pub fn tiny_gemma(seed: u64) -> TinyGemma {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut hf = HashMap::new();
    let mut gguf_tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix =
        |rng: &mut StdRng, hf_name: String, gguf_name: String, dims: [usize; 2], scale: f32| {
            let q = QTensor::quantize(&random(rng, &dims, 0.0, scale), GgmlDType::Q8_0).unwrap();
            hf.insert(hf_name, q.dequantize(&Device::Cpu).unwrap());
            gguf_tensors.push((gguf_name, q));
        };
    matrix(
        &mut rng,
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        [VOCAB, DIM],
        0.5,
    );
    for l in 0..LAYERS {
        for (hf_name, gguf_name, dims) in [
            ("self_attn.q_proj", "attn_q", [HEADS * HEAD_DIM, DIM]),
            ("self_attn.k_proj", "attn_k", [KV_HEADS * HEAD_DIM, DIM]),
            ("self_attn.v_proj", "attn_v", [KV_HEADS * HEAD_DIM, DIM]),
            ("self_attn.o_proj", "attn_output", [DIM, HEADS * HEAD_DIM]),
            ("mlp.gate_proj", "ffn_gate", [FFN, DIM]),
            ("mlp.up_proj", "ffn_up", [FFN, DIM]),
            ("mlp.down_proj", "ffn_down", [DIM, FFN]),
        ] {
            matrix(
                &mut rng,
                format!("model.layers.{l}.{hf_name}.weight"),
                format!("blk.{l}.{gguf_name}.weight"),
                dims,
                0.25,
            );
        }
    }
    // Norms: Hugging Face stores w and computes with 1 + w; the GGUF converter stores 1 + w.
    let mut norm = |rng: &mut StdRng, hf_name: String, gguf_name: String, len: usize| {
        let w = random(rng, &[len], 0.0, 0.3);
        let stored = QTensor::quantize(&(&w + 1.0).unwrap(), GgmlDType::F32).unwrap();
        hf.insert(hf_name, w);
        gguf_tensors.push((gguf_name, stored));
    };
    for l in 0..LAYERS {
        for (hf_name, gguf_name, len) in [
            ("input_layernorm", "attn_norm", DIM),
            ("post_attention_layernorm", "post_attention_norm", DIM),
            ("pre_feedforward_layernorm", "ffn_norm", DIM),
            ("post_feedforward_layernorm", "post_ffw_norm", DIM),
            ("self_attn.q_norm", "attn_q_norm", HEAD_DIM),
            ("self_attn.k_norm", "attn_k_norm", HEAD_DIM),
        ] {
            norm(
                &mut rng,
                format!("model.layers.{l}.{hf_name}.weight"),
                format!("blk.{l}.{gguf_name}.weight"),
                len,
            );
        }
    }
    norm(
        &mut rng,
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        DIM,
    );
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("gemma3".into())),
        ("gemma3.block_count", Value::U32(LAYERS as u32)),
        ("gemma3.embedding_length", Value::U32(DIM as u32)),
        ("gemma3.feed_forward_length", Value::U32(FFN as u32)),
        ("gemma3.context_length", Value::U32(128)),
        ("gemma3.attention.head_count", Value::U32(HEADS as u32)),
        (
            "gemma3.attention.head_count_kv",
            Value::U32(KV_HEADS as u32),
        ),
        ("gemma3.attention.key_length", Value::U32(HEAD_DIM as u32)),
        ("gemma3.attention.value_length", Value::U32(HEAD_DIM as u32)),
        (
            "gemma3.attention.layer_norm_rms_epsilon",
            Value::F32(EPS as f32),
        ),
        ("gemma3.attention.sliding_window", Value::U32(WINDOW as u32)),
        ("gemma3.rope.freq_base", Value::F32(1_000_000.0)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = gguf_tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    TinyGemma {
        hf,
        gguf: out.into_inner(),
    }
}

/// candle's gemma3 logits for the last of `tokens`, fed one token at a time (candle's gemma3
/// cannot append a multi-token prompt to the cache of its global layers; one at a time, its
/// rotating cache of `sliding_window` positions is llama.cpp's window).
pub fn candle_logits(model: &TinyGemma, tokens: &[u32]) -> Vec<f32> {
    let config: gemma3::Config = serde_json::from_value(serde_json::json!({
        "attention_bias": false,
        "head_dim": HEAD_DIM,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": DIM,
        "intermediate_size": FFN,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": EPS,
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "vocab_size": VOCAB,
        "final_logit_softcapping": null,
        "attn_logit_softcapping": null,
        "query_pre_attn_scalar": HEAD_DIM,
        "sliding_window": WINDOW,
        "sliding_window_pattern": 6,
        "max_position_embeddings": 128,
    }))
    .unwrap();
    let vb = VarBuilder::from_tensors(model.hf.clone(), DType::F32, &Device::Cpu);
    let mut gemma = gemma3::Model::new(false, &config, vb).unwrap();
    let mut logits = Vec::new();
    for (pos, &token) in tokens.iter().enumerate() {
        let input = Tensor::new(&[token], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        logits = gemma
            .forward(&input, pos)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
    }
    logits
}
