//! A focused forward pass for llama-family GGUF files (`llama`, `qwen2`, `qwen3`, `gemma3`) over
//! weights kept in the kernel layout.
//!
//! RMSNorm, rotary embeddings over the first `rope_dim` values of each head (interleaved pairs
//! for llama, GPT-NeoX halves for qwen and gemma), grouped-query attention, gated feed-forward,
//! tied embeddings when the file has no `output.weight`. The variants add: query/key/value biases
//! (qwen2); per-head RMSNorm of queries and keys (qwen3, gemma3); for gemma3 the embedding scaled
//! by the square root of the width, norms after attention and after the feed-forward, GELU
//! gating, and sliding-window layers (a window of positions and their own rotary base)
//! interleaved with global ones. Norm weights are used as stored (gemma's converter has already
//! added the 1 of its `1 + weight` convention).
//!
//! Tokens run in passes of up to [`MAX_BATCH`] rows (matrix × matrix): a prompt's tokens, or the
//! tokens of several sequences at once ([`FastBatch`], each with its own key/value cache), so one
//! read of every weight serves all rows. Every projection is split over rows on a small rayon
//! pool owned by the model. Key/value caches grow as positions are used.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, TensorInfo};
use candle_core::quantized::GgmlDType;
use rayon::prelude::*;

use super::attention::{attend, AttendSegment, RopeTable};
use super::kernels::{Isa, Kernels, QActs, QFormat, QMatrix, RowWalk, PARALLEL_ROWS};
use super::lora::{BlockLora, LoraAdapter, Site};
use crate::lm::{check_forward, BatchLm, CausalLm, LmError, SlotRun};

/// Rows (tokens of one or several sequences) processed together in one pass.
const MAX_BATCH: usize = 128;

/// How the fast backend runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastOptions {
    /// Worker threads (default: the number of CPUs the process may use).
    pub threads: Option<usize>,
    /// Kernel implementation (default: the fastest this CPU supports).
    pub isa: Option<Isa>,
}

/// Architectures the forward pass runs (`general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// llama and its derivatives (SmolLM2, TinyLlama, ...).
    Llama,
    /// Qwen2 / Qwen2.5: biases on the query, key and value projections.
    Qwen2,
    /// Qwen3: RMSNorm of each query and key head.
    Qwen3,
    /// Gemma 3.
    Gemma3,
}

impl Arch {
    fn parse(name: &str) -> Option<Arch> {
        match name {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// The metadata key prefix (the GGUF architecture name).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// Model dimensions read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Architecture.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Embedding width.
    pub dim: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_kv_head: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Values per head that are rotated.
    pub rope_dim: usize,
    /// Feed-forward width.
    pub ffn_dim: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Rotary base frequency.
    pub rope_base: f32,
    /// Positions the model supports.
    pub context: usize,
    /// Rotary pairs in GPT-NeoX layout (`i`, `i + rope_dim / 2`) instead of interleaved.
    pub rope_neox: bool,
    /// Factor applied to the embedding rows.
    pub embed_scale: f32,
    /// Factor of the query-key products.
    pub attn_scale: f32,
    /// Sliding window of the local layers.
    pub sliding_window: Option<usize>,
    /// Every `sliding_period`-th layer is global, the others slide (0: all global).
    pub sliding_period: usize,
    /// Rotary base of the sliding-window layers.
    pub rope_base_local: f32,
}

impl Hyper {
    /// Whether layer `i` attends through the sliding window.
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some()
            && self.sliding_period > 0
            && !(layer + 1).is_multiple_of(self.sliding_period)
    }
}

/// One transformer block.
struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    /// Biases of the stacked query, key and value outputs (qwen2).
    qkv_bias: Option<Vec<f32>>,
    /// Per-head RMSNorm weights of queries and keys (qwen3, gemma3).
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// Norms of the attention and feed-forward outputs (gemma3).
    post_norms: Option<(Vec<f32>, Vec<f32>)>,
    /// Whether the layer attends through the sliding window.
    sliding: bool,
    /// Query, key and value projections (stacked when they share a format).
    qkv: Projection,
    wo: QMatrix,
    /// Gate and up projections (stacked when they share a format).
    gate_up: Projection,
    down: QMatrix,
    /// The run-time adapter's updates (none without one).
    lora: BlockLora,
}

/// Sweeps over the weights per row walk when a model loads (see [`Kernels::calibrated`]).
const CALIBRATION_ROUNDS: usize = 2;

/// Every matrix a decode step reads, in the order it reads them.
fn decode_matrices<'a>(layers: &'a [Layer], output: &'a QMatrix) -> Vec<&'a QMatrix> {
    let mut matrices = Vec::with_capacity(layers.len() * 7 + 1);
    for layer in layers {
        matrices.extend(&layer.qkv.parts);
        matrices.push(&layer.wo);
        matrices.extend(&layer.gate_up.parts);
        matrices.push(&layer.down);
    }
    matrices.push(output);
    matrices
}

/// Several matrices over the same input whose outputs are laid side by side.
struct Projection {
    parts: Vec<QMatrix>,
    width: usize,
}

impl Projection {
    /// `out` is `[tokens][width]`.
    fn run(&self, kernels: &Kernels, acts: &QActs, out: &mut [f32]) {
        let mut offset = 0;
        for part in &self.parts {
            kernels.matmul(part, acts, &mut out[offset..], self.width);
            offset += part.rows();
        }
    }
}

/// Keys and values of every layer, `[kv_head][position][head_dim]` per layer, with room for
/// `capacity` positions per head; grown (doubling) as positions are needed, so a cache costs
/// memory for the positions it has held, not for the whole context.
struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
    /// `(prefix, length)`: the first `length` positions are those of the shared prefix `prefix`
    /// (copied from another cache of the batch), so attention can read them once for all the
    /// caches naming it.
    shared: Option<(u64, usize)>,
}

/// Positions a cache holds at least once it is used.
const MIN_CACHE_POSITIONS: usize = 256;

impl KvCache {
    fn new(layers: usize) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            len: 0,
            capacity: 0,
            shared: None,
        }
    }

    /// Makes room for `positions` positions (at most the context), keeping the first `len`.
    fn reserve(&mut self, h: &Hyper, positions: usize) {
        if positions <= self.capacity {
            return;
        }
        let capacity = (2 * self.capacity)
            .max(MIN_CACHE_POSITIONS)
            .min(h.context)
            .max(positions);
        let (hd, kept) = (h.head_dim, self.len.min(self.capacity));
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let mut grown = vec![0f32; h.n_kv_head * capacity * hd];
            for kvh in 0..h.n_kv_head {
                let from = kvh * self.capacity * hd;
                let to = kvh * capacity * hd;
                grown[to..to + kept * hd].copy_from_slice(&layer[from..from + kept * hd]);
            }
            *layer = grown;
        }
        self.capacity = capacity;
    }

    /// Drops the positions from `start` on.
    fn truncate(&mut self, start: usize) {
        self.len = start;
        if let Some((_, len)) = &mut self.shared {
            *len = (*len).min(start);
        }
    }

    /// Offset of `pos` of key/value head `kvh` in a layer's vector.
    fn at(&self, kvh: usize, pos: usize, head_dim: usize) -> usize {
        (kvh * self.capacity + pos) * head_dim
    }
}

/// Reusable buffers of one forward pass.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    hidden: Vec<f32>,
    acts: QActs,
    logits: Vec<f32>,
    /// When set, every pass appends the final normed hidden state of each of its rows here.
    final_rows: Option<Vec<f32>>,
}

/// The weights, rotary tables, kernels and threads of a model: everything but the caches.
struct Weights {
    hyper: Hyper,
    embed: QMatrix,
    output: Option<QMatrix>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    rope: RopeTable,
    /// Rotary table of the sliding-window layers, when their base differs.
    rope_local: Option<RopeTable>,
    kernels: Kernels,
    pool: Arc<rayon::ThreadPool>,
}

/// The fast CPU llama model with its cache.
pub struct FastLlama {
    weights: Weights,
    cache: KvCache,
    scratch: Scratch,
}

/// The fast CPU model with several caches: many sequences per forward pass, every weight read
/// shared by the batch ([`BatchLm`]).
pub struct FastBatch {
    weights: Weights,
    caches: Vec<KvCache>,
    scratch: Scratch,
    /// The id the next shared prefix gets.
    next_prefix: u64,
    /// The buffer of an earlier step's logits, given back to be filled again
    /// ([`BatchLm::recycle_logits`]).
    spare_logits: Vec<f32>,
}

/// The rows of one sequence in a forward pass.
struct Segment {
    /// Which cache.
    cache: usize,
    /// Position of the first row.
    start: usize,
    /// Rows of the pass.
    rows: Range<usize>,
    /// Whether the last row's logits are wanted.
    logits: bool,
}

fn load_err(msg: impl Into<String>) -> LmError {
    LmError::Load(msg.into())
}

impl FastLlama {
    /// Loads a llama-family GGUF file.
    pub fn load(path: &Path, options: &FastOptions) -> Result<FastLlama, LmError> {
        let file = File::open(path).map_err(|e| load_err(format!("{}: {e}", path.display())))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        FastLlama::from_reader(&mut reader, options).map_err(|e| match e {
            LmError::Load(msg) => load_err(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Loads a llama-family GGUF model from a reader.
    pub fn from_reader<R: Read + Seek>(
        reader: &mut R,
        options: &FastOptions,
    ) -> Result<FastLlama, LmError> {
        let content = crate::gguf::read_content(reader)
            .map_err(|e| load_err(format!("not a readable GGUF file: {e}")))?;
        let hyper = read_hyper(&content)?;
        let kernels = match options.isa {
            Some(isa) => Kernels::new(isa)
                .ok_or_else(|| load_err(format!("this CPU cannot run the {isa:?} kernels")))?,
            None => Kernels::best(),
        };
        let threads = options
            .threads
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("flowbot-lm-{i}"))
            .build()
            .map_err(|e| load_err(format!("cannot start {threads} threads: {e}")))?;

        let mut loader = TensorLoader {
            content: &content,
            reader,
        };
        let h = &hyper;
        let (q_dim, kv_dim) = (h.n_head * h.head_dim, h.n_kv_head * h.head_dim);
        let embed = loader.matrix("token_embd.weight", h.vocab, h.dim)?;
        let output = if content.tensor_infos.contains_key("output.weight") {
            Some(loader.matrix("output.weight", h.vocab, h.dim)?)
        } else {
            None
        };
        let output_norm = loader.vector("output_norm.weight", h.dim)?;
        let mut layers = Vec::with_capacity(h.n_layer);
        for i in 0..h.n_layer {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let qkv_bias = if h.arch == Arch::Qwen2 {
                let mut bias = loader.vector(&format!("blk.{i}.attn_q.bias"), q_dim)?;
                bias.extend(loader.vector(&format!("blk.{i}.attn_k.bias"), kv_dim)?);
                bias.extend(loader.vector(&format!("blk.{i}.attn_v.bias"), kv_dim)?);
                Some(bias)
            } else {
                None
            };
            let qk_norm = if matches!(h.arch, Arch::Qwen3 | Arch::Gemma3) {
                Some((
                    loader.vector(&name("attn_q_norm"), h.head_dim)?,
                    loader.vector(&name("attn_k_norm"), h.head_dim)?,
                ))
            } else {
                None
            };
            let post_norms = if h.arch == Arch::Gemma3 {
                Some((
                    loader.vector(&name("post_attention_norm"), h.dim)?,
                    loader.vector(&name("post_ffw_norm"), h.dim)?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                qkv_bias,
                qk_norm,
                post_norms,
                sliding: h.is_sliding(i),
                attn_norm: loader.vector(&name("attn_norm"), h.dim)?,
                ffn_norm: loader.vector(&name("ffn_norm"), h.dim)?,
                qkv: loader.projection(
                    &[
                        (name("attn_q"), q_dim),
                        (name("attn_k"), kv_dim),
                        (name("attn_v"), kv_dim),
                    ],
                    h.dim,
                )?,
                wo: loader.matrix(&name("attn_output"), h.dim, q_dim)?,
                gate_up: loader.projection(
                    &[(name("ffn_gate"), h.ffn_dim), (name("ffn_up"), h.ffn_dim)],
                    h.dim,
                )?,
                down: loader.matrix(&name("ffn_down"), h.dim, h.ffn_dim)?,
                lora: BlockLora::default(),
            });
        }
        let cache = KvCache::new(h.n_layer);
        let output_matrix = output.as_ref().unwrap_or(&embed);
        let (kernels, [four, single]) = pool.install(|| {
            kernels.calibrated(&decode_matrices(&layers, output_matrix), CALIBRATION_ROUNDS)
        });
        tracing::debug!(
            isa = ?kernels.isa(),
            walk = ?kernels.walk(),
            four_rows_ms = four.as_secs_f64() * 1e3,
            single_rows_ms = single.as_secs_f64() * 1e3,
            threads,
            layers = h.n_layer,
            "fast llama loaded"
        );
        let rope_local = (h.sliding_window.is_some() && h.rope_base_local != h.rope_base)
            .then(|| RopeTable::new(h.rope_dim, h.rope_base_local));
        Ok(FastLlama {
            weights: Weights {
                rope: RopeTable::new(h.rope_dim, h.rope_base),
                rope_local,
                hyper,
                embed,
                output,
                output_norm,
                layers,
                kernels,
                pool: Arc::new(pool),
            },
            cache,
            scratch: Scratch::default(),
        })
    }

    /// Applies `adapter` at run time from now on (replacing one applied before), or says why it
    /// does not fit this model.
    pub fn with_adapter(mut self, adapter: &LoraAdapter) -> Result<FastLlama, LmError> {
        let blocks = adapter.blocks(&self.weights.hyper).map_err(load_err)?;
        for (layer, lora) in self.weights.layers.iter_mut().zip(blocks) {
            layer.lora = lora;
        }
        self.cache.truncate(0);
        Ok(self)
    }

    /// The model dimensions.
    pub fn hyper(&self) -> &Hyper {
        &self.weights.hyper
    }

    /// Runs `tokens` from position `start` as [`CausalLm::forward`] does and returns the final
    /// hidden state of every token (after the output norm: the input of the output projection),
    /// `tokens.len()` rows of `hyper().dim` values. Training the output layer starts from these.
    pub fn final_hidden(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        self.weights.check(tokens, start, self.cache.len)?;
        self.scratch.final_rows = Some(Vec::with_capacity(tokens.len() * self.weights.hyper.dim));
        let run = SlotRun {
            slot: 0,
            tokens,
            start,
            logits: false,
        };
        self.weights.forward(
            std::slice::from_mut(&mut self.cache),
            &mut self.scratch,
            &[run],
            Vec::new(),
        );
        Ok(self.scratch.final_rows.take().unwrap_or_default())
    }

    /// The kernel implementation in use.
    pub fn isa(&self) -> Isa {
        self.weights.kernels.isa()
    }

    /// How decode steps walk the weight rows (measured when the model loaded).
    pub fn row_walk(&self) -> RowWalk {
        self.weights.kernels.walk()
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.weights.pool.current_num_threads()
    }
}

impl Weights {
    /// Checks one run against its cache of `cached` positions: tokens, positions, vocabulary.
    fn check(&self, tokens: &[u32], start: usize, cached: usize) -> Result<(), LmError> {
        check_forward(tokens, start, cached, self.hyper.context)?;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.hyper.vocab) {
            return Err(LmError::Forward(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.hyper.vocab
            )));
        }
        Ok(())
    }

    /// Runs `runs` (checked, distinct caches) in passes of at most [`MAX_BATCH`] rows; a run
    /// longer than the room left in a pass continues in the next. Returns the logits of the runs
    /// that ask for them, in order.
    fn forward(
        &mut self,
        caches: &mut [KvCache],
        scratch: &mut Scratch,
        runs: &[SlotRun<'_>],
        mut logits: Vec<f32>,
    ) -> Vec<f32> {
        let mut end = 0;
        for run in runs {
            let cache = &mut caches[run.slot];
            cache.truncate(run.start);
            cache.reserve(&self.hyper, run.start + run.tokens.len());
            end = end.max(run.start + run.tokens.len());
        }
        self.rope.ensure(end);
        if let Some(local) = &mut self.rope_local {
            local.ensure(end);
        }
        let pool = Arc::clone(&self.pool);
        logits.clear();
        logits.reserve(runs.iter().filter(|run| run.logits).count() * self.hyper.vocab);
        let mut tokens: Vec<u32> = Vec::with_capacity(MAX_BATCH);
        let mut segments: Vec<Segment> = Vec::new();
        pool.install(|| {
            let mut flush = |tokens: &mut Vec<u32>, segments: &mut Vec<Segment>| {
                if tokens.is_empty() {
                    return;
                }
                self.run_pass(caches, scratch, tokens, segments);
                logits.extend_from_slice(&scratch.logits);
                for segment in segments.iter() {
                    caches[segment.cache].len = segment.start + segment.rows.len();
                }
                tokens.clear();
                segments.clear();
            };
            for run in runs {
                let mut offset = 0;
                while offset < run.tokens.len() {
                    let take = (MAX_BATCH - tokens.len()).min(run.tokens.len() - offset);
                    segments.push(Segment {
                        cache: run.slot,
                        start: run.start + offset,
                        rows: tokens.len()..tokens.len() + take,
                        logits: run.logits && offset + take == run.tokens.len(),
                    });
                    tokens.extend_from_slice(&run.tokens[offset..offset + take]);
                    offset += take;
                    if tokens.len() == MAX_BATCH {
                        flush(&mut tokens, &mut segments);
                    }
                }
            }
            flush(&mut tokens, &mut segments);
        });
        logits
    }

    /// Runs one pass: the rows of every segment through all layers, each segment's keys and
    /// values into its cache; fills `scratch.logits` with the last row's logits of each segment
    /// that asks for them (`vocab` values each, in segment order).
    fn run_pass(
        &self,
        caches: &mut [KvCache],
        s: &mut Scratch,
        tokens: &[u32],
        segments: &[Segment],
    ) {
        let h = &self.hyper;
        let (t_len, dim) = (tokens.len(), h.dim);
        let (q_dim, kv_dim) = (h.n_head * h.head_dim, h.n_kv_head * h.head_dim);
        let qkv_width = q_dim + 2 * kv_dim;
        resize(&mut s.x, t_len * dim);
        resize(&mut s.normed, t_len * dim);
        resize(&mut s.qkv, t_len * qkv_width);
        resize(&mut s.attn, t_len * q_dim);
        resize(&mut s.proj, t_len * dim);
        resize(&mut s.gate_up, t_len * 2 * h.ffn_dim);
        resize(&mut s.hidden, t_len * h.ffn_dim);
        for (t, &token) in tokens.iter().enumerate() {
            let row = &mut s.x[t * dim..(t + 1) * dim];
            self.embed.dequantize_row(token as usize, row);
            if h.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= h.embed_scale);
            }
        }
        let kernels = &self.kernels;
        let wide = kernels.isa() != Isa::Scalar;
        for (index, layer) in self.layers.iter().enumerate() {
            // Attention.
            rms_norm(&s.x, &layer.attn_norm, h.eps, &mut s.normed);
            s.acts.quantize(&s.normed, t_len, dim);
            layer.qkv.run(kernels, &s.acts, &mut s.qkv);
            let lora = &layer.lora;
            lora.apply(Site::Qkv, kernels, &s.acts, &mut s.qkv, qkv_width);
            let rope = match &self.rope_local {
                Some(local) if layer.sliding => local,
                _ => &self.rope,
            };
            for segment in segments {
                let cache = &mut caches[segment.cache];
                let capacity = cache.capacity;
                let (keys, values) = (&mut cache.keys[index], &mut cache.values[index]);
                for t in segment.rows.clone() {
                    let pos = segment.start + t - segment.rows.start;
                    let row = &mut s.qkv[t * qkv_width..(t + 1) * qkv_width];
                    if let Some(bias) = &layer.qkv_bias {
                        add_into(row, bias);
                    }
                    let (q, kv) = row.split_at_mut(q_dim);
                    let (k, v) = kv.split_at_mut(kv_dim);
                    if let Some((q_norm, k_norm)) = &layer.qk_norm {
                        rms_norm_in_place(q, q_norm, h.eps);
                        rms_norm_in_place(k, k_norm, h.eps);
                    }
                    rope.apply(q, h.head_dim, pos, h.rope_neox);
                    rope.apply(k, h.head_dim, pos, h.rope_neox);
                    for kvh in 0..h.n_kv_head {
                        let at = (kvh * capacity + pos) * h.head_dim;
                        let head = kvh * h.head_dim..(kvh + 1) * h.head_dim;
                        keys[at..at + h.head_dim].copy_from_slice(&k[head.clone()]);
                        values[at..at + h.head_dim].copy_from_slice(&v[head]);
                    }
                }
            }
            let attend_segments: Vec<AttendSegment<'_>> = segments
                .iter()
                .map(|segment| {
                    let cache = &caches[segment.cache];
                    AttendSegment {
                        keys: &cache.keys[index],
                        values: &cache.values[index],
                        capacity: cache.capacity,
                        start: segment.start,
                        rows: segment.rows.clone(),
                        shared: cache.shared,
                    }
                })
                .collect();
            attend(
                h,
                layer.sliding.then_some(h.sliding_window).flatten(),
                &s.qkv,
                qkv_width,
                &attend_segments,
                &mut s.attn,
                wide,
            );
            s.acts.quantize(&s.attn, t_len, q_dim);
            kernels.matmul(&layer.wo, &s.acts, &mut s.proj, dim);
            lora.apply(Site::AttnOutput, kernels, &s.acts, &mut s.proj, dim);
            if let Some((post_attn, _)) = &layer.post_norms {
                rms_norm_in_place(&mut s.proj, post_attn, h.eps);
            }
            add_into(&mut s.x, &s.proj);
            // Feed-forward.
            rms_norm(&s.x, &layer.ffn_norm, h.eps, &mut s.normed);
            s.acts.quantize(&s.normed, t_len, dim);
            layer.gate_up.run(kernels, &s.acts, &mut s.gate_up);
            let gate_up_width = 2 * h.ffn_dim;
            lora.apply(
                Site::GateUp,
                kernels,
                &s.acts,
                &mut s.gate_up,
                gate_up_width,
            );
            let gate_up = &s.gate_up[..t_len * gate_up_width];
            let hidden = &mut s.hidden[..t_len * h.ffn_dim];
            if t_len >= PARALLEL_ROWS {
                gate_up
                    .par_chunks_exact(gate_up_width)
                    .zip(hidden.par_chunks_exact_mut(h.ffn_dim))
                    .for_each(|(row, hidden)| gate_activation(h.arch, row, hidden));
            } else {
                let rows = gate_up.chunks_exact(gate_up_width);
                for (row, hidden) in rows.zip(hidden.chunks_exact_mut(h.ffn_dim)) {
                    gate_activation(h.arch, row, hidden);
                }
            }
            s.acts.quantize(&s.hidden, t_len, h.ffn_dim);
            kernels.matmul(&layer.down, &s.acts, &mut s.proj, dim);
            lora.apply(Site::Down, kernels, &s.acts, &mut s.proj, dim);
            if let Some((_, post_ffn)) = &layer.post_norms {
                rms_norm_in_place(&mut s.proj, post_ffn, h.eps);
            }
            add_into(&mut s.x, &s.proj);
        }
        if let Some(final_rows) = &mut s.final_rows {
            let first = final_rows.len();
            final_rows.resize(first + t_len * dim, 0.0);
            for (row, out) in
                s.x.chunks_exact(dim)
                    .zip(final_rows[first..].chunks_exact_mut(dim))
            {
                rms_norm(row, &self.output_norm, h.eps, out);
            }
        }
        let last_rows: Vec<usize> = segments
            .iter()
            .filter(|segment| segment.logits)
            .map(|segment| segment.rows.end - 1)
            .collect();
        resize(&mut s.logits, last_rows.len() * h.vocab);
        if last_rows.is_empty() {
            return;
        }
        for (i, &row) in last_rows.iter().enumerate() {
            rms_norm(
                &s.x[row * dim..(row + 1) * dim],
                &self.output_norm,
                h.eps,
                &mut s.normed[i * dim..(i + 1) * dim],
            );
        }
        s.acts
            .quantize(&s.normed[..last_rows.len() * dim], last_rows.len(), dim);
        kernels.matmul(
            self.output.as_ref().unwrap_or(&self.embed),
            &s.acts,
            &mut s.logits,
            h.vocab,
        );
    }
}

impl CausalLm for FastLlama {
    fn forward(&mut self, tokens: &[u32], start: usize) -> Result<Vec<f32>, LmError> {
        self.weights.check(tokens, start, self.cache.len)?;
        let run = SlotRun {
            slot: 0,
            tokens,
            start,
            logits: true,
        };
        Ok(self.weights.forward(
            std::slice::from_mut(&mut self.cache),
            &mut self.scratch,
            &[run],
            Vec::new(),
        ))
    }

    fn cached_len(&self) -> usize {
        self.cache.len
    }

    fn vocab_size(&self) -> usize {
        self.weights.hyper.vocab
    }

    fn max_positions(&self) -> usize {
        self.weights.hyper.context
    }

    fn into_batch(self: Box<Self>, slots: usize) -> Box<dyn BatchLm> {
        let FastLlama {
            weights,
            cache,
            scratch,
        } = *self;
        let mut caches = vec![cache];
        caches.extend((1..slots.max(1)).map(|_| KvCache::new(weights.hyper.n_layer)));
        Box::new(FastBatch {
            weights,
            caches,
            scratch,
            next_prefix: 0,
            spare_logits: Vec::new(),
        })
    }
}

impl FastBatch {
    fn slot_error(&self, slot: usize) -> LmError {
        LmError::Forward(format!(
            "slot {slot} does not exist ({} slots)",
            self.caches.len()
        ))
    }
}

impl BatchLm for FastBatch {
    fn slots(&self) -> usize {
        self.caches.len()
    }

    fn cached_len(&self, slot: usize) -> usize {
        self.caches.get(slot).map_or(0, |c| c.len)
    }

    fn copy_prefix(&mut self, from: usize, to: usize, range: Range<usize>) -> Result<(), LmError> {
        let slots = self.caches.len();
        if from >= slots || to >= slots {
            return Err(self.slot_error(from.max(to)));
        }
        let (from_len, to_len) = (self.caches[from].len, self.caches[to].len);
        if from == to || range.end > from_len || range.start > to_len || range.start > range.end {
            return Err(LmError::Forward(format!(
                "cannot copy positions {range:?} from slot {from} ({from_len} cached) to slot {to} ({to_len} cached)"
            )));
        }
        let h = &self.weights.hyper;
        let (source, target) = if from < to {
            let (low, high) = self.caches.split_at_mut(to);
            (&mut low[from], &mut high[0])
        } else {
            let (low, high) = self.caches.split_at_mut(from);
            (&mut high[0], &mut low[to])
        };
        // The target now starts with the source's first `range.end` positions: both name the
        // source's shared prefix (a new one when it has none).
        let prefix = match source.shared {
            Some((prefix, len)) if len >= range.end => (prefix, range.end),
            _ => {
                self.next_prefix += 1;
                (self.next_prefix, range.end)
            }
        };
        if source.shared.is_none_or(|(_, len)| len < range.end) {
            source.shared = Some(prefix);
        }
        target.truncate(range.start);
        target.shared = Some(prefix);
        target.reserve(h, range.end);
        let hd = h.head_dim;
        let offsets: Vec<(Range<usize>, usize)> = (0..h.n_kv_head)
            .map(|kvh| {
                let from = source.at(kvh, range.start, hd)..source.at(kvh, range.end, hd);
                (from, target.at(kvh, range.start, hd))
            })
            .collect();
        let layers = source.keys.iter().zip(&source.values);
        let targets = target.keys.iter_mut().zip(target.values.iter_mut());
        for ((keys, values), (to_keys, to_values)) in layers.zip(targets) {
            for (from, at) in &offsets {
                let to = *at..*at + from.len();
                to_keys[to.clone()].copy_from_slice(&keys[from.clone()]);
                to_values[to].copy_from_slice(&values[from.clone()]);
            }
        }
        target.len = range.end;
        Ok(())
    }

    fn forward_batch(&mut self, runs: &[SlotRun<'_>]) -> Result<Vec<f32>, LmError> {
        let mut seen = vec![false; self.caches.len()];
        for run in runs {
            let Some(cache) = self.caches.get(run.slot) else {
                return Err(self.slot_error(run.slot));
            };
            if std::mem::replace(&mut seen[run.slot], true) {
                return Err(LmError::Forward(format!(
                    "slot {} appears twice in one batch",
                    run.slot
                )));
            }
            self.weights.check(run.tokens, run.start, cache.len)?;
        }
        let logits = std::mem::take(&mut self.spare_logits);
        Ok(self
            .weights
            .forward(&mut self.caches, &mut self.scratch, runs, logits))
    }

    fn recycle_logits(&mut self, logits: Vec<f32>) {
        self.spare_logits = logits;
    }

    fn vocab_size(&self) -> usize {
        self.weights.hyper.vocab
    }

    fn max_positions(&self) -> usize {
        self.weights.hyper.context
    }
}

/// Resizes a scratch buffer (growing only reallocates past the largest size seen).
fn resize(v: &mut Vec<f32>, len: usize) {
    v.resize(len, 0.0);
}

fn add_into(x: &mut [f32], delta: &[f32]) {
    for (a, b) in x.iter_mut().zip(delta) {
        *a += b;
    }
}

/// Row-wise RMSNorm of `x` (rows of `weight.len()`) times `weight`, in place.
fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    for row in x.chunks_exact_mut(dim) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// `hidden = act(gate) * up` for one token's stacked gate and up outputs: SiLU, or for gemma3
/// GELU through ggml's table.
fn gate_activation(arch: Arch, gate_up: &[f32], hidden: &mut [f32]) {
    let (gate, up) = gate_up.split_at(hidden.len());
    if arch == Arch::Gemma3 {
        let table = gelu_table();
        for ((out, &g), &u) in hidden.iter_mut().zip(gate).zip(up) {
            *out = gelu(table, g) * u;
        }
    } else {
        for ((out, &g), &u) in hidden.iter_mut().zip(gate).zip(up) {
            *out = g / (1.0 + (-g).exp()) * u;
        }
    }
}

/// GELU (tanh approximation) of every f16 value, indexed by the value's bits: ggml computes GELU
/// through this table (input and output rounded to f16), and so do we, to match its output.
fn gelu_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = half::f16::from_bits(bits).to_f32();
                const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                let y = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh());
                half::f16::from_f32(y).to_f32()
            })
            .collect()
    })
}

/// GELU of `x` as ggml computes it (see [`gelu_table`]).
#[inline]
fn gelu(table: &[f32], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table[half::f16::from_f32(x).to_bits() as usize]
    }
}

/// Row-wise RMSNorm of `x` (rows of `weight.len()`) times `weight` into `out`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    for (row, out_row) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean_sq = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for ((o, &v), &w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = v * scale * w;
        }
    }
}

pub(crate) fn read_hyper(content: &Content) -> Result<Hyper, LmError> {
    let md = &content.metadata;
    let arch = md
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| load_err("metadata has no general.architecture"))?;
    let arch = Arch::parse(&arch).ok_or_else(|| {
        load_err(format!(
            "architecture {arch:?} is not supported (llama, qwen2, qwen3, gemma3)"
        ))
    })?;
    let prefix = arch.name();
    let get_u = |key: &str| -> Result<usize, LmError> {
        let key = &format!("{prefix}.{key}");
        let v = md
            .get(key)
            .ok_or_else(|| load_err(format!("metadata key {key} is missing")))?;
        v.to_u32()
            .map(|n| n as usize)
            .or_else(|_| v.to_u64().map(|n| n as usize))
            .map_err(|e| load_err(format!("metadata key {key}: {e}")))
    };
    let get_f = |key: &str| -> Result<Option<f32>, LmError> {
        let key = &format!("{prefix}.{key}");
        md.get(key)
            .map(|v| {
                v.to_f32()
                    .map_err(|e| load_err(format!("metadata key {key}: {e}")))
            })
            .transpose()
    };
    let n_layer = get_u("block_count")?;
    let dim = get_u("embedding_length")?;
    let n_head = get_u("attention.head_count")?;
    // Optional keys: absent means the default, present but malformed is an error.
    let get_u_or = |key: &str, default: usize| -> Result<usize, LmError> {
        if md.contains_key(&format!("{prefix}.{key}")) {
            get_u(key)
        } else {
            Ok(default)
        }
    };
    let n_kv_head = get_u_or("attention.head_count_kv", n_head)?;
    let head_dim = get_u_or("attention.key_length", dim / n_head.max(1))?;
    if n_head == 0
        || n_kv_head == 0
        || head_dim == 0
        || n_head % n_kv_head != 0
        || get_u_or("attention.value_length", head_dim)? != head_dim
    {
        return Err(load_err(format!(
            "inconsistent heads: embedding {dim}, {n_head} heads of {head_dim}, {n_kv_head} key/value heads"
        )));
    }
    let rope_dim = get_u_or("rope.dimension_count", head_dim)?;
    if rope_dim > head_dim || rope_dim % 2 != 0 {
        return Err(load_err(format!(
            "rope dimension {rope_dim} does not fit the head size {head_dim}"
        )));
    }
    let ffn_dim =
        get_u("feed_forward_length").or_else(|_| tensor_rows(content, "blk.0.ffn_gate.weight"))?;
    let vocab = tensor_rows(content, "token_embd.weight")?;
    let context = get_u_or("context_length", 2048)?;
    let gemma = arch == Arch::Gemma3;
    let sliding_window = if gemma {
        Some(get_u("attention.sliding_window")?)
    } else {
        None
    };
    let rope_base = get_f("rope.freq_base")?.unwrap_or(if gemma { 1_000_000.0 } else { 10_000.0 });
    Ok(Hyper {
        arch,
        rope_neox: arch != Arch::Llama,
        embed_scale: if gemma { (dim as f32).sqrt() } else { 1.0 },
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        sliding_window,
        sliding_period: if gemma {
            get_u_or("attention.sliding_window_pattern", 6)?
        } else {
            0
        },
        rope_base_local: get_f("rope.local_freq_base")?.unwrap_or(10_000.0),
        n_layer,
        dim,
        n_head,
        n_kv_head,
        head_dim,
        rope_dim,
        ffn_dim,
        vocab,
        eps: get_f("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
        rope_base,
        context,
    })
}

fn tensor_rows(content: &Content, name: &str) -> Result<usize, LmError> {
    let info = content
        .tensor_infos
        .get(name)
        .ok_or_else(|| load_err(format!("tensor {name} is missing")))?;
    Ok(info.shape.dims()[0])
}

/// Reads tensors' raw bytes from the file.
struct TensorLoader<'a, R> {
    content: &'a Content,
    reader: &'a mut R,
}

impl<'a, R: Read + Seek> TensorLoader<'a, R> {
    fn info(&self, name: &str, dims: &[usize]) -> Result<&'a TensorInfo, LmError> {
        let content: &'a Content = self.content;
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| load_err(format!("tensor {name} is missing")))?;
        if info.shape.dims() != dims {
            return Err(load_err(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                info.shape.dims()
            )));
        }
        Ok(info)
    }

    /// Appends the raw bytes of tensor `name` to `out`.
    fn read_into(
        &mut self,
        name: &str,
        info: &TensorInfo,
        out: &mut Vec<u8>,
    ) -> Result<(), LmError> {
        let dtype = info.ggml_dtype;
        let size = info.shape.elem_count() / dtype.block_size() * dtype.type_size();
        let at = self.content.tensor_data_offset + info.offset;
        let old_len = out.len();
        out.resize(old_len + size, 0);
        self.reader
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.reader.read_exact(&mut out[old_len..]))
            .map_err(|e| {
                load_err(format!(
                    "tensor {name}: cannot read {size} bytes at offset {at}: {e}"
                ))
            })
    }

    /// The kernel format of a `rows` x `cols` tensor.
    fn format(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<(&'a TensorInfo, QFormat), LmError> {
        let info = self.info(name, &[rows, cols])?;
        let format = match info.ggml_dtype {
            GgmlDType::Q4_0 => QFormat::Q4_0,
            GgmlDType::Q4_1 => QFormat::Q4_1,
            GgmlDType::Q5_0 => QFormat::Q5_0,
            GgmlDType::Q8_0 => QFormat::Q8_0,
            GgmlDType::Q4K => QFormat::Q4_K,
            GgmlDType::Q5K => QFormat::Q5_K,
            GgmlDType::Q6K => QFormat::Q6_K,
            other => {
                return Err(load_err(format!(
                    "tensor {name} is {other:?}; the fast backend supports Q4_0, Q4_1, Q5_0, \
                     Q8_0, Q4_K, Q5_K and Q6_K"
                )))
            }
        };
        Ok((info, format))
    }

    /// A `rows` x `cols` quantized matrix.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, LmError> {
        let (info, format) = self.format(name, rows, cols)?;
        let mut raw = Vec::new();
        self.read_into(name, info, &mut raw)?;
        QMatrix::from_gguf_vec(format, rows, cols, raw)
            .map_err(|e| load_err(format!("tensor {name}: {e}")))
    }

    /// Matrices of `(name, rows)` over the same `cols` inputs, stacked into one when they share a
    /// format (read straight into one buffer).
    fn projection(
        &mut self,
        parts: &[(String, usize)],
        cols: usize,
    ) -> Result<Projection, LmError> {
        let width = parts.iter().map(|(_, rows)| rows).sum();
        let formats = parts
            .iter()
            .map(|(name, rows)| self.format(name, *rows, cols))
            .collect::<Result<Vec<_>, _>>()?;
        if formats.iter().all(|(_, f)| *f == formats[0].1) {
            let format = formats[0].1;
            let mut raw =
                Vec::with_capacity(width * cols / format.block_values() * format.block_bytes());
            for ((name, _), (info, _)) in parts.iter().zip(&formats) {
                self.read_into(name, info, &mut raw)?;
            }
            let stacked = QMatrix::from_gguf_vec(formats[0].1, width, cols, raw)
                .map_err(|e| load_err(format!("tensor {}: {e}", parts[0].0)))?;
            return Ok(Projection {
                parts: vec![stacked],
                width,
            });
        }
        let matrices = parts
            .iter()
            .map(|(name, rows)| self.matrix(name, *rows, cols))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Projection {
            parts: matrices,
            width,
        })
    }

    /// An f32 vector of `len` values.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, LmError> {
        let info = self.info(name, &[len])?;
        if info.ggml_dtype != GgmlDType::F32 {
            return Err(load_err(format!(
                "tensor {name} is {:?}, expected F32",
                info.ggml_dtype
            )));
        }
        let mut raw = Vec::new();
        self.read_into(name, info, &mut raw)?;
        Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}
