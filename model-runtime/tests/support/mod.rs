//! Shared helpers of the model-runtime integration tests.
#![allow(dead_code)]

pub mod gemma3;
pub mod qwen;

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;

/// The default model: `$FLOWBOT_MODEL`, else the model cache's
/// `SmolLM2-135M-Instruct.Q4_1.gguf`. Panics (the test fails) when it is missing: CI fetches it
/// first.
pub fn default_model() -> PathBuf {
    let path = std::env::var_os("FLOWBOT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            flowbot_model_runtime::fetch::default_model_path(
                &flowbot_model_runtime::fetch::model_cache_dir(),
            )
        });
    assert!(
        path.is_file(),
        "model {} not found: set FLOWBOT_MODEL or fetch the default model (flowbot model fetch)",
        path.display()
    );
    path
}

/// Shape of a tiny random llama written for tests.
pub struct TinyModel {
    /// Format of the projection matrices.
    pub dtype: candle_core::quantized::GgmlDType,
    /// Whether the file has its own `output.weight` (else the embedding is tied).
    pub untied_output: bool,
    /// `llama.context_length`.
    pub context: u32,
}

/// Writes a seeded random llama GGUF (vocab 299, dim 64, 2 layers, 4 heads / 2 KV heads, ffn 128,
/// rope dim 16) and returns its bytes.
pub fn tiny_gguf(spec: &TinyModel, seed: u64) -> Vec<u8> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (vocab, dim, layers, heads, kv_heads, ffn) =
        (299usize, 64usize, 2usize, 4usize, 2usize, 128usize);
    let head_dim = dim / heads;
    let mut random = |dims: &[usize], scale: f32| -> Tensor {
        let n: usize = dims.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.gen_range(-scale..scale)).collect();
        Tensor::from_vec(data, dims, &Device::Cpu).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let quant = |t: Tensor, dtype: GgmlDType| QTensor::quantize(&t, dtype).unwrap();
    tensors.push((
        "token_embd.weight".into(),
        quant(random(&[vocab, dim], 1.0), GgmlDType::Q8_0),
    ));
    if spec.untied_output {
        tensors.push((
            "output.weight".into(),
            quant(random(&[vocab, dim], 0.3), spec.dtype),
        ));
    }
    let norm = |rng_t: Tensor| QTensor::quantize(&(rng_t + 1.0).unwrap(), GgmlDType::F32).unwrap();
    tensors.push(("output_norm.weight".into(), norm(random(&[dim], 0.2))));
    for l in 0..layers {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        tensors.push((p("attn_norm"), norm(random(&[dim], 0.2))));
        tensors.push((p("ffn_norm"), norm(random(&[dim], 0.2))));
        tensors.push((
            p("attn_q"),
            quant(random(&[heads * head_dim, dim], 0.3), spec.dtype),
        ));
        tensors.push((
            p("attn_k"),
            quant(random(&[kv_heads * head_dim, dim], 0.3), spec.dtype),
        ));
        tensors.push((
            p("attn_v"),
            quant(random(&[kv_heads * head_dim, dim], 0.3), spec.dtype),
        ));
        tensors.push((
            p("attn_output"),
            quant(random(&[dim, heads * head_dim], 0.3), spec.dtype),
        ));
        tensors.push((p("ffn_gate"), quant(random(&[ffn, dim], 0.3), spec.dtype)));
        tensors.push((p("ffn_up"), quant(random(&[ffn, dim], 0.3), spec.dtype)));
        tensors.push((p("ffn_down"), quant(random(&[dim, ffn], 0.3), spec.dtype)));
    }
    let metadata: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(spec.context)),
    ];
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md, &ts).unwrap();
    out.into_inner()
}

/// Fine-tuning examples sharing a prefix (as a system prompt is shared); the answer copies three
/// of the prompt's tokens, so it depends on the prompt. Two parts: the first token, the rest.
pub fn copying_examples(
    count: usize,
    seed: u64,
) -> Vec<flowbot_model_runtime::finetune::TrainExample> {
    use flowbot_model_runtime::finetune::{AnswerPart, TrainExample};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut prompt = vec![1, 40, 41, 42, 43];
            prompt.extend((0..6).map(|_| rng.gen_range(3..250u32)));
            let answer = vec![prompt[6], prompt[8], prompt[10], 2];
            TrainExample {
                prompt,
                answer,
                parts: vec![
                    AnswerPart {
                        name: "first".into(),
                        tokens: 0..1,
                    },
                    AnswerPart {
                        name: "rest".into(),
                        tokens: 1..4,
                    },
                ],
            }
        })
        .collect()
}
