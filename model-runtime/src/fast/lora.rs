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
use candle_core::{DType, Device};
use rayon::prelude::*;

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

/// One projection's update `out[offset..offset + out_dim] += scale · B (A x)`.
#[derive(Debug, Clone)]
pub(crate) struct LowRank {
    /// Column of the site's output where this projection's output starts.
    offset: usize,
    rank: usize,
    input: usize,
    output: usize,
    /// rank × input.
    a: Vec<f32>,
    /// output × rank.
    b: Vec<f32>,
    scale: f32,
}

/// The updates of one block, by site.
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockLora {
    updates: Vec<(Site, LowRank)>,
}

impl BlockLora {
    /// Adds the updates of `site` for `rows` rows of `x` (each `input` wide) into `out` (each
    /// row `width` wide). `wide` selects the AVX2 build of the loops.
    pub(crate) fn apply(
        &self,
        site: Site,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        width: usize,
        wide: bool,
    ) {
        for (_, update) in self.updates.iter().filter(|(s, _)| *s == site) {
            update.apply(x, rows, out, width, wide);
        }
    }
}

impl LowRank {
    fn apply(&self, x: &[f32], rows: usize, out: &mut [f32], width: usize, wide: bool) {
        let x = &x[..rows * self.input];
        let out = &mut out[..rows * width];
        let row = |(x, out): (&[f32], &mut [f32])| self.apply_row(x, out, wide);
        if rows >= PARALLEL_ROWS {
            x.par_chunks_exact(self.input)
                .zip(out.par_chunks_exact_mut(width))
                .for_each(row);
        } else {
            x.chunks_exact(self.input)
                .zip(out.chunks_exact_mut(width))
                .for_each(row);
        }
    }

    fn apply_row(&self, x: &[f32], out: &mut [f32], wide: bool) {
        #[cfg(target_arch = "x86_64")]
        if wide {
            // SAFETY: `wide` is set only when the CPU runs the AVX2 kernels.
            unsafe { self.apply_row_avx2(x, out) };
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = wide;
        self.apply_row_generic(x, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_row_avx2(&self, x: &[f32], out: &mut [f32]) {
        self.apply_row_generic(x, out)
    }

    #[inline(always)]
    fn apply_row_generic(&self, x: &[f32], out: &mut [f32]) {
        let mut low = [0f32; MAX_RANK];
        for (r, a) in self.a.chunks_exact(self.input).enumerate() {
            low[r] = dot(a, x) * self.scale;
        }
        let low = &low[..self.rank];
        let out = &mut out[self.offset..self.offset + self.output];
        for (o, b) in out.iter_mut().zip(self.b.chunks_exact(self.rank)) {
            *o += b.iter().zip(low).map(|(b, l)| b * l).sum::<f32>();
        }
    }
}

/// The largest rank an adapter may have.
pub const MAX_RANK: usize = 256;

/// Dot product with eight independent partial sums (so it vectorizes).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
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
            block.updates.push((
                site,
                LowRank {
                    offset,
                    rank: t.rank,
                    input,
                    output,
                    a: t.a.clone(),
                    b: t.b.clone(),
                    scale: self.alpha / t.rank as f32,
                },
            ));
        }
        Ok(blocks)
    }
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
