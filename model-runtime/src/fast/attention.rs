//! Rotary position embeddings and grouped-query attention over the f32 key/value cache.

use std::ops::Range;

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

/// One sequence's rows in [`attend`]: its layer cache and where its rows sit.
pub(super) struct AttendSegment<'a> {
    /// Keys, `[kv_head][position][head_dim]` with `capacity` positions per head.
    pub keys: &'a [f32],
    /// Values, laid out as the keys.
    pub values: &'a [f32],
    /// Positions per head in `keys` and `values`.
    pub capacity: usize,
    /// Position of the first row.
    pub start: usize,
    /// The segment's rows in `qkv` and in the output.
    pub rows: Range<usize>,
}

/// Tokens of one segment handled by one parallel job.
const JOB_TOKENS: usize = 16;

/// Causal attention of every segment's rows over its cache.
///
/// `qkv` holds the token rows (`qkv_width` apart) with the rotated queries first; each segment's
/// cache holds its positions up to `start + rows.len()`. The result goes to `out`, token-major
/// (`[row][head][head_dim]`). Jobs are (segment, up to [`JOB_TOKENS`] tokens, key/value head):
/// the query heads sharing a key/value head run together, so each cached key and value is read
/// once per group. With a `window`, a token sees only the positions less than `window` before
/// it (sliding-window layers).
pub(super) fn attend(
    h: &Hyper,
    window: Option<usize>,
    qkv: &[f32],
    qkv_width: usize,
    segments: &[AttendSegment<'_>],
    out: &mut [f32],
    wide: bool,
) {
    let hd = h.head_dim;
    let reps = h.n_head / h.n_kv_head;
    let q_dim = h.n_head * hd;
    let rows: usize = segments.iter().map(|s| s.rows.len()).sum();
    assert!(out.len() >= segments.iter().map(|s| s.rows.end).max().unwrap_or(0) * q_dim);
    assert!(rows <= out.len() / q_dim.max(1));
    let mut jobs = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let mut first = segment.rows.start;
        while first < segment.rows.end {
            let last = (first + JOB_TOKENS).min(segment.rows.end);
            jobs.extend((0..h.n_kv_head).map(|kv_head| (index, first..last, kv_head)));
            first = last;
        }
    }
    let out_ptr = SharedOut(out.as_mut_ptr());
    let job = |(index, tokens, kv_head): (usize, Range<usize>, usize)| {
        let out_ptr = &out_ptr;
        let segment = &segments[index];
        let span = segment.start + segment.rows.len();
        let kv_base = kv_head * segment.capacity * hd;
        let group = Group {
            keys: &segment.keys[kv_base..kv_base + span * hd],
            values: &segment.values[kv_base..kv_base + span * hd],
            hd,
            reps,
            window,
            scale: h.attn_scale,
        };
        let mut scores = vec![0f32; reps * span];
        for t in tokens {
            let pos = segment.start + t - segment.rows.start;
            let first = t * qkv_width + kv_head * reps * hd;
            let queries = &qkv[first..first + reps * hd];
            // SAFETY: the cells of (row t, key/value head) belong to this job alone (jobs have
            // distinct rows or heads) and lie inside `out` (asserted above).
            let out = unsafe {
                std::slice::from_raw_parts_mut(
                    out_ptr.0.add(t * q_dim + kv_head * reps * hd),
                    reps * hd,
                )
            };
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set when the CPU has AVX2 and FMA.
                unsafe { attend_group_avx2(&group, queries, pos, &mut scores, out) };
                continue;
            }
            let _ = wide;
            attend_group(&group, queries, pos, &mut scores, out);
        }
    };
    jobs.into_par_iter().for_each(job);
}

/// Output pointer shared by the attention jobs, each writing its own cells.
struct SharedOut(*mut f32);
// SAFETY: jobs write disjoint cells (see `attend`).
unsafe impl Sync for SharedOut {}

/// The cache of one key/value head and the shape of its query group.
struct Group<'a> {
    keys: &'a [f32],
    values: &'a [f32],
    hd: usize,
    /// Query heads per key/value head.
    reps: usize,
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
/// position `pos`; head `r`'s result goes to `out[r * hd..(r + 1) * hd]`. `scores` holds
/// `reps` rows of at least `pos + 1` values.
#[inline(always)]
fn attend_group(
    group: &Group<'_>,
    queries: &[f32],
    pos: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let (hd, n) = (group.hd, pos + 1);
    let span = scores.len() / group.reps;
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
    }
    out.fill(0.0);
    for j in first..n {
        let value = &group.values[j * hd..(j + 1) * hd];
        for r in 0..group.reps {
            let w = scores[r * span + j];
            let o = &mut out[r * hd..(r + 1) * hd];
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
