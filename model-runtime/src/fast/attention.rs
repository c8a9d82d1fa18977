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
    /// `(2i, 2i + 1)` of the first `rope_dim` of each head turn by `pos * inv_freq[i]`, or with
    /// `neox` values `(i, i + rope_dim / 2)` (the GPT-NeoX layout of qwen and gemma files).
    /// [`RopeTable::ensure`] must have covered `pos`.
    pub(super) fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize, neox: bool) {
        let pairs = self.inv_freq.len();
        let angles = &self.table[pos * pairs..(pos + 1) * pairs];
        for head in x.chunks_exact_mut(head_dim) {
            if neox {
                let (first, second) = head[..2 * pairs].split_at_mut(pairs);
                for ((a, b), &(cos, sin)) in first.iter_mut().zip(second).zip(angles) {
                    let (x0, x1) = (*a, *b);
                    *a = x0 * cos - x1 * sin;
                    *b = x0 * sin + x1 * cos;
                }
                continue;
            }
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
/// to `out` as `[head][token][head_dim]`. The query heads sharing a key/value head run
/// together, so each cached key and value is read once per group. With a `window`, a token sees
/// only the positions less than `window` before it (sliding-window layers).
#[allow(clippy::too_many_arguments)]
pub(super) fn attend(
    h: &Hyper,
    window: Option<usize>,
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
    let reps = h.n_head / h.n_kv_head;
    let job = |(kv_head, (out, scores)): (usize, (&mut [f32], &mut [f32]))| {
        let kv_base = kv_head * h.context * hd;
        let group = Group {
            keys: &keys[kv_base..kv_base + span * hd],
            values: &values[kv_base..kv_base + span * hd],
            hd,
            reps,
            span,
            t_len,
            window,
            scale: h.attn_scale,
        };
        for t in 0..t_len {
            let first = t * qkv_width + kv_head * reps * hd;
            let queries = &qkv[first..first + reps * hd];
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set when the CPU has AVX2 and FMA.
                unsafe { attend_group_avx2(&group, queries, start + t, scores, out) };
                continue;
            }
            let _ = wide;
            attend_group(&group, queries, start + t, scores, out);
        }
    };
    let work = out
        .par_chunks_mut(reps * t_len * hd)
        .zip(scores.par_chunks_mut(reps * span))
        .enumerate();
    work.for_each(job);
}

/// The cache of one key/value head and the shape of its query group.
struct Group<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    hd: usize,
    /// Query heads per key/value head.
    reps: usize,
    /// Stride of a head's scores.
    span: usize,
    /// Tokens per head in the output.
    t_len: usize,
    /// Sliding window, if any.
    window: Option<usize>,
    /// Factor of the query-key products.
    scale: f32,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_group_avx2(
    group: &Group<'_>,
    queries: &[f32],
    pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    attend_group(group, queries, pos, scores, out)
}

/// Softmax-weighted sums of the values of positions `0..=pos` for the group's queries at
/// position `pos` (token `pos - start`); head `r`'s result goes to `out[(r * t_len + t) * hd..]`.
#[inline(always)]
fn attend_group(
    group: &Group<'_>,
    queries: &[f32],
    pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (hd, span, n) = (group.hd, group.span, pos + 1);
    let t = pos + group.t_len - span;
    let scale = group.scale;
    let first = group.window.map_or(0, |w| n.saturating_sub(w));
    for j in first..n {
        let key = &group.keys[j * hd..(j + 1) * hd];
        for r in 0..group.reps {
            scores[r * span + j] = dot(&queries[r * hd..(r + 1) * hd], key) * scale;
        }
    }
    for r in 0..group.reps {
        let row = &mut scores[r * span + first..r * span + n];
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0.0;
        for s in row.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let inv = 1.0 / sum;
        for s in row.iter_mut() {
            *s *= inv;
        }
        out[(r * group.t_len + t) * hd..(r * group.t_len + t + 1) * hd].fill(0.0);
    }
    for j in first..n {
        let value = &group.values[j * hd..(j + 1) * hd];
        for r in 0..group.reps {
            let w = scores[r * span + j];
            let o = &mut out[(r * group.t_len + t) * hd..(r * group.t_len + t + 1) * hd];
            for (o, &v) in o.iter_mut().zip(value) {
                *o += w * v;
            }
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
