//! Gemma 3 on candle's quantized tensors, from a `gemma3` GGUF file: the candle backend's model
//! for that architecture ([`crate::candle_lm::CandleLm`]).
//!
//! candle-transformers has a quantized Gemma 3 of its own, but it gates the feed-forward with SiLU
//! where Gemma uses GELU (tanh approximation), masks every cached position out of a prompt run
//! after position 0, and applies the sliding window one position wide of the model's; its output
//! is not Gemma's. This one follows llama.cpp's reading of the file: embeddings scaled by
//! √width; per block RMS norms before and after attention and feed-forward (the file stores the
//! norm weights with Gemma's `1 +` already added); RMS-normed queries and keys; NeoX rotary
//! embeddings, base `rope.freq_base` on global layers and `rope.local_freq_base` (10,000) on
//! sliding ones; every sixth layer global (`attention.sliding_window_type`), the others seeing the
//! last `attention.sliding_window` positions; scores scaled by 1/√head size; GELU-gated
//! feed-forward; output projection tied to the embeddings when the file has none.

use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use candle_transformers::utils::repeat_kv;

/// Every how many layers one is global, when the file does not say.
const DEFAULT_SLIDING_WINDOW_TYPE: usize = 6;
/// The rotary base of sliding layers, when the file does not say.
const DEFAULT_LOCAL_ROPE_BASE: f32 = 10_000.0;
/// The rotary base of global layers, when the file does not say.
const DEFAULT_ROPE_BASE: f32 = 1_000_000.0;

/// Rotary embedding tables (cos, sin) for positions `0..len`.
#[derive(Clone)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(head_dim: usize, base: f32, len: usize, device: &Device) -> Result<Self> {
        let inverse: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
            .collect();
        let inverse = Tensor::new(inverse.as_slice(), device)?.reshape((1, head_dim / 2))?;
        let angles = Tensor::arange(0, len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((len, 1))?
            .matmul(&inverse)?;
        Ok(Self {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    /// `x` (batch, heads, positions, head size) rotated for positions `start..`.
    fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let len = x.dim(2)?;
        let cos = self.cos.narrow(0, start, len)?;
        let sin = self.sin.narrow(0, start, len)?;
        candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
    }
}

/// One transformer block.
#[derive(Clone)]
struct Block {
    attn_norm: RmsNorm,
    q: QMatMul,
    k: QMatMul,
    v: QMatMul,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    out: QMatMul,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
    post_ffn_norm: RmsNorm,
    /// The window of a sliding layer; `None` for a global one.
    window: Option<usize>,
    rotary: Rotary,
    /// Keys and values of the positions before (batch, KV heads, positions, head size).
    cache: Option<(Tensor, Tensor)>,
}

/// The shape of the attention.
#[derive(Clone, Copy)]
struct Heads {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Block {
    fn attention(&mut self, x: &Tensor, start: usize, heads: Heads) -> Result<Tensor> {
        let (batch, len, _) = x.dims3()?;
        let split = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((batch, len, n, heads.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = self
            .q_norm
            .forward(&split(self.q.forward(x)?, heads.heads)?)?;
        let k = self
            .k_norm
            .forward(&split(self.k.forward(x)?, heads.kv_heads)?)?;
        let v = split(self.v.forward(x)?, heads.kv_heads)?;
        let q = self.rotary.apply(&q, start)?;
        let k = self.rotary.apply(&k, start)?;
        let (k, v) = match self.cache.take() {
            Some((cached_k, cached_v)) if start > 0 => (
                Tensor::cat(&[&cached_k, &k], 2)?,
                Tensor::cat(&[&cached_v, &v], 2)?,
            ),
            _ => (k, v),
        };
        self.cache = Some((k.clone(), v.clone()));
        let repeat = heads.heads / heads.kv_heads;
        let k = repeat_kv(k, repeat)?.contiguous()?;
        let v = repeat_kv(v, repeat)?.contiguous()?;
        let scale = 1.0 / (heads.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let scores = match visibility_mask(len, start, self.window, x.device())? {
            Some(mask) => scores.broadcast_add(&mask)?,
            None => scores,
        };
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let attended = weights.matmul(&v)?.transpose(1, 2)?.reshape((
            batch,
            len,
            heads.heads * heads.head_dim,
        ))?;
        self.out.forward(&attended)
    }

    fn forward(&mut self, x: &Tensor, start: usize, heads: Heads) -> Result<Tensor> {
        let attended = self.attention(&self.attn_norm.forward(x)?, start, heads)?;
        let x = (self.post_attn_norm.forward(&attended)? + x)?;
        let normed = self.ffn_norm.forward(&x)?;
        let gated = (self.gate.forward(&normed)?.gelu()? * self.up.forward(&normed)?)?;
        let fed = self.post_ffn_norm.forward(&self.down.forward(&gated)?)?;
        fed + x
    }
}

/// The additive mask (`len` × `start + len`: 0 where visible, -∞ where not) of a run of `len`
/// positions after `start` cached ones; `None` when every cached position is visible to all.
fn visibility_mask(
    len: usize,
    start: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let total = start + len;
    let hidden = |i: usize, j: usize| {
        let position = start + i;
        j > position || window.is_some_and(|w| position - j >= w)
    };
    if !(0..len).any(|i| (0..total).any(|j| hidden(i, j))) {
        return Ok(None);
    }
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| (0..total).map(move |j| (i, j)))
        .map(|(i, j)| if hidden(i, j) { f32::NEG_INFINITY } else { 0.0 })
        .collect();
    Tensor::from_vec(mask, (len, total), device).map(Some)
}

/// Gemma 3 weights and the KV cache of one sequence.
#[derive(Clone)]
pub struct Gemma3 {
    embeddings: Tensor,
    width: usize,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: QMatMul,
    heads: Heads,
}

impl Gemma3 {
    /// Reads the model of a `gemma3` GGUF file with room for `max_positions` positions.
    pub fn from_gguf<R: std::io::Seek + std::io::Read>(
        content: &gguf_file::Content,
        reader: &mut R,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let value = |key: &str| {
            content
                .metadata
                .get(&format!("gemma3.{key}"))
                .ok_or_else(|| candle_core::Error::Msg(format!("gemma3.{key} is missing")))
        };
        let count = |key: &str| value(key).and_then(|v| v.to_u32()).map(|v| v as usize);
        let number =
            |key: &str, default: f32| value(key).and_then(|v| v.to_f32()).unwrap_or(default);
        let heads = Heads {
            heads: count("attention.head_count")?,
            kv_heads: count("attention.head_count_kv")?,
            head_dim: count("attention.key_length")?,
        };
        let width = count("embedding_length")?;
        let eps = f64::from(number("attention.layer_norm_rms_epsilon", 1e-6));
        let window = count("attention.sliding_window")?;
        let pattern = count("attention.sliding_window_type").unwrap_or(DEFAULT_SLIDING_WINDOW_TYPE);
        let global = Rotary::new(
            heads.head_dim,
            number("rope.freq_base", DEFAULT_ROPE_BASE),
            max_positions,
            device,
        )?;
        let local = Rotary::new(
            heads.head_dim,
            number("rope.local_freq_base", DEFAULT_LOCAL_ROPE_BASE),
            max_positions,
            device,
        )?;
        let mut tensor = |name: &str| content.tensor(reader, name, device);
        let embedded = tensor("token_embd.weight")?;
        let embeddings = embedded.dequantize(device)?;
        let norm = RmsNorm::from_qtensor(tensor("output_norm.weight")?, eps)?;
        let output = match tensor("output.weight") {
            Ok(output) => output,
            Err(_) => embedded,
        };
        let mut blocks = Vec::new();
        for layer in 0..count("block_count")? {
            let mut matrix = |name: &str| {
                tensor(&format!("blk.{layer}.{name}.weight")).and_then(QMatMul::from_qtensor)
            };
            let (q, k, v, out) = (
                matrix("attn_q")?,
                matrix("attn_k")?,
                matrix("attn_v")?,
                matrix("attn_output")?,
            );
            let (gate, up, down) = (matrix("ffn_gate")?, matrix("ffn_up")?, matrix("ffn_down")?);
            let mut norm = |name: &str| {
                tensor(&format!("blk.{layer}.{name}.weight"))
                    .and_then(|weight| RmsNorm::from_qtensor(weight, eps))
            };
            let sliding = (layer + 1) % pattern != 0;
            blocks.push(Block {
                attn_norm: norm("attn_norm")?,
                q_norm: norm("attn_q_norm")?,
                k_norm: norm("attn_k_norm")?,
                post_attn_norm: norm("post_attention_norm")?,
                ffn_norm: norm("ffn_norm")?,
                post_ffn_norm: norm("post_ffw_norm")?,
                q,
                k,
                v,
                out,
                gate,
                up,
                down,
                window: sliding.then_some(window),
                rotary: if sliding {
                    local.clone()
                } else {
                    global.clone()
                },
                cache: None,
            });
        }
        Ok(Self {
            embeddings,
            width,
            blocks,
            norm,
            output: QMatMul::from_qtensor(output)?,
            heads,
        })
    }

    /// The last position's logits (batch, vocabulary) of `tokens` (batch, positions) placed
    /// after the `start` positions in the cache.
    pub fn forward(&mut self, tokens: &Tensor, start: usize) -> Result<Tensor> {
        let (batch, len) = tokens.dims2()?;
        let embedded = self
            .embeddings
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((batch, len, self.width))?;
        let mut x = (embedded * (self.width as f64).sqrt())?;
        for block in &mut self.blocks {
            x = block.forward(&x, start, self.heads)?;
        }
        let last = x.i((.., len - 1, ..))?;
        self.output.forward(&self.norm.forward(&last)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(mask: Option<Tensor>) -> Vec<Vec<bool>> {
        mask.map(|m| {
            m.to_vec2::<f32>()
                .unwrap()
                .into_iter()
                .map(|row| row.into_iter().map(f32::is_infinite).collect())
                .collect()
        })
        .unwrap_or_default()
    }

    #[test]
    fn the_mask_hides_later_positions_and_those_outside_the_window() {
        let device = Device::Cpu;
        // Three positions after two cached ones, window of 3: position 4 no longer sees 0 and 1.
        let mask = visibility_mask(3, 2, Some(3), &device).unwrap();
        let (f, t) = (false, true);
        assert_eq!(
            hidden(mask),
            vec![
                vec![f, f, f, t, t],
                vec![t, f, f, f, t],
                vec![t, t, f, f, f]
            ]
        );
        // Globally, only later positions are hidden; one decoded token sees everything.
        let mask = visibility_mask(2, 1, None, &device).unwrap();
        assert_eq!(hidden(mask), vec![vec![f, f, t], vec![f, f, f]]);
        assert!(visibility_mask(1, 7, None, &device).unwrap().is_none());
        assert!(visibility_mask(1, 2, Some(3), &device).unwrap().is_none());
        assert!(visibility_mask(1, 3, Some(3), &device).unwrap().is_some());
    }
}
