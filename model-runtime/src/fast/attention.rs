//! Rotary position embeddings and grouped-query attention over the f32 key/value cache.

use rayon::prelude::*;

use super::llama::Hyper;

/// Cosines and sines of the rotary angles, filled position by position as the cache grows.
pub(super) struct RopeTable {
    inv_freq: Vec<f32>,
    /// `[position][pair]` (cos, sin).
    table: Vec<(f32, f32)>,
}

impl RopeTable {
    /// A table for `rope_dim` rotated values per head and base frequency `base`.
    pub(super) fn new(rope_dim: usize, base: f32) -> RopeTable {
        let inv_freq = (0..rope_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / rope_dim as f32))
            .collect();
        RopeTable {
            inv_freq,
            table: Vec::new(),
        }
    }

    /// Makes sure positions `0..end` are in the table.
    pub(super) fn ensure(&mut self, end: usize) {
        let pairs = self.inv_freq.len();
        let have = self.table.len() / pairs.max(1);
        for pos in have..end {
            for &f in &self.inv_freq {
                let (sin, cos) = (pos as f32 * f).sin_cos();
                self.table.push((cos, sin));
            }
        }
    }

    /// Rotates every head (`head_dim` values each) of `x` for position `pos`: values
    /// `(2i, 2i + 1)` of the first `rope_dim` of each head turn by `pos * inv_freq[i]`.
    /// [`RopeTable::ensure`] must have covered `pos`.
    pub(super) fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let pairs = self.inv_freq.len();
        let angles = &self.table[pos * pairs..(pos + 1) * pairs];
        for head in x.chunks_exact_mut(head_dim) {
            for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(angles) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos - b * sin;
                pair[1] = a * sin + b * cos;
            }
        }
    }
}

/// Causal attention of `t_len` new tokens at positions `start..` over the cache.
///
/// `qkv` holds the token rows (`qkv_width` apart) with the rotated queries first; `keys` and
/// `values` are one layer's cache (`[kv_head][position][head_dim]`, positions up to
/// `start + t_len` written); `scores` is scratch of `n_head * (start + t_len)`; the result goes
/// to `out` as `[head][token][head_dim]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend(
    h: &Hyper,
    qkv: &[f32],
    qkv_width: usize,
    keys: &[f32],
    values: &[f32],
    start: usize,
    t_len: usize,
    scores: &mut [f32],
    out: &mut [f32],
    wide: bool,
) {
    let span = start + t_len;
    let hd = h.head_dim;
    let job = |(head, (out, scores)): (usize, (&mut [f32], &mut [f32]))| {
        let kv_base = (head / (h.n_head / h.n_kv_head)) * h.context * hd;
        let cache = HeadCache {
            keys: &keys[kv_base..kv_base + span * hd],
            values: &values[kv_base..kv_base + span * hd],
            hd,
        };
        for t in 0..t_len {
            let q = &qkv[t * qkv_width + head * hd..t * qkv_width + (head + 1) * hd];
            let n = start + t + 1;
            let out_row = &mut out[t * hd..(t + 1) * hd];
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set when the CPU has AVX2 and FMA.
                unsafe { attend_one_avx2(&cache, q, &mut scores[..n], out_row) };
                continue;
            }
            let _ = wide;
            attend_one(&cache, q, &mut scores[..n], out_row);
        }
    };
    let work = out
        .par_chunks_mut(t_len * hd)
        .zip(scores.par_chunks_mut(span))
        .enumerate();
    work.for_each(job);
}

/// One head's slice of the cache.
struct HeadCache<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    hd: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_one_avx2(cache: &HeadCache<'_>, q: &[f32], scores: &mut [f32], out: &mut [f32]) {
    attend_one(cache, q, scores, out)
}

/// Softmax-weighted sum of the values of positions `0..scores.len()` for one query.
#[inline(always)]
fn attend_one(cache: &HeadCache<'_>, q: &[f32], scores: &mut [f32], out: &mut [f32]) {
    let hd = cache.hd;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut max = f32::NEG_INFINITY;
    for (j, s) in scores.iter_mut().enumerate() {
        *s = dot(q, &cache.keys[j * hd..(j + 1) * hd]) * scale;
        max = max.max(*s);
    }
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    out.fill(0.0);
    for (j, &p) in scores.iter().enumerate() {
        let w = p * inv;
        for (o, &v) in out.iter_mut().zip(&cache.values[j * hd..(j + 1) * hd]) {
            *o += w * v;
        }
    }
}

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
