//! LoRA adapters applied at run time: each adapted projection adds `B (A x) · alpha / rank` to
//! its quantized base's output, computed in f32 from the same input.
//!
//! The file is a GGUF adapter in llama.cpp's layout: `general.type = "adapter"`,
//! `adapter.type = "lora"`, `adapter.lora.alpha`, and for an adapted projection
//! `blk.N.PROJECTION.weight.lora_a` (rank × in) and `.lora_b` (out × rank). `flowbot model
//! finetune --method lora` writes one beside the merged model; `flowbot.adapter.base_sha256`,
//! when present, names the model it was trained on.
//!
//! An adapter costs `rank · (in + out)` multiply-adds per projection and token against the
//! projection's `in · out`: about 2% of a SmolLM2-135M forward pass at rank 8. The base weights
//! stay shared and untouched, so the same file serves with and without the adapter.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::kernels::{Isa, Kernels, QActs, QFormat, QMatrix};
use super::llama::Hyper;
use crate::lm::{candle_message, LmError};

/// Metadata key of the SHA-256 of the model an adapter was trained on.
pub const BASE_SHA256_KEY: &str = "flowbot.adapter.base_sha256";

/// Rows from which the update of a pass is spread over the model's threads.
const PARALLEL_ROWS: usize = 8;

/// Where in a block an adapted projection's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// The stacked query, key and value outputs.
    Qkv,
    /// The attention output projection.
    AttnOutput,
    /// The stacked gate and up outputs.
    GateUp,
    /// The feed-forward down projection.
    Down,
}

/// One projection's update `out[offset..offset + output] += scale · B (A x)`. Decoding reads
/// every weight once per token, so an adapter costs the bytes it adds to that read: in f32 a
/// rank-8 adapter of SmolLM2-135M added about 10% to the Q4_1 base's bytes and slowed decoding
/// as much. `A` is kept in Q8_0 and multiplied with the projection's quantized input by the
/// model's kernels; `B` in bfloat16, which widens to f32 with a shift.
#[derive(Debug, Clone)]
pub(crate) struct LowRank {
    /// Column of the site's output where this projection's output starts.
    offset: usize,
    /// `A`, rank × input, Q8_0.
    a: QMatrix,
    /// `B` transposed, rank × output, as bfloat16 bits: the update adds `scale · (A x)[r]`
    /// times row `r`, a loop over the output that vectorizes.
    b_t: Vec<u16>,
    output: usize,
    scale: f32,
}

/// The updates of one block, by site.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockLora {
    updates: Vec<(Site, LowRank)>,
}

impl BlockLora {
    /// Adds the updates of `site` for every row of `acts` (the site's input as the projection
    /// read it, quantized) into `out` (each row `width` wide).
    pub(crate) fn apply(
        &self,
        site: Site,
        kernels: &Kernels,
        acts: &QActs,
        out: &mut [f32],
        width: usize,
    ) {
        for (_, update) in self.updates.iter().filter(|(s, _)| *s == site) {
            update.apply(kernels, acts, out, width);
        }
    }
}

impl LowRank {
    fn apply(&self, kernels: &Kernels, acts: &QActs, out: &mut [f32], width: usize) {
        let rows = acts.rows();
        let out = &mut out[..rows * width];
        let row = |(t, out): (usize, &mut [f32])| {
            let out = &mut out[self.offset..self.offset + self.output];
            for r in 0..self.a.rows() {
                let low = kernels.dot(&self.a, r, acts.row(t)) * self.scale;
                let b = &self.b_t[r * self.output..(r + 1) * self.output];
                add_scaled_bf16(out, low, b, kernels.isa() != Isa::Scalar);
            }
        };
        if rows >= PARALLEL_ROWS {
            out.par_chunks_exact_mut(width).enumerate().for_each(row);
        } else {
            out.chunks_exact_mut(width).enumerate().for_each(row);
        }
    }
}

/// `out += factor · b` with `b` in bfloat16 bits; `wide` runs the AVX2 build of the loop.
fn add_scaled_bf16(out: &mut [f32], factor: f32, b: &[u16], wide: bool) {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is set only when the CPU runs the AVX2 kernels.
        unsafe { add_scaled_bf16_avx2(out, factor, b) };
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = wide;
    add_scaled_bf16_generic(out, factor, b);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_scaled_bf16_avx2(out: &mut [f32], factor: f32, b: &[u16]) {
    add_scaled_bf16_generic(out, factor, b)
}

#[inline(always)]
fn add_scaled_bf16_generic(out: &mut [f32], factor: f32, b: &[u16]) {
    for (o, &b) in out.iter_mut().zip(b) {
        *o += factor * f32::from_bits(u32::from(b) << 16);
    }
}

/// The bfloat16 bits of `v`, rounded to nearest even.
fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// The largest rank an adapter may have.
pub const MAX_RANK: usize = 256;

/// `m` (`rows` × `cols`, row-major f32) in Q8_0 in the kernel layout; `cols` must be a multiple
/// of 32.
fn q8_0(m: &[f32], rows: usize, cols: usize) -> Result<QMatrix, String> {
    let bytes = Tensor::from_slice(m, (rows, cols), &Device::Cpu)
        .and_then(|t| QTensor::quantize(&t, GgmlDType::Q8_0))
        .and_then(|q| q.data().map(|d| d.into_owned()))
        .map_err(|e| candle_message(&e))?;
    QMatrix::from_gguf_vec(QFormat::Q8_0, rows, cols, bytes).map_err(|e| e.to_string())
}

/// A LoRA adapter read from a GGUF file, not yet checked against a model.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    architecture: String,
    alpha: f32,
    base_sha256: Option<String>,
    tensors: Vec<AdaptedProjection>,
}

/// One adapted projection as read: `a` is rank × input, `b` output × rank.
#[derive(Debug, Clone)]
struct AdaptedProjection {
    block: usize,
    projection: String,
    rank: usize,
    input: usize,
    output: usize,
    a: Vec<f32>,
    b: Vec<f32>,
}

/// The projections an adapter may change, in the order of their sites' outputs.
const PROJECTIONS: [&str; 7] = [
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

fn load_err(path: &Path, message: impl std::fmt::Display) -> LmError {
    LmError::Load(format!("{}: {message}", path.display()))
}

/// Whether the file at `path` is a GGUF adapter (`general.type` "adapter") rather than a model.
pub fn is_adapter_file(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    crate::gguf::read_content(&mut BufReader::new(file)).is_ok_and(|content| {
        content
            .metadata
            .get("general.type")
            .and_then(|v| v.to_string().ok())
            .is_some_and(|t| t == "adapter")
    })
}

impl LoraAdapter {
    /// Reads the adapter at `path`.
    pub fn load(path: &Path) -> Result<LoraAdapter, LmError> {
        if path.is_dir() {
            return Err(load_err(
                path,
                "is a folder; an adapter is a GGUF file (the `adapter.gguf` fine-tuning writes)",
            ));
        }
        let file = File::open(path).map_err(|e| load_err(path, e))?;
        let mut reader = BufReader::new(file);
        Self::from_reader(&mut reader).map_err(|message| load_err(path, message))
    }

    fn from_reader<R: Read + Seek>(reader: &mut R) -> Result<LoraAdapter, String> {
        let content = crate::gguf::read_content(reader)
            .map_err(|e| format!("not a readable GGUF file: {e}"))?;
        let text = |key: &str| -> Option<String> {
            content
                .metadata
                .get(key)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        if text("general.type").as_deref() != Some("adapter")
            || text("adapter.type").as_deref() != Some("lora")
        {
            return Err(
                "not a LoRA adapter (`general.type` must be \"adapter\" and `adapter.type` \
                 \"lora\"); a tuned model is given with --model"
                    .into(),
            );
        }
        let architecture =
            text("general.architecture").ok_or("the adapter has no `general.architecture`")?;
        let alpha = content
            .metadata
            .get("adapter.lora.alpha")
            .and_then(|v| v.to_f32().ok())
            .ok_or("the adapter has no f32 `adapter.lora.alpha`")?;
        let mut tensors = Vec::new();
        let mut names: Vec<&String> = content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let Some(stem) = name.strip_suffix(".weight.lora_a") else {
                if name.ends_with(".weight.lora_b") {
                    continue;
                }
                return Err(format!(
                    "tensor `{name}` is not a LoRA tensor (`blk.N.PROJECTION.weight.lora_a` or \
                     `.lora_b`)"
                ));
            };
            let (block, projection) = stem
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(n, p)| Some((n.parse::<usize>().ok()?, p)))
                .filter(|(_, p)| PROJECTIONS.contains(p))
                .ok_or_else(|| {
                    format!(
                        "tensor `{name}`: not a projection this backend adapts ({})",
                        PROJECTIONS.join(", ")
                    )
                })?;
            let (a, a_dims) = read_f32(&content, reader, name)?;
            let b_name = format!("{stem}.weight.lora_b");
            if !content.tensor_infos.contains_key(&b_name) {
                return Err(format!("tensor `{name}` has no `{b_name}`"));
            }
            let (b, b_dims) = read_f32(&content, reader, &b_name)?;
            let ([rank, input], [output, b_rank]) = (a_dims, b_dims);
            if rank != b_rank || rank == 0 || rank > MAX_RANK {
                return Err(format!(
                    "`{name}` has rank {rank} and `{b_name}` rank {b_rank}; they must agree and \
                     be between 1 and {MAX_RANK}"
                ));
            }
            tensors.push(AdaptedProjection {
                block,
                projection: projection.to_owned(),
                rank,
                input,
                output,
                a,
                b,
            });
        }
        for name in content.tensor_infos.keys() {
            if let Some(stem) = name.strip_suffix(".weight.lora_b") {
                if !content
                    .tensor_infos
                    .contains_key(&format!("{stem}.weight.lora_a"))
                {
                    return Err(format!("tensor `{name}` has no `{stem}.weight.lora_a`"));
                }
            }
        }
        if tensors.is_empty() {
            return Err("the adapter has no LoRA tensors".into());
        }
        Ok(LoraAdapter {
            architecture,
            alpha,
            base_sha256: text(BASE_SHA256_KEY),
            tensors,
        })
    }

    /// The SHA-256 of the model the adapter was trained on, when the file records it.
    pub fn base_sha256(&self) -> Option<&str> {
        self.base_sha256.as_deref()
    }

    /// The updates of each block of a model of `hyper`, or why the adapter does not fit it.
    pub(crate) fn blocks(&self, hyper: &Hyper) -> Result<Vec<BlockLora>, String> {
        if self.architecture != hyper.arch.name() {
            return Err(format!(
                "the adapter is for a `{}` model, this one is `{}`",
                self.architecture,
                hyper.arch.name()
            ));
        }
        let (q_dim, kv_dim) = (
            hyper.n_head * hyper.head_dim,
            hyper.n_kv_head * hyper.head_dim,
        );
        let mut blocks = vec![BlockLora::default(); hyper.n_layer];
        for t in &self.tensors {
            let (site, offset, input, output) = match t.projection.as_str() {
                "attn_q" => (Site::Qkv, 0, hyper.dim, q_dim),
                "attn_k" => (Site::Qkv, q_dim, hyper.dim, kv_dim),
                "attn_v" => (Site::Qkv, q_dim + kv_dim, hyper.dim, kv_dim),
                "attn_output" => (Site::AttnOutput, 0, q_dim, hyper.dim),
                "ffn_gate" => (Site::GateUp, 0, hyper.dim, hyper.ffn_dim),
                "ffn_up" => (Site::GateUp, hyper.ffn_dim, hyper.dim, hyper.ffn_dim),
                _ => (Site::Down, 0, hyper.ffn_dim, hyper.dim),
            };
            let name = format!("blk.{}.{}", t.block, t.projection);
            let block = blocks
                .get_mut(t.block)
                .ok_or_else(|| format!("`{name}`: the model has {} blocks", hyper.n_layer))?;
            if (t.input, t.output) != (input, output) {
                return Err(format!(
                    "`{name}` adapts a {}→{} projection, the model's is {input}→{output}",
                    t.input, t.output
                ));
            }
            let quantized = |m: &[f32], rows, cols| {
                q8_0(m, rows, cols).map_err(|e| {
                    format!(
                        "`{name}`: {e} (the fast backend keeps adapters in blocks of 32 values)"
                    )
                })
            };
            block.updates.push((
                site,
                LowRank {
                    offset,
                    a: quantized(&t.a, t.rank, input)?,
                    b_t: transpose(&t.b, t.output, t.rank)
                        .into_iter()
                        .map(bf16_bits)
                        .collect(),
                    output,
                    scale: self.alpha / t.rank as f32,
                },
            ));
        }
        Ok(blocks)
    }
}

/// The `cols` × `rows` transpose of the row-major `rows` × `cols` matrix `m`.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// Tensor `name` as f32 with its two dimensions (rows, columns).
fn read_f32<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
    name: &str,
) -> Result<(Vec<f32>, [usize; 2]), String> {
    let tensor = content
        .tensor(reader, name, &Device::Cpu)
        .and_then(|t| t.dequantize(&Device::Cpu))
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| format!("tensor `{name}`: {}", candle_message(&e)))?;
    let dims: [usize; 2] = tensor
        .dims()
        .try_into()
        .map_err(|_| format!("tensor `{name}` is {:?}, not a matrix", tensor.dims()))?;
    let values = tensor
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| format!("tensor `{name}`: {}", candle_message(&e)))?;
    Ok((values, dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::{self, Value};
    use std::io::Cursor;

    #[test]
    fn bfloat16_rounds_to_nearest_even() {
        assert_eq!(bf16_bits(1.0), 0x3f80);
        assert_eq!(bf16_bits(-2.5), 0xc020);
        // 1 + 2^-8 lies halfway between 1 and the next bfloat16: ties go to the even 1.0; a bit
        // more rounds up.
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0 + 1.0 / 65536.0), 0x3f81);
        for v in [0.1f32, -3.7, 1e-3, 65504.0] {
            let back = f32::from_bits(u32::from(bf16_bits(v)) << 16);
            assert!((back - v).abs() <= v.abs() / 256.0, "{v} -> {back}");
        }
    }

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let m = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(transpose(&m, 2, 3), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    /// A tensor of an adapter file: name, rows, columns.
    type Shape<'a> = (&'a str, usize, usize);

    /// An adapter file of zero `tensors` with the given `general.type`.
    fn adapter_bytes(kind: &str, tensors: &[Shape<'_>]) -> Vec<u8> {
        let metadata = [
            ("general.architecture", Value::String("llama".into())),
            ("general.type", Value::String(kind.into())),
            ("adapter.type", Value::String("lora".into())),
            ("adapter.lora.alpha", Value::F32(8.0)),
        ];
        let tensors: Vec<(&str, QTensor)> = tensors
            .iter()
            .map(|&(name, rows, cols)| {
                let t = Tensor::zeros((rows, cols), DType::F32, &Device::Cpu).unwrap();
                (name, QTensor::quantize(&t, GgmlDType::F32).unwrap())
            })
            .collect();
        let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &md, &ts).unwrap();
        out.into_inner()
    }

    fn read(bytes: Vec<u8>) -> Result<LoraAdapter, String> {
        LoraAdapter::from_reader(&mut Cursor::new(bytes))
    }

    #[test]
    fn malformed_adapters_are_refused_with_the_tensor_at_fault() {
        let a = "blk.0.attn_q.weight.lora_a";
        let b = "blk.0.attn_q.weight.lora_b";
        let adapter = read(adapter_bytes("adapter", &[(a, 4, 64), (b, 64, 4)])).unwrap();
        assert_eq!(adapter.tensors.len(), 1);
        assert_eq!(adapter.tensors[0].rank, 4);
        let cases: [(&str, Vec<Shape<'_>>, &str); 6] = [
            ("model", vec![(a, 4, 64), (b, 64, 4)], "not a LoRA adapter"),
            (
                "adapter",
                vec![(a, 4, 64)],
                "has no `blk.0.attn_q.weight.lora_b`",
            ),
            (
                "adapter",
                vec![(b, 64, 4)],
                "has no `blk.0.attn_q.weight.lora_a`",
            ),
            ("adapter", vec![(a, 4, 64), (b, 64, 2)], "rank 4 and"),
            (
                "adapter",
                vec![("blk.0.attn_x.weight.lora_a", 4, 64)],
                "not a projection this backend adapts",
            ),
            (
                "adapter",
                vec![("token_embd.weight", 4, 64)],
                "not a LoRA tensor",
            ),
        ];
        for (kind, tensors, wanted) in cases {
            let error = read(adapter_bytes(kind, &tensors)).unwrap_err();
            assert!(error.contains(wanted), "{tensors:?}: {error}");
        }
        let error = read(adapter_bytes("adapter", &[])).unwrap_err();
        assert!(error.contains("no LoRA tensors"), "{error}");
        let error = read(b"GGUF but cut".to_vec()).unwrap_err();
        assert!(error.contains("not a readable GGUF file"), "{error}");
    }
}
