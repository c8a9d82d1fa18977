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
    /// `(prefix, length)`: the cache's first `length` positions are those of the shared prefix
    /// `prefix` (the same in every segment naming it), so segments of one prefix read it once.
    pub shared: Option<(u64, usize)>,
}

/// Tokens of one segment handled by one parallel job.
const JOB_TOKENS: usize = 16;

/// Rows of segments of one shared prefix handled by one parallel job (a segment's rows may be
/// spread over several jobs, so that a segment with a long new prompt does not make one job
/// much longer than the others).
const JOB_SHARED_ROWS: usize = 8;

/// A parallel job of [`attend`].
enum Job {
    /// Rows `tokens` of segment `segment`, all over its own cache.
    Alone {
        segment: usize,
        tokens: Range<usize>,
        kv_head: usize,
    },
    /// Rows `.1` of each segment `.0` of `pieces`, whose first `prefix` positions are shared:
    /// every row reads those from one copy (the first piece's cache), which stays in the caches
    /// of the CPU.
    Shared {
        pieces: Vec<(usize, Range<usize>)>,
        prefix: usize,
        kv_head: usize,
    },
}

/// Causal attention of every segment's rows over its cache.
///
/// `qkv` holds the token rows (`qkv_width` apart) with the rotated queries first; each segment's
/// cache holds its positions up to `start + rows.len()`. The result goes to `out`, token-major
/// (`[row][head][head_dim]`). The query heads sharing a key/value head run in one job, head after
/// head over the same keys and values (each head scores eight keys at a time and sums its output
/// in registers); segments with a shared prefix (see [`AttendSegment::shared`]) run together
/// too, every row reading the prefix from one copy.
/// Both ways add the same products in the same order, so the results are the same. With a
/// `window`, a token sees only the positions less than `window` before it (sliding-window
/// layers; a row reads the part of a shared prefix inside its window).
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
    assert!(out.len() >= segments.iter().map(|s| s.rows.end).max().unwrap_or(0) * q_dim);
    let mut jobs = Vec::new();
    let mut alone = Vec::new();
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        match segment.shared {
            Some((prefix, len)) if len > 0 => match groups.iter_mut().find(|(p, _)| *p == prefix) {
                Some((_, members)) => members.push(index),
                None => groups.push((prefix, vec![index])),
            },
            _ => alone.push(index),
        }
    }
    for (_, members) in groups {
        if members.len() < 2 {
            alone.extend(members);
            continue;
        }
        let mut pieces: Vec<(usize, Range<usize>)> = Vec::new();
        let mut rows = 0;
        for &index in &members {
            let segment = &segments[index];
            let mut first = segment.rows.start;
            while first < segment.rows.end {
                let last = (first + JOB_SHARED_ROWS - rows).min(segment.rows.end);
                pieces.push((index, first..last));
                rows += last - first;
                first = last;
                if rows == JOB_SHARED_ROWS {
                    jobs.extend(shared_jobs(segments, std::mem::take(&mut pieces), h));
                    rows = 0;
                }
            }
        }
        if !pieces.is_empty() {
            jobs.extend(shared_jobs(segments, pieces, h));
        }
    }
    for index in alone {
        let segment = &segments[index];
        let mut first = segment.rows.start;
        while first < segment.rows.end {
            let last = (first + JOB_TOKENS).min(segment.rows.end);
            jobs.extend((0..h.n_kv_head).map(|kv_head| Job::Alone {
                segment: index,
                tokens: first..last,
                kv_head,
            }));
            first = last;
        }
    }
    let out_ptr = SharedOut(out.as_mut_ptr());
    let scale = h.attn_scale;
    // The query heads of row `t` for `kv_head`, and its output cells.
    let row = |t: usize, kv_head: usize| {
        let out_ptr = &out_ptr;
        let first = t * qkv_width + kv_head * reps * hd;
        let queries = &qkv[first..first + reps * hd];
        // SAFETY: the cells of (row t, key/value head) belong to one job alone (jobs have
        // distinct rows or heads) and lie inside `out` (asserted above).
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                out_ptr.0.add(t * q_dim + kv_head * reps * hd),
                reps * hd,
            )
        };
        (queries, out)
    };
    let job = |job: Job| match job {
        Job::Alone {
            segment,
            tokens,
            kv_head,
        } => {
            let segment = &segments[segment];
            let group = segment_group(segment, kv_head, hd, reps, window, scale);
            let mut scores = vec![0f32; reps * (segment.start + segment.rows.len())];
            for t in tokens {
                let pos = segment.start + t - segment.rows.start;
                let (queries, out) = row(t, kv_head);
                #[cfg(target_arch = "x86_64")]
                if wide {
                    // SAFETY: `wide` is only set when the CPU has AVX2 and FMA.
                    unsafe { attend_group_avx2(&group, queries, pos, &mut scores, out) };
                    continue;
                }
                let _ = wide;
                attend_group(&group, queries, pos, &mut scores, out);
            }
        }
        Job::Shared {
            pieces,
            prefix,
            kv_head,
        } => {
            let mut rows = Vec::new();
            for (index, tokens) in &pieces {
                let segment = &segments[*index];
                let own = segment_group(segment, kv_head, hd, reps, window, scale);
                for t in tokens.clone() {
                    let pos = segment.start + t - segment.rows.start;
                    let (queries, out) = row(t, kv_head);
                    rows.push(SharedRow {
                        group: own,
                        queries,
                        pos,
                        scores: vec![0f32; reps * (pos + 1)],
                        out,
                    });
                }
            }
            let first = &segments[pieces[0].0];
            let shared = segment_group(first, kv_head, hd, reps, window, scale);
            #[cfg(target_arch = "x86_64")]
            if wide {
                // SAFETY: `wide` is only set when the CPU has AVX2 and FMA.
                unsafe { attend_shared_avx2(&shared, prefix, &mut rows) };
                return;
            }
            attend_shared(&shared, prefix, &mut rows);
        }
    };
    jobs.into_par_iter().for_each(job);
}

/// The jobs (one per key/value head) of the rows `pieces` of segments of one shared prefix: the
/// prefix they read from one copy is what every one of their segments holds of it before its
/// first row.
fn shared_jobs(
    segments: &[AttendSegment<'_>],
    pieces: Vec<(usize, Range<usize>)>,
    h: &Hyper,
) -> Vec<Job> {
    let prefix = pieces
        .iter()
        .map(|(index, _)| {
            let segment = &segments[*index];
            segment.shared.map_or(0, |(_, len)| len.min(segment.start))
        })
        .min()
        .unwrap_or(0);
    (0..h.n_kv_head)
        .map(|kv_head| Job::Shared {
            pieces: pieces.clone(),
            prefix,
            kv_head,
        })
        .collect()
}

/// The cache of key/value head `kv_head` of `segment` up to its last row.
fn segment_group<'a>(
    segment: &AttendSegment<'a>,
    kv_head: usize,
    hd: usize,
    reps: usize,
    window: Option<usize>,
    scale: f32,
) -> Group<'a> {
    let span = segment.start + segment.rows.len();
    let kv_base = kv_head * segment.capacity * hd;
    Group {
        keys: &segment.keys[kv_base..kv_base + span * hd],
        values: &segment.values[kv_base..kv_base + span * hd],
        hd,
        reps,
        window,
        scale,
    }
}

/// One row of a [`Job::Shared`]: its own cache, queries, position, scores and output.
struct SharedRow<'a> {
    group: Group<'a>,
    queries: &'a [f32],
    pos: usize,
    scores: Vec<f32>,
    out: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_shared_avx2(shared: &Group<'_>, prefix: usize, rows: &mut [SharedRow<'_>]) {
    attend_shared(shared, prefix, rows)
}

/// [`attend_group`] for many rows whose first `prefix` positions are `shared`'s: every row reads
/// them from that one copy instead of its own (so the prefix stays in the CPU's caches across
/// the rows). With a sliding window, a row reads the part of the prefix inside its window. The
/// products and sums are those of [`attend_group`], in the same order.
#[inline(always)]
fn attend_shared(shared: &Group<'_>, prefix: usize, rows: &mut [SharedRow<'_>]) {
    let (hd, reps, scale) = (shared.hd, shared.reps, shared.scale);
    for row in rows.iter_mut() {
        let n = row.pos + 1;
        let first = shared.window.map_or(0, |w| n.saturating_sub(w));
        // The row sees positions `first..n`: those before `prefix` from the shared copy
        // (`shared_from..prefix`, none when the window starts past the prefix), the others from
        // its own cache (`own_from..n`).
        let (shared_from, own_from) = (first.min(prefix), first.max(prefix));
        let shared_len = prefix - shared_from;
        for r in 0..reps {
            let query = &row.queries[r * hd..(r + 1) * hd];
            let scores = &mut row.scores[r * n + first..(r + 1) * n];
            let (shared_scores, own_scores) = scores.split_at_mut(shared_len);
            key_scores(
                query,
                &shared.keys[shared_from * hd..prefix * hd],
                hd,
                scale,
                shared_scores,
            );
            key_scores(
                query,
                &row.group.keys[own_from * hd..n * hd],
                hd,
                scale,
                own_scores,
            );
            softmax(scores);
            let out = &mut row.out[r * hd..(r + 1) * hd];
            out.fill(0.0);
            add_weighted_values(
                &scores[..shared_len],
                &shared.values[shared_from * hd..prefix * hd],
                out,
            );
            add_weighted_values(
                &scores[shared_len..],
                &row.group.values[own_from * hd..n * hd],
                out,
            );
        }
    }
}

/// `scores[j] = dot(query, key j) * scale` for the consecutive keys of `keys`, eight keys at a
/// time (eight independent sums in flight), each product and sum exactly [`dot`]'s.
#[inline(always)]
fn key_scores(query: &[f32], keys: &[f32], hd: usize, scale: f32, scores: &mut [f32]) {
    const KEYS: usize = 8;
    let mut j = 0;
    if hd.is_multiple_of(8) {
        while j + KEYS <= scores.len() {
            let block = &keys[j * hd..(j + KEYS) * hd];
            let mut acc = [[0f32; 8]; KEYS];
            for c in (0..hd).step_by(8) {
                let q = &query[c..c + 8];
                for (k, acc) in acc.iter_mut().enumerate() {
                    let key = &block[k * hd + c..k * hd + c + 8];
                    for i in 0..8 {
                        acc[i] += q[i] * key[i];
                    }
                }
            }
            for (k, acc) in acc.iter().enumerate() {
                scores[j + k] = lane_sum(acc, &[], &[]) * scale;
            }
            j += KEYS;
        }
    }
    for (j, score) in scores.iter_mut().enumerate().skip(j) {
        *score = dot(query, &keys[j * hd..(j + 1) * hd]) * scale;
    }
}

/// `out += sum over j of weights[j] * value j` for the consecutive values of `values`, in the
/// order of `j` for every element, 64 elements at a time held in registers.
#[inline(always)]
fn add_weighted_values(weights: &[f32], values: &[f32], out: &mut [f32]) {
    const LANES: usize = 64;
    let hd = out.len();
    let mut d = 0;
    while d + LANES <= hd {
        let mut acc = [0f32; LANES];
        acc.copy_from_slice(&out[d..d + LANES]);
        for (j, &w) in weights.iter().enumerate() {
            let value = &values[j * hd + d..j * hd + d + LANES];
            for (a, &v) in acc.iter_mut().zip(value) {
                *a += w * v;
            }
        }
        out[d..d + LANES].copy_from_slice(&acc);
        d += LANES;
    }
    if d < hd {
        for (j, &w) in weights.iter().enumerate() {
            let value = &values[j * hd + d..(j + 1) * hd];
            for (o, &v) in out[d..].iter_mut().zip(value) {
                *o += w * v;
            }
        }
    }
}

/// Output pointer shared by the attention jobs, each writing its own cells.
struct SharedOut(*mut f32);
// SAFETY: jobs write disjoint cells (see `attend`).
unsafe impl Sync for SharedOut {}

/// The cache of one key/value head and the shape of its query group.
#[derive(Clone, Copy)]
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
    let first = group.window.map_or(0, |w| n.saturating_sub(w));
    let (keys, values) = (
        &group.keys[first * hd..n * hd],
        &group.values[first * hd..n * hd],
    );
    for r in 0..group.reps {
        let query = &queries[r * hd..(r + 1) * hd];
        let scores = &mut scores[r * span + first..r * span + n];
        key_scores(query, keys, hd, group.scale, scores);
        softmax(scores);
        let out = &mut out[r * hd..(r + 1) * hd];
        out.fill(0.0);
        add_weighted_values(scores, values, out);
    }
}

/// Turns scores into probabilities in place.
#[inline(always)]
fn softmax(row: &mut [f32]) {
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
    lane_sum(&acc, ra, rb)
}

/// The end of [`dot`]: the eight partial sums in order, plus the products of the leftover
/// values (`a` and `b` past the last eight).
#[inline(always)]
fn lane_sum(acc: &[f32; 8], a: &[f32], b: &[f32]) -> f32 {
    let tail: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::llama::Arch;
    use rand::{Rng, SeedableRng};

    fn hyper() -> Hyper {
        Hyper {
            arch: Arch::Llama,
            n_layer: 1,
            dim: 32,
            n_head: 4,
            n_kv_head: 2,
            head_dim: 8,
            rope_dim: 8,
            ffn_dim: 64,
            vocab: 16,
            eps: 1e-5,
            rope_base: 10_000.0,
            context: 64,
            rope_neox: false,
            embed_scale: 1.0,
            attn_scale: 8f32.sqrt().recip(),
            sliding_window: None,
            sliding_period: 0,
            rope_base_local: 10_000.0,
        }
    }

    /// Attention of three sequences whose caches start with the same 9 positions: reading the
    /// prefix once for all of them gives exactly the results of reading each cache alone, also
    /// with sliding windows that cut into the prefix, skip it, or hold it all.
    #[test]
    fn a_shared_prefix_gives_the_results_of_separate_caches() {
        let h = hyper();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let (capacity, hd, prefix) = (20, h.head_dim, 9);
        let cache_len = h.n_kv_head * capacity * hd;
        let (shared_keys, shared_values) = (random(cache_len), random(cache_len));
        // (start, rows): three sequences decoding one token each (the first one's cache the
        // shortest: the copy the others read the prefix from) and one in prefill, with more
        // rows than one job takes.
        let shapes = [(9, 1), (12, 1), (15, 1), (9, 11)];
        let mut caches = Vec::new();
        for _ in shapes {
            let (mut keys, mut values) = (random(cache_len), random(cache_len));
            for kvh in 0..h.n_kv_head {
                let at = kvh * capacity * hd..(kvh * capacity + prefix) * hd;
                keys[at.clone()].copy_from_slice(&shared_keys[at.clone()]);
                values[at.clone()].copy_from_slice(&shared_values[at]);
            }
            caches.push((keys, values));
        }
        let rows: usize = shapes.iter().map(|(_, r)| r).sum();
        let qkv_width = (h.n_head + 2 * h.n_kv_head) * hd;
        let qkv = random(rows * qkv_width);
        let run = |shared: Option<(u64, usize)>, window: Option<usize>, wide: bool| {
            let mut first = 0;
            let segments: Vec<AttendSegment<'_>> = shapes
                .iter()
                .zip(&caches)
                .map(|(&(start, n), (keys, values))| {
                    first += n;
                    AttendSegment {
                        keys,
                        values,
                        capacity,
                        start,
                        rows: first - n..first,
                        shared,
                    }
                })
                .collect();
            let mut out = vec![0f32; rows * h.n_head * hd];
            attend(&h, window, &qkv, qkv_width, &segments, &mut out, wide);
            out
        };
        #[cfg(target_arch = "x86_64")]
        let wide = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        for wide in [false, wide] {
            for window in [None, Some(4), Some(8), Some(12), Some(30)] {
                let alone = run(None, window, wide);
                assert!(alone.iter().any(|v| *v != 0.0));
                assert_eq!(
                    run(Some((1, prefix)), window, wide),
                    alone,
                    "wide: {wide}, window: {window:?}"
                );
            }
        }
    }
}
