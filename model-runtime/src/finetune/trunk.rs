//! The whole model as a candle graph that gradients flow through, for the methods that train
//! inside it: `lora` (low-rank adapters on every projection over the frozen base) and `full`
//! (every weight).
//!
//! The base is read from the GGUF file and dequantized to f32 (quantized matrices have no
//! gradient). The forward pass is the fast backend's forward (`llama`, `qwen2`, `qwen3`,
//! `gemma3`) written with candle ops that all have a backward pass: RMSNorm, rotary embeddings
//! and softmax are spelled out rather than taken from `candle_nn`'s fused kernels, which silently
//! stop gradients. Tests keep its logits equal to candle's own llama and gemma3 on the same
//! weights, and check that every trained tensor receives a gradient.

use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::train::trained_tokens;
use super::{FinetuneError, TrainExample};
use crate::fast::{Arch, Hyper};
use crate::gguf::GgufFile;
use crate::gguf_export::ExportError;
use crate::lm::candle_message;

/// What is trained inside the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Adaptation {
    /// Low-rank adapters on every projection of every block: `W x + (B A x) · alpha / rank`,
    /// `A` drawn uniformly within ±1/√in, `B` zero (so training starts from the base model).
    Lora {
        /// The adapters' rank.
        rank: usize,
        /// Their scale numerator (`alpha / rank` multiplies the adapter's output).
        alpha: f64,
    },
    /// Every weight: embeddings, projections and norms.
    Full,
}

/// A weight that may be trained: a frozen tensor, or a [`Var`].
#[derive(Debug)]
enum Weight {
    Frozen(Tensor),
    Trained(Var),
}

impl Weight {
    fn new(tensor: Tensor, trained: bool) -> candle_core::Result<Weight> {
        Ok(if trained {
            Weight::Trained(Var::from_tensor(&tensor)?)
        } else {
            Weight::Frozen(tensor)
        })
    }

    fn tensor(&self) -> &Tensor {
        match self {
            Weight::Frozen(tensor) => tensor,
            Weight::Trained(var) => var.as_tensor(),
        }
    }
}

/// A low-rank adapter: `a` is rank × in, `b` is out × rank.
#[derive(Debug)]
struct Adapter {
    a: Var,
    b: Var,
    scale: f64,
}

/// A projection `x Wᵀ + b` (W is out × in, as GGUF stores it; a bias only on qwen2's query,
/// key and value), with its adapter when it has one.
#[derive(Debug)]
struct Projection {
    name: String,
    weight: Weight,
    bias: Option<NamedWeight>,
    adapter: Option<Adapter>,
}

/// A weight with its GGUF name.
type NamedWeight = (String, Weight);

/// `x Wᵀ`, with a gradient for `W` only when it is trained.
fn project(x: &Tensor, weight: &Weight) -> candle_core::Result<Tensor> {
    match weight {
        Weight::Frozen(weight) => x.contiguous()?.apply_op1(FrozenProjection(weight.clone())),
        Weight::Trained(var) => x.matmul(&var.as_tensor().t()?),
    }
}

impl Projection {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = project(x, &self.weight)?;
        if let Some((_, bias)) = &self.bias {
            y = y.broadcast_add(bias.tensor())?;
        }
        match &self.adapter {
            None => Ok(y),
            Some(adapter) => {
                let low = x.matmul(&adapter.a.as_tensor().t()?)?;
                let delta = low.matmul(&adapter.b.as_tensor().t()?)?;
                y + (delta * adapter.scale)?
            }
        }
    }

    /// The weight with the adapter folded in: `W + (B A) · scale`.
    fn merged(&self) -> candle_core::Result<Tensor> {
        match &self.adapter {
            None => Ok(self.weight.tensor().clone()),
            Some(adapter) => {
                let delta = adapter.b.as_tensor().matmul(adapter.a.as_tensor())?;
                self.weight.tensor() + (delta * adapter.scale)?
            }
        }
    }
}

/// `x Wᵀ` for a frozen `W` (out × in). Its backward pass gives `x` its gradient and computes
/// none for `W`: candle's matmul computes both, which for frozen weights doubles the backward
/// pass's matrix work and keeps a gradient as large as the model.
struct FrozenProjection(Tensor);

impl CustomOp1 for FrozenProjection {
    fn name(&self) -> &'static str {
        "frozen-projection"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("a frozen projection takes contiguous f32 input");
        };
        let x = Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.0.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.0)?))
    }
}

/// One transformer block.
#[derive(Debug)]
struct Block {
    attn_norm: NamedWeight,
    ffn_norm: NamedWeight,
    /// RMSNorm weights of each query and key head (qwen3, gemma3).
    qk_norm: Option<[NamedWeight; 2]>,
    /// Norms of the attention and feed-forward outputs (gemma3).
    post_norms: Option<[NamedWeight; 2]>,
    /// Whether the block attends through the sliding window (gemma3's local layers).
    sliding: bool,
    q: Projection,
    k: Projection,
    v: Projection,
    o: Projection,
    gate: Projection,
    up: Projection,
    down: Projection,
}

impl Block {
    fn projections(&self) -> [&Projection; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    /// Every weight of the block that is not a projection's matrix: norms and biases.
    fn vectors(&self) -> Vec<&NamedWeight> {
        let mut vectors = vec![&self.attn_norm, &self.ffn_norm];
        for norms in [&self.qk_norm, &self.post_norms].into_iter().flatten() {
            vectors.extend(norms);
        }
        vectors.extend(
            self.projections()
                .into_iter()
                .filter_map(|p| p.bias.as_ref()),
        );
        vectors
    }
}

/// The tensor names of the token embeddings and the output layer.
const EMBEDDINGS: &str = "token_embd.weight";
const OUTPUT: &str = "output.weight";
const OUTPUT_NORM: &str = "output_norm.weight";

/// A model of the fast backend's architectures whose forward pass candle can differentiate.
#[derive(Debug)]
pub struct TrainableLlama {
    hyper: Hyper,
    embeddings: Weight,
    /// The untied output layer, when the file has one (else the embeddings are used).
    output: Option<Weight>,
    output_norm: Weight,
    blocks: Vec<Block>,
}

fn read_error(path: &Path, name: &str, error: &candle_core::Error) -> ExportError {
    ExportError::Tensor {
        path: path.to_owned(),
        message: format!("tensor `{name}`: {}", candle_message(error)),
    }
}

impl TrainableLlama {
    /// Loads the GGUF model at `path` (`llama`, `qwen2`, `qwen3` or `gemma3`), dequantized to
    /// f32, with what `adaptation` trains made trainable; new adapter weights are drawn with
    /// `seed`.
    pub fn load(
        path: &Path,
        adaptation: Adaptation,
        seed: u64,
    ) -> Result<TrainableLlama, FinetuneError> {
        let mut file = GgufFile::open(path).map_err(ExportError::from)?;
        let hyper = crate::fast::llama::read_hyper(&file.content)?;
        if let Adaptation::Lora { rank, .. } = adaptation {
            if rank == 0 || rank > hyper.dim {
                return Err(FinetuneError::Data(format!(
                    "the adapter rank must be between 1 and {} (the model's width), not {rank}",
                    hyper.dim
                )));
            }
        }
        let full = adaptation == Adaptation::Full;
        let mut read = |name: &str| -> Result<Tensor, FinetuneError> {
            Ok(file
                .content
                .tensor(&mut file.reader, name, &Device::Cpu)
                .and_then(|t| t.dequantize(&Device::Cpu))
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| read_error(path, name, &e))?)
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let qkv_bias = hyper.arch == Arch::Qwen2;
        let mut projection = |read: &mut dyn FnMut(&str) -> Result<Tensor, FinetuneError>,
                              name: String|
         -> Result<Projection, FinetuneError> {
            let weight = read(&name)?;
            let bias = match name.strip_suffix(".weight") {
                Some(stem)
                    if qkv_bias
                        && [".attn_q", ".attn_k", ".attn_v"]
                            .iter()
                            .any(|p| stem.ends_with(p)) =>
                {
                    let bias_name = format!("{stem}.bias");
                    let tensor = read(&bias_name)?;
                    Some((bias_name, Weight::new(tensor, full)?))
                }
                _ => None,
            };
            let adapter = match adaptation {
                Adaptation::Lora { rank, alpha } => {
                    let (out, inner) = weight.dims2()?;
                    // The usual LoRA initialisation: uniform within ±1/√in.
                    let bound = 1.0 / (inner as f32).sqrt();
                    let a: Vec<f32> = (0..rank * inner)
                        .map(|_| rng.gen_range(-bound..bound))
                        .collect();
                    Some(Adapter {
                        a: Var::from_tensor(&Tensor::from_vec(a, (rank, inner), &Device::Cpu)?)?,
                        b: Var::zeros((out, rank), DType::F32, &Device::Cpu)?,
                        scale: alpha / rank as f64,
                    })
                }
                Adaptation::Full => None,
            };
            Ok(Projection {
                weight: Weight::new(weight, full)?,
                name,
                bias,
                adapter,
            })
        };
        let mut blocks = Vec::with_capacity(hyper.n_layer);
        for i in 0..hyper.n_layer {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let norm = |read: &mut dyn FnMut(&str) -> Result<Tensor, FinetuneError>, n: String| {
                let tensor = read(&n)?;
                Ok::<_, FinetuneError>((n, Weight::new(tensor, full)?))
            };
            let qk_norm = match hyper.arch {
                Arch::Qwen3 | Arch::Gemma3 => Some([
                    norm(&mut read, name("attn_q_norm"))?,
                    norm(&mut read, name("attn_k_norm"))?,
                ]),
                _ => None,
            };
            let post_norms = match hyper.arch {
                Arch::Gemma3 => Some([
                    norm(&mut read, name("post_attention_norm"))?,
                    norm(&mut read, name("post_ffw_norm"))?,
                ]),
                _ => None,
            };
            blocks.push(Block {
                attn_norm: norm(&mut read, name("attn_norm"))?,
                ffn_norm: norm(&mut read, name("ffn_norm"))?,
                qk_norm,
                post_norms,
                sliding: hyper.is_sliding(i),
                q: projection(&mut read, name("attn_q"))?,
                k: projection(&mut read, name("attn_k"))?,
                v: projection(&mut read, name("attn_v"))?,
                o: projection(&mut read, name("attn_output"))?,
                gate: projection(&mut read, name("ffn_gate"))?,
                up: projection(&mut read, name("ffn_up"))?,
                down: projection(&mut read, name("ffn_down"))?,
            });
        }
        let output = if file.content.tensor_infos.contains_key(OUTPUT) {
            Some(Weight::new(read(OUTPUT)?, full)?)
        } else {
            None
        };
        Ok(TrainableLlama {
            embeddings: Weight::new(read(EMBEDDINGS)?, full)?,
            output_norm: Weight::new(read(OUTPUT_NORM)?, full)?,
            output,
            blocks,
            hyper,
        })
    }

    /// How many transformer blocks it has.
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Every trained tensor, with a name: an adapter's `blk.N.PROJECTION.lora_a` and `lora_b`,
    /// or the model's own tensor names.
    pub fn trained(&self) -> Vec<(String, &Var)> {
        let mut named: Vec<(String, &Var)> = Vec::new();
        if let Weight::Trained(var) = &self.embeddings {
            named.push((EMBEDDINGS.to_owned(), var));
        }
        for block in &self.blocks {
            for (name, weight) in block.vectors() {
                if let Weight::Trained(var) = weight {
                    named.push((name.clone(), var));
                }
            }
            for projection in block.projections() {
                if let Weight::Trained(var) = &projection.weight {
                    named.push((projection.name.clone(), var));
                }
                if let Some(adapter) = &projection.adapter {
                    let stem = projection.name.trim_end_matches(".weight");
                    named.push((format!("{stem}.lora_a"), &adapter.a));
                    named.push((format!("{stem}.lora_b"), &adapter.b));
                }
            }
        }
        if let Some(Weight::Trained(var)) = &self.output {
            named.push((OUTPUT.to_owned(), var));
        }
        if let Weight::Trained(var) = &self.output_norm {
            named.push((OUTPUT_NORM.to_owned(), var));
        }
        named
    }

    /// The model's tensors that training changed, by GGUF name, as they are now (adapters folded
    /// into their projections): what a tuned model file replaces.
    pub fn changed_tensors(&self) -> Result<Vec<(String, Tensor)>, FinetuneError> {
        let mut changed = Vec::new();
        let mut weight = |name: &str, weight: &Weight| {
            if let Weight::Trained(var) = weight {
                changed.push((name.to_owned(), var.as_tensor().clone()));
            }
        };
        weight(EMBEDDINGS, &self.embeddings);
        weight(OUTPUT_NORM, &self.output_norm);
        if let Some(output) = &self.output {
            weight(OUTPUT, output);
        }
        for block in &self.blocks {
            for (name, vector) in block.vectors() {
                weight(name, vector);
            }
        }
        for block in &self.blocks {
            for projection in block.projections() {
                if projection.adapter.is_some() || matches!(projection.weight, Weight::Trained(_)) {
                    changed.push((projection.name.clone(), projection.merged()?));
                }
            }
        }
        Ok(changed)
    }

    /// The adapters of a `lora` model under llama.cpp's adapter names: each adapted
    /// projection's `blk.N.PROJECTION.weight.lora_a` (rank × in) and `.lora_b` (out × rank).
    /// Empty for `full`.
    pub fn adapter_tensors(&self) -> Vec<(String, Tensor)> {
        let mut tensors = Vec::new();
        for block in &self.blocks {
            for projection in block.projections() {
                if let Some(adapter) = &projection.adapter {
                    let (a, b) = (adapter.a.as_tensor(), adapter.b.as_tensor());
                    tensors.push((format!("{}.lora_a", projection.name), a.clone()));
                    tensors.push((format!("{}.lora_b", projection.name), b.clone()));
                }
            }
        }
        tensors
    }

    /// The next-token logits (`positions.len()` × vocabulary) after each of `positions` of
    /// `tokens`, run from position 0.
    pub fn logits(&self, tokens: &[u32], positions: &[usize]) -> Result<Tensor, FinetuneError> {
        self.logits_after(None, tokens, positions)
    }

    /// Runs `tokens` from position 0 and keeps every block's keys and values, so that sequences
    /// starting with them (the examples of a step share the system prompt) run only the rest:
    /// see [`TrainableLlama::logits_after`]. Gradients flow through the kept keys and values.
    pub fn prefix(&self, tokens: &[u32]) -> Result<Prefix, FinetuneError> {
        let mut kept = Vec::with_capacity(self.blocks.len());
        self.run(None, tokens, Some(&mut kept))?;
        Ok(Prefix {
            len: tokens.len(),
            blocks: kept,
        })
    }

    /// The next-token logits after each of `positions` of `tokens`, which continue `prefix`
    /// (positions count from the first of `tokens`); from position 0 without one.
    pub fn logits_after(
        &self,
        prefix: Option<&Prefix>,
        tokens: &[u32],
        positions: &[usize],
    ) -> Result<Tensor, FinetuneError> {
        if let Some(&bad) = positions.iter().find(|&&p| p >= tokens.len()) {
            return Err(FinetuneError::Data(format!(
                "position {bad} is past the sequence of {} tokens",
                tokens.len()
            )));
        }
        let x = self.run(prefix, tokens, None)?;
        let picked = Tensor::from_vec(
            positions.iter().map(|&p| p as u32).collect::<Vec<_>>(),
            positions.len(),
            &Device::Cpu,
        )?;
        let h = &self.hyper;
        let last = rms_norm(
            &x.index_select(&picked, 0)?,
            self.output_norm.tensor(),
            h.eps,
        )?;
        Ok(project(
            &last,
            self.output.as_ref().unwrap_or(&self.embeddings),
        )?)
    }

    /// The hidden states of `tokens` after the last block (before the output norm), continuing
    /// `prefix`; with `keep`, each block's keys and values (rotated, before the heads are
    /// repeated) are pushed there.
    fn run(
        &self,
        prefix: Option<&Prefix>,
        tokens: &[u32],
        mut keep: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<Tensor, FinetuneError> {
        let h = &self.hyper;
        let start = prefix.map_or(0, |p| p.len);
        let count = tokens.len();
        if count == 0 || start + count > h.context {
            return Err(FinetuneError::Data(format!(
                "a sequence of {} tokens does not fit the model's context of {}",
                start + count,
                h.context
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= h.vocab) {
            return Err(FinetuneError::Data(format!(
                "token id {bad} is outside the vocabulary of {}",
                h.vocab
            )));
        }
        let ids = Tensor::from_slice(tokens, count, &Device::Cpu)?;
        let mut x = self.embeddings.tensor().index_select(&ids, 0)?;
        if h.embed_scale != 1.0 {
            x = (x * f64::from(h.embed_scale))?;
        }
        let global = rope_tables(h, h.rope_base, start, count)?;
        let local = match h.sliding_window {
            Some(_) if h.rope_base_local != h.rope_base => {
                Some(rope_tables(h, h.rope_base_local, start, count)?)
            }
            _ => None,
        };
        let mask = causal_mask(start, count, None)?;
        let sliding_mask = h
            .sliding_window
            .map(|window| causal_mask(start, count, Some(window)))
            .transpose()?;
        for (index, block) in self.blocks.iter().enumerate() {
            let ((cos, sin), mask) = match (block.sliding, &sliding_mask) {
                (true, Some(sliding_mask)) => (local.as_ref().unwrap_or(&global), sliding_mask),
                _ => (&global, &mask),
            };
            let normed = rms_norm(&x, block.attn_norm.1.tensor(), h.eps)?;
            let heads = |p: &Projection, n: usize| -> candle_core::Result<Tensor> {
                p.forward(&normed)?
                    .reshape((count, n, h.head_dim))?
                    .transpose(0, 1)?
                    .contiguous()
            };
            let (mut q, mut k) = (heads(&block.q, h.n_head)?, heads(&block.k, h.n_kv_head)?);
            if let Some([(_, q_norm), (_, k_norm)]) = &block.qk_norm {
                q = rms_norm(&q, q_norm.tensor(), h.eps)?;
                k = rms_norm(&k, k_norm.tensor(), h.eps)?;
            }
            let q = rope(&q, cos, sin, h)?;
            let mut k = rope(&k, cos, sin, h)?;
            let mut v = heads(&block.v, h.n_kv_head)?;
            if let Some(prefix) = prefix {
                let (prefix_k, prefix_v) = &prefix.blocks[index];
                k = Tensor::cat(&[prefix_k, &k], 1)?;
                v = Tensor::cat(&[prefix_v, &v], 1)?;
            }
            if let Some(kept) = keep.as_deref_mut() {
                kept.push((k.clone(), v.clone()));
            }
            let group = h.n_head / h.n_kv_head;
            let (k, v) = (repeat_heads(&k, group)?, repeat_heads(&v, group)?);
            let scores = (q.matmul(&k.t()?)? * f64::from(h.attn_scale))?.broadcast_add(mask)?;
            let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let attended = weights
                .matmul(&v)?
                .transpose(0, 1)?
                .reshape((count, h.n_head * h.head_dim))?;
            let mut attention = block.o.forward(&attended)?;
            if let Some([(_, post_attention), _]) = &block.post_norms {
                attention = rms_norm(&attention, post_attention.tensor(), h.eps)?;
            }
            x = (x + attention)?;
            let normed = rms_norm(&x, block.ffn_norm.1.tensor(), h.eps)?;
            let gate = block.gate.forward(&normed)?;
            // gemma3 gates with GELU (tanh approximation, as candle's `gelu`), the others SiLU.
            let gate = match h.arch {
                Arch::Gemma3 => gate.gelu()?,
                _ => silu(&gate)?,
            };
            let activated = (gate * block.up.forward(&normed)?)?;
            let mut feed_forward = block.down.forward(&activated)?;
            if let Some([_, (_, post_ffw)]) = &block.post_norms {
                feed_forward = rms_norm(&feed_forward, post_ffw.tensor(), h.eps)?;
            }
            x = (x + feed_forward)?;
        }
        Ok(x)
    }
}

/// The keys and values every block computed for a run of tokens from position 0, which later
/// runs continue (see [`TrainableLlama::prefix`]).
#[derive(Debug)]
pub struct Prefix {
    len: usize,
    /// Per block: keys and values, key/value heads × positions × head size.
    blocks: Vec<(Tensor, Tensor)>,
}

impl Prefix {
    /// The same keys and values cut from the graph that computed them, as leaves whose gradients
    /// a backward pass collects (returned beside it, per block): examples then run after the
    /// prefix one at a time, each with its own graph, and [`Prefix::pull`] carries their summed
    /// gradients back through the prefix's graph in one pass.
    pub fn leaves(&self) -> Result<(Prefix, Vec<(Var, Var)>), FinetuneError> {
        let mut blocks = Vec::with_capacity(self.blocks.len());
        let mut vars = Vec::with_capacity(self.blocks.len());
        for (k, v) in &self.blocks {
            let (k, v) = (
                Var::from_tensor(&k.detach())?,
                Var::from_tensor(&v.detach())?,
            );
            blocks.push((k.as_tensor().clone(), v.as_tensor().clone()));
            vars.push((k, v));
        }
        Ok((
            Prefix {
                len: self.len,
                blocks,
            },
            vars,
        ))
    }

    /// A scalar whose gradient through this prefix's graph is what `grads` (per block: the keys'
    /// and values' gradients, as collected on [`Prefix::leaves`]) asks of the prefix.
    pub fn pull(&self, grads: &[(Tensor, Tensor)]) -> Result<Tensor, FinetuneError> {
        let mut total: Option<Tensor> = None;
        for ((k, v), (grad_k, grad_v)) in self.blocks.iter().zip(grads) {
            let term = ((k * grad_k)?.sum_all()? + (v * grad_v)?.sum_all()?)?;
            total = Some(match total {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
        total.ok_or_else(|| FinetuneError::Training("an empty prefix has nothing to pull".into()))
    }

    /// The same keys and values without the graph that computed them (for scoring).
    pub fn detached(&self) -> Prefix {
        Prefix {
            len: self.len,
            blocks: self
                .blocks
                .iter()
                .map(|(k, v)| (k.detach(), v.detach()))
                .collect(),
        }
    }

    /// How many positions it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl TrainableLlama {
    /// The sequence to run for `example` (its prompt and answer up to the last trained token), the
    /// positions whose next-token logits are scored, and the tokens wanted there: the answer
    /// tokens trained on, each predicted from the position before it.
    pub(super) fn scored(example: &TrainExample) -> (Vec<u32>, Vec<usize>, Vec<u32>) {
        let (trained, _) = trained_tokens(example);
        let last = trained.last().copied().unwrap_or(0);
        let mut sequence = example.prompt.clone();
        sequence.extend_from_slice(&example.answer[..last]);
        let first = example.prompt.len() - 1;
        let positions = trained.iter().map(|&j| first + j).collect();
        let targets = trained.iter().map(|&j| example.answer[j]).collect();
        (sequence, positions, targets)
    }

    /// The mean cross-entropy of the example's trained answer tokens (see
    /// [`TrainableLlama::scored`]), as a graph to differentiate, and how many tokens it covers.
    pub fn answer_loss(&self, example: &TrainExample) -> Result<(Tensor, usize), FinetuneError> {
        let (sequence, positions, targets) = Self::scored(example);
        let logits = self.logits(&sequence, &positions)?;
        let targets = Tensor::from_vec(targets, positions.len(), &Device::Cpu)?;
        Ok((
            candle_nn::loss::cross_entropy(&logits, &targets)?,
            positions.len(),
        ))
    }
}

/// RMSNorm over the last dimension, spelled out so that it has a backward pass.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    let scale = (mean_square + f64::from(eps))?.sqrt()?.recip()?;
    x.broadcast_mul(&scale)?.broadcast_mul(weight)
}

/// `x · sigmoid(x)`, spelled out so that it has a backward pass.
fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    x / (x.neg()?.exp()? + 1.0)?
}

/// `cos` and `sin` of the rotary angles of positions `start..start + count` for the rotary
/// `base`: `count` × `rope_dim / 2`.
fn rope_tables(
    h: &Hyper,
    base: f32,
    start: usize,
    count: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    let pairs = h.rope_dim / 2;
    let mut cos = Vec::with_capacity(count * pairs);
    let mut sin = Vec::with_capacity(count * pairs);
    let inv_freqs: Vec<f32> = (0..pairs)
        .map(|i| 1.0 / base.powf((2 * i) as f32 / h.rope_dim as f32))
        .collect();
    for pos in start..start + count {
        for &inv_freq in &inv_freqs {
            let (s, c) = (pos as f32 * inv_freq).sin_cos();
            cos.push(c);
            sin.push(s);
        }
    }
    Ok((
        Tensor::from_vec(cos, (count, pairs), &Device::Cpu)?,
        Tensor::from_vec(sin, (count, pairs), &Device::Cpu)?,
    ))
}

/// Rotates the first `rope_dim` values of every head of `x` (heads × positions × head size):
/// pairs `(2i, 2i + 1)`, or `(i, i + rope_dim / 2)` in the GPT-NeoX layout.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, h: &Hyper) -> candle_core::Result<Tensor> {
    let (heads, count, head_dim) = x.dims3()?;
    let pairs = h.rope_dim / 2;
    let rotated = x.narrow(2, 0, h.rope_dim)?;
    let (first, second) = if h.rope_neox {
        (
            rotated.narrow(2, 0, pairs)?,
            rotated.narrow(2, pairs, pairs)?,
        )
    } else {
        let split = rotated.reshape((heads, count, pairs, 2))?;
        (
            split.narrow(3, 0, 1)?.squeeze(3)?,
            split.narrow(3, 1, 1)?.squeeze(3)?,
        )
    };
    let new_first = (first.broadcast_mul(cos)? - second.broadcast_mul(sin)?)?;
    let new_second = (first.broadcast_mul(sin)? + second.broadcast_mul(cos)?)?;
    let turned = if h.rope_neox {
        Tensor::cat(&[new_first, new_second], 2)?
    } else {
        Tensor::stack(&[new_first, new_second], 3)?.reshape((heads, count, h.rope_dim))?
    };
    if h.rope_dim == head_dim {
        Ok(turned)
    } else {
        Tensor::cat(
            &[turned, x.narrow(2, h.rope_dim, head_dim - h.rope_dim)?],
            2,
        )
    }
}

/// Each of the key/value heads repeated `group` times in place (grouped-query attention).
fn repeat_heads(x: &Tensor, group: usize) -> candle_core::Result<Tensor> {
    if group == 1 {
        return Ok(x.clone());
    }
    let (heads, count, head_dim) = x.dims3()?;
    x.unsqueeze(1)?
        .expand((heads, group, count, head_dim))?
        .contiguous()?
        .reshape((heads * group, count, head_dim))
}

/// The attention mask of `count` positions after `start` earlier ones (`count` × `start +
/// count`): 0 where a position sees the column (itself and every position before it, within
/// the last `window` positions when there is a window), −∞ elsewhere.
fn causal_mask(start: usize, count: usize, window: Option<usize>) -> candle_core::Result<Tensor> {
    let width = start + count;
    let values: Vec<f32> = (0..count)
        .flat_map(|row| {
            let pos = start + row;
            (0..width).map(move |col| {
                let seen = col <= pos && window.is_none_or(|w| pos - col < w);
                if seen {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(values, (count, width), &Device::Cpu)
}
