//! Tiny random qwen2 and qwen3 GGUF files, and candle's quantized qwen2 and qwen3 over them: the
//! reference the qwen forward passes are held to.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_qwen2, quantized_qwen3};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const VOCAB: usize = 300;
pub const DIM: usize = 256;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 64;
pub const FFN: usize = 512;
pub const LAYERS: usize = 2;

/// A tiny random `qwen2` (biases) or `qwen3` (QK-norm) GGUF file with K-quant, Q5_0 and Q8_0
/// matrices.
pub fn tiny_qwen(arch: &str, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut random = |dims: &[usize], center: f32, scale: f32| -> Tensor {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| center + rng.gen_range(-scale..scale))
            .collect();
        Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
    };
    let q = |t: Tensor, dtype: GgmlDType| QTensor::quantize(&t, dtype).unwrap();
    let mut tensors: Vec<(String, QTensor)> = vec![
        (
            "token_embd.weight".into(),
            q(random(&[VOCAB, DIM], 0.0, 1.0), GgmlDType::Q8_0),
        ),
        (
            "output_norm.weight".into(),
            q(random(&[DIM], 1.0, 0.2), GgmlDType::F32),
        ),
    ];
    for l in 0..LAYERS {
        let name = |t: &str| format!("blk.{l}.{t}");
        for (t, dims, dtype) in [
            ("attn_q.weight", [HEADS * HEAD_DIM, DIM], GgmlDType::Q4K),
            ("attn_k.weight", [KV_HEADS * HEAD_DIM, DIM], GgmlDType::Q5_0),
            ("attn_v.weight", [KV_HEADS * HEAD_DIM, DIM], GgmlDType::Q8_0),
            (
                "attn_output.weight",
                [DIM, HEADS * HEAD_DIM],
                GgmlDType::Q4K,
            ),
            ("ffn_gate.weight", [FFN, DIM], GgmlDType::Q5_0),
            ("ffn_up.weight", [FFN, DIM], GgmlDType::Q4_0),
            ("ffn_down.weight", [DIM, FFN], GgmlDType::Q6K),
        ] {
            tensors.push((name(t), q(random(&dims, 0.0, 0.05), dtype)));
        }
        tensors.push((
            name("attn_norm.weight"),
            q(random(&[DIM], 1.0, 0.2), GgmlDType::F32),
        ));
        tensors.push((
            name("ffn_norm.weight"),
            q(random(&[DIM], 1.0, 0.2), GgmlDType::F32),
        ));
        if arch == "qwen2" {
            for (t, len) in [
                ("attn_q.bias", HEADS * HEAD_DIM),
                ("attn_k.bias", KV_HEADS * HEAD_DIM),
                ("attn_v.bias", KV_HEADS * HEAD_DIM),
            ] {
                tensors.push((name(t), q(random(&[len], 0.0, 0.5), GgmlDType::F32)));
            }
        } else {
            for t in ["attn_q_norm.weight", "attn_k_norm.weight"] {
                tensors.push((name(t), q(random(&[HEAD_DIM], 1.0, 0.2), GgmlDType::F32)));
            }
        }
    }
    let key = |k: &str| format!("{arch}.{k}");
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (key("block_count"), Value::U32(LAYERS as u32)),
        (key("embedding_length"), Value::U32(DIM as u32)),
        (key("feed_forward_length"), Value::U32(FFN as u32)),
        (key("context_length"), Value::U32(64)),
        (key("attention.head_count"), Value::U32(HEADS as u32)),
        (key("attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (key("attention.key_length"), Value::U32(HEAD_DIM as u32)),
        (key("attention.value_length"), Value::U32(HEAD_DIM as u32)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (key("rope.freq_base"), Value::F32(1_000_000.0)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    out.into_inner()
}

pub const TOKENS: [u32; 10] = [1, 17, 200, 45, 45, 3, 298, 120, 77, 5];

/// candle's quantized qwen2 or qwen3 logits for the last of `TOKENS`.
pub fn candle_logits(arch: &str, bytes: &[u8]) -> Vec<f32> {
    let mut reader = Cursor::new(bytes);
    let content = Content::read(&mut reader).unwrap();
    let input = Tensor::new(&TOKENS, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = if arch == "qwen2" {
        let mut model =
            quantized_qwen2::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
        model.forward(&input, 0).unwrap()
    } else {
        let mut model =
            quantized_qwen3::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
        model.forward(&input, 0).unwrap()
    };
    logits.flatten_all().unwrap().to_vec1().unwrap()
}
