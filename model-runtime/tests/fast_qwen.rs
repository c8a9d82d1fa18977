//! The fast backend's qwen2 (biases) and qwen3 (QK-norm) forward passes on tiny random GGUF
//! files with K-quant, Q5_0 and Q8_0 matrices, against candle's quantized qwen2 and qwen3 on the
//! same files.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_qwen2, quantized_qwen3};
use flowbot_model_runtime::fast::{Arch, FastLlama, FastOptions, Isa};
use flowbot_model_runtime::lm::CausalLm;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VOCAB: usize = 300;
const DIM: usize = 256;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 64;
const FFN: usize = 512;
const LAYERS: usize = 2;

fn tiny_qwen(arch: &str, seed: u64) -> Vec<u8> {
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

const TOKENS: [u32; 10] = [1, 17, 200, 45, 45, 3, 298, 120, 77, 5];

fn candle_logits(arch: &str, bytes: &[u8]) -> Vec<f32> {
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

#[test]
fn qwen2_and_qwen3_logits_agree_with_candle() {
    for (arch, expected) in [("qwen2", Arch::Qwen2), ("qwen3", Arch::Qwen3)] {
        let bytes = tiny_qwen(arch, 8);
        let want = candle_logits(arch, &bytes);
        assert_eq!(want.len(), VOCAB, "{arch}");
        let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for isa in Isa::available() {
            let mut lm = FastLlama::from_reader(
                &mut Cursor::new(&bytes),
                &FastOptions {
                    threads: Some(2),
                    isa: Some(isa),
                },
            )
            .unwrap();
            assert_eq!(lm.hyper().arch, expected);
            let got = lm.forward(&TOKENS, 0).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 0.03 * range,
                "{arch} {isa:?}: max diff {worst}, logit range {range}"
            );
        }
    }
}
