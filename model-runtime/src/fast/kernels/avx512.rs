//! AVX-512 kernels with VNNI: a whole group (four blocks, 128 values) per step, `vpdpbusd`
//! products (unsigned weights × signed activations), masked loads for a short final group.
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::{hsum128, prefetch};
use super::{group_len, ActRow, GROUP};

/// Lane `i` of the 16 i32 lanes belongs to block `i / 4` of the group.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn spread_index() -> __m512i {
    _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)
}

/// Mask selecting the first `n` of 64 bytes.
#[inline]
fn first_bytes(n: usize) -> __mmask64 {
    if n >= 64 {
        !0
    } else {
        (1u64 << n) - 1
    }
}

/// Up to four f16 values (mask `m` of the four) as f32 lanes, the rest zero.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn load_f16x4(p: *const u8, m: __mmask8) -> __m128 {
    _mm_cvtph_ps(_mm_maskz_loadu_epi16(m, p as *const i16))
}

/// Per-block scales (four f32 lanes) spread over the 16 lanes of their blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn spread(scales: __m128) -> __m512 {
    _mm512_permutexvar_ps(spread_index(), _mm512_castps128_ps512(scales))
}

/// The 4-bit values of one Q4_1 group as (first halves, second halves), zero past `r` blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_nibbles(p: *const u8, r: usize) -> (__m512i, __m512i) {
    let x = if r == 4 {
        _mm512_loadu_si512(p as *const __m512i)
    } else {
        _mm512_maskz_loadu_epi8(first_bytes(16 * r), p as *const i8)
    };
    let mask = _mm512_set1_epi8(0x0F);
    (
        _mm512_and_si512(x, mask),
        _mm512_and_si512(_mm512_srli_epi16(x, 4), mask),
    )
}

/// The biased 8-bit values of one Q8_0 group as (first halves, second halves).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q8_bytes(p: *const u8, r: usize) -> (__m512i, __m512i) {
    if r == 4 {
        (
            _mm512_loadu_si512(p as *const __m512i),
            _mm512_loadu_si512(p.add(64) as *const __m512i),
        )
    } else {
        let m = first_bytes(16 * r);
        (
            _mm512_maskz_loadu_epi8(m, p as *const i8),
            _mm512_maskz_loadu_epi8(m, p.add(16 * r) as *const i8),
        )
    }
}

/// Activation group `g`: (first halves, second halves).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn act_group(act: &ActRow<'_>, g: usize) -> (__m512i, __m512i) {
    let p = act.qs.as_ptr().add(g * GROUP);
    (
        _mm512_loadu_si512(p as *const __m512i),
        _mm512_loadu_si512(p.add(GROUP / 2) as *const __m512i),
    )
}

/// `-128 * (sum of the block's activation values)` placed in the first lane of each block, so
/// that the biased Q8_0 products come out exact.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q8_bias(act: &ActRow<'_>, g: usize) -> __m512i {
    let sums = _mm_loadu_si128(act.sum.as_ptr().add(4 * g) as *const __m128i);
    let scaled = _mm_slli_epi32(_mm_sub_epi32(_mm_setzero_si128(), sums), 7);
    _mm512_maskz_permutexvar_epi32(0x1111, spread_index(), _mm512_castsi128_si512(scaled))
}

/// Q4_1 row · activation row.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `w` is a Q4_1 row of `nb`
/// blocks in the kernel layout and `act` has the same number of blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_1(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let qs = w.as_ptr();
    let (d_ptr, m_ptr) = (qs.add(nb * 16), qs.add(nb * 18));
    let mut acc = _mm512_setzero_ps();
    let mut acc_min = _mm_setzero_ps();
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (lo, hi) = q4_nibbles(qs.add(g * 64), r);
        let (a_lo, a_hi) = act_group(&act, g);
        let isum = _mm512_dpbusd_epi32(
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a_lo),
            hi,
            a_hi,
        );
        let fmask = ((1u16 << r) - 1) as __mmask8;
        acc = add_scaled(
            acc,
            isum,
            load_f16x4(d_ptr.add(8 * g), fmask),
            group4(act.d, g),
        );
        acc_min = _mm_fmadd_ps(
            load_f16x4(m_ptr.add(8 * g), fmask),
            group4(act.s, g),
            acc_min,
        );
    }
    _mm512_reduce_add_ps(acc) + hsum128(acc_min)
}

/// Q4_1 row · four activation rows, the weights unpacked once.
///
/// # Safety
/// As [`dot_q4_1`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_q4_1(w: &[u8], nb: usize, acts: [ActRow<'_>; 4]) -> [f32; 4] {
    let qs = w.as_ptr();
    let (d_ptr, m_ptr) = (qs.add(nb * 16), qs.add(nb * 18));
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut acc_min = [_mm_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (lo, hi) = q4_nibbles(qs.add(g * 64), r);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let dw = load_f16x4(d_ptr.add(8 * g), fmask);
        let mw = load_f16x4(m_ptr.add(8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let isum = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a_lo),
                hi,
                a_hi,
            );
            acc[i] = add_scaled(acc[i], isum, dw, group4(acts[i].d, g));
            acc_min[i] = _mm_fmadd_ps(mw, group4(acts[i].s, g), acc_min[i]);
        }
    }
    [0, 1, 2, 3].map(|i| _mm512_reduce_add_ps(acc[i]) + hsum128(acc_min[i]))
}

/// Q8_0 row · activation row.
///
/// # Safety
/// As [`dot_q4_1`], for a Q8_0 row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let qs = w.as_ptr();
    let d_ptr = qs.add(nb * 32);
    let mut acc = _mm512_setzero_ps();
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (w_lo, w_hi) = q8_bytes(qs.add(g * GROUP), r);
        let (a_lo, a_hi) = act_group(&act, g);
        let isum = _mm512_dpbusd_epi32(
            _mm512_dpbusd_epi32(q8_bias(&act, g), w_lo, a_lo),
            w_hi,
            a_hi,
        );
        let fmask = ((1u16 << r) - 1) as __mmask8;
        acc = add_scaled(
            acc,
            isum,
            load_f16x4(d_ptr.add(8 * g), fmask),
            group4(act.d, g),
        );
    }
    _mm512_reduce_add_ps(acc)
}

/// Q8_0 row · four activation rows, the weights loaded once.
///
/// # Safety
/// As [`dot_q4_1`], for a Q8_0 row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_q8_0(w: &[u8], nb: usize, acts: [ActRow<'_>; 4]) -> [f32; 4] {
    let qs = w.as_ptr();
    let d_ptr = qs.add(nb * 32);
    let mut acc = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (w_lo, w_hi) = q8_bytes(qs.add(g * GROUP), r);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let dw = load_f16x4(d_ptr.add(8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let isum = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(q8_bias(&acts[i], g), w_lo, a_lo),
                w_hi,
                a_hi,
            );
            acc[i] = add_scaled(acc[i], isum, dw, group4(acts[i].d, g));
        }
    }
    reduce4(acc)
}

/// Four consecutive Q4_1 rows (`stride` bytes apart, starting at `w`) · one activation row;
/// prefetches `ahead` bytes from `distance` rows on. Four independent chains keep more
/// loads in flight than one row at a time.
///
/// # Safety
/// As [`dot_q4_1`]; `w` holds four rows; the prefetched bytes lie in the same matrix.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_rows4_q4_1(
    w: *const u8,
    stride: usize,
    nb: usize,
    act: ActRow<'_>,
    distance: usize,
    ahead: usize,
) -> [f32; 4] {
    prefetch(w.add(distance * stride), ahead);
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut acc_min = [_mm_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (a_lo, a_hi) = act_group(&act, g);
        let da = group4(act.d, g);
        let s = group4(act.s, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        for i in 0..4 {
            let row = w.add(i * stride);
            let (lo, hi) = q4_nibbles(row.add(g * 64), r);
            let isum = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a_lo),
                hi,
                a_hi,
            );
            let dw = load_f16x4(row.add(nb * 16 + 8 * g), fmask);
            acc[i] = add_scaled(acc[i], isum, dw, da);
            acc_min[i] = _mm_fmadd_ps(load_f16x4(row.add(nb * 18 + 8 * g), fmask), s, acc_min[i]);
        }
    }
    [0, 1, 2, 3].map(|i| _mm512_reduce_add_ps(acc[i]) + hsum128(acc_min[i]))
}

/// Four consecutive Q8_0 rows · one activation row (see [`dot_rows4_q4_1`]).
///
/// # Safety
/// As [`dot_rows4_q4_1`], for Q8_0 rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_rows4_q8_0(
    w: *const u8,
    stride: usize,
    nb: usize,
    act: ActRow<'_>,
    distance: usize,
    ahead: usize,
) -> [f32; 4] {
    prefetch(w.add(distance * stride), ahead);
    let mut acc = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (a_lo, a_hi) = act_group(&act, g);
        let bias = q8_bias(&act, g);
        let da = group4(act.d, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        for (i, acc) in acc.iter_mut().enumerate() {
            let row = w.add(i * stride);
            let (w_lo, w_hi) = q8_bytes(row.add(g * GROUP), r);
            let isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, w_lo, a_lo), w_hi, a_hi);
            let dw = load_f16x4(row.add(nb * 32 + 8 * g), fmask);
            *acc = add_scaled(*acc, isum, dw, da);
        }
    }
    reduce4(acc)
}

/// The values of one Q4_0 (`HIGH` false) or Q5_0 (`HIGH` true) group of a row of `nb` blocks
/// starting at `row`, as (first halves, second halves), zero past `r` blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q45_values<const HIGH: bool>(
    row: *const u8,
    nb: usize,
    g: usize,
    r: usize,
) -> (__m512i, __m512i) {
    let (lo, hi) = q4_nibbles(row.add(g * 64), r);
    if !HIGH {
        return (lo, hi);
    }
    // Four u16 of fifth bits per half: the byte mask of that half of the group.
    // A short last group reads its `r` u16 alone (a masked load: no byte past the row).
    let (first, second) = (row.add(nb * 16 + 8 * g), row.add(nb * 18 + 8 * g));
    let (first, second) = if r == 4 {
        (
            std::ptr::read_unaligned(first as *const u64),
            std::ptr::read_unaligned(second as *const u64),
        )
    } else {
        let m = ((1u16 << r) - 1) as __mmask8;
        (
            _mm_cvtsi128_si64(_mm_maskz_loadu_epi16(m, first as *const i16)) as u64,
            _mm_cvtsi128_si64(_mm_maskz_loadu_epi16(m, second as *const i16)) as u64,
        )
    };
    let sixteen = _mm512_set1_epi8(16);
    (
        _mm512_or_si512(lo, _mm512_maskz_mov_epi8(first, sixteen)),
        _mm512_or_si512(hi, _mm512_maskz_mov_epi8(second, sixteen)),
    )
}

/// `-offset * (sum of the block's activation values)` in the first lane of each block of group
/// `g` (the stored values are the true ones plus `offset`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn offset_bias(act: &ActRow<'_>, g: usize, offset: i32) -> __m512i {
    let sums = _mm_loadu_si128(act.sum.as_ptr().add(4 * g) as *const __m128i);
    let scaled = _mm_mullo_epi32(sums, _mm_set1_epi32(-offset));
    _mm512_maskz_permutexvar_epi32(0x1111, spread_index(), _mm512_castsi128_si512(scaled))
}

/// Byte offset of the scales and the value offset of a Q4_0 or Q5_0 row of `nb` blocks.
#[inline]
fn q45_layout<const HIGH: bool>(nb: usize) -> (usize, i32) {
    if HIGH {
        (nb * 20, 16)
    } else {
        (nb * 16, 8)
    }
}

/// Q4_0 (`HIGH` false) or Q5_0 (`HIGH` true) row · activation row.
///
/// # Safety
/// As [`dot_q4_1`], for a Q4_0 or Q5_0 row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q45_0<const HIGH: bool>(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let row = w.as_ptr();
    let (d_at, offset) = q45_layout::<HIGH>(nb);
    let mut acc = _mm512_setzero_ps();
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (lo, hi) = q45_values::<HIGH>(row, nb, g, r);
        let (a_lo, a_hi) = act_group(&act, g);
        let isum = _mm512_dpbusd_epi32(
            _mm512_dpbusd_epi32(offset_bias(&act, g, offset), lo, a_lo),
            hi,
            a_hi,
        );
        let fmask = ((1u16 << r) - 1) as __mmask8;
        acc = add_scaled(
            acc,
            isum,
            load_f16x4(row.add(d_at + 8 * g), fmask),
            group4(act.d, g),
        );
    }
    _mm512_reduce_add_ps(acc)
}

/// Q4_0 or Q5_0 row · four activation rows, the weights unpacked once.
///
/// # Safety
/// As [`dot_q45_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_q45_0<const HIGH: bool>(
    w: &[u8],
    nb: usize,
    acts: [ActRow<'_>; 4],
) -> [f32; 4] {
    let row = w.as_ptr();
    let (d_at, offset) = q45_layout::<HIGH>(nb);
    let mut acc = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (lo, hi) = q45_values::<HIGH>(row, nb, g, r);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let dw = load_f16x4(row.add(d_at + 8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let isum = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(offset_bias(&acts[i], g, offset), lo, a_lo),
                hi,
                a_hi,
            );
            acc[i] = add_scaled(acc[i], isum, dw, group4(acts[i].d, g));
        }
    }
    reduce4(acc)
}

/// Four consecutive Q4_0 or Q5_0 rows · one activation row (see [`dot_rows4_q4_1`]).
///
/// # Safety
/// As [`dot_rows4_q4_1`], for Q4_0 or Q5_0 rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_rows4_q45_0<const HIGH: bool>(
    w: *const u8,
    stride: usize,
    nb: usize,
    act: ActRow<'_>,
    distance: usize,
    ahead: usize,
) -> [f32; 4] {
    prefetch(w.add(distance * stride), ahead);
    let (d_at, offset) = q45_layout::<HIGH>(nb);
    let mut acc = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let (a_lo, a_hi) = act_group(&act, g);
        let bias = offset_bias(&act, g, offset);
        let da = group4(act.d, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        for (i, acc) in acc.iter_mut().enumerate() {
            let row = w.add(i * stride);
            let (lo, hi) = q45_values::<HIGH>(row, nb, g, r);
            let isum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo, a_lo), hi, a_hi);
            let dw = load_f16x4(row.add(d_at + 8 * g), fmask);
            *acc = add_scaled(*acc, isum, dw, da);
        }
    }
    reduce4(acc)
}

/// Two consecutive Q4_0 (`HIGH` false) or Q5_0 (`HIGH` true) rows (`stride` bytes apart from
/// `w`) · four activation rows: each activation group is loaded once for both weight rows and
/// each weight group unpacked once for the four activation rows. Every product equals
/// [`dot_q45_0`]'s bit for bit.
///
/// # Safety
/// As [`dot_q45_0`]; `w` holds two rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_rows2_q45_0<const HIGH: bool>(
    w: *const u8,
    stride: usize,
    nb: usize,
    acts: [ActRow<'_>; 4],
) -> [[f32; 4]; 2] {
    let (d_at, offset) = q45_layout::<HIGH>(nb);
    let (w0, w1) = (w, w.add(stride));
    let mut acc0 = [_mm512_setzero_ps(); 4];
    let mut acc1 = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let (lo0, hi0) = q45_values::<HIGH>(w0, nb, g, r);
        let (lo1, hi1) = q45_values::<HIGH>(w1, nb, g, r);
        let dw0 = load_f16x4(w0.add(d_at + 8 * g), fmask);
        let dw1 = load_f16x4(w1.add(d_at + 8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let bias = offset_bias(&acts[i], g, offset);
            let da = group4(acts[i].d, g);
            let isum0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo0, a_lo), hi0, a_hi);
            let isum1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo1, a_lo), hi1, a_hi);
            acc0[i] = add_scaled(acc0[i], isum0, dw0, da);
            acc1[i] = add_scaled(acc1[i], isum1, dw1, da);
        }
    }
    [reduce4(acc0), reduce4(acc1)]
}

/// Two consecutive Q4_1 rows (`stride` bytes apart from `w`) · four activation rows (see
/// [`dot4_rows2_q45_0`]); every product equals [`dot_q4_1`]'s bit for bit.
///
/// # Safety
/// As [`dot_q4_1`]; `w` holds two rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_rows2_q4_1(
    w: *const u8,
    stride: usize,
    nb: usize,
    acts: [ActRow<'_>; 4],
) -> [[f32; 4]; 2] {
    let (w0, w1) = (w, w.add(stride));
    let mut acc0 = [_mm512_setzero_ps(); 4];
    let mut acc1 = [_mm512_setzero_ps(); 4];
    let mut min0 = [_mm_setzero_ps(); 4];
    let mut min1 = [_mm_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let (lo0, hi0) = q4_nibbles(w0.add(g * 64), r);
        let (lo1, hi1) = q4_nibbles(w1.add(g * 64), r);
        let dw0 = load_f16x4(w0.add(nb * 16 + 8 * g), fmask);
        let dw1 = load_f16x4(w1.add(nb * 16 + 8 * g), fmask);
        let mw0 = load_f16x4(w0.add(nb * 18 + 8 * g), fmask);
        let mw1 = load_f16x4(w1.add(nb * 18 + 8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let da = group4(acts[i].d, g);
            let sa = group4(acts[i].s, g);
            let zero = _mm512_setzero_si512();
            let isum0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo0, a_lo), hi0, a_hi);
            let isum1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, lo1, a_lo), hi1, a_hi);
            acc0[i] = add_scaled(acc0[i], isum0, dw0, da);
            acc1[i] = add_scaled(acc1[i], isum1, dw1, da);
            min0[i] = _mm_fmadd_ps(mw0, sa, min0[i]);
            min1[i] = _mm_fmadd_ps(mw1, sa, min1[i]);
        }
    }
    let (sums0, sums1) = (reduce4(acc0), reduce4(acc1));
    [
        [0, 1, 2, 3].map(|i| sums0[i] + hsum128(min0[i])),
        [0, 1, 2, 3].map(|i| sums1[i] + hsum128(min1[i])),
    ]
}

/// Two consecutive Q8_0 rows (`stride` bytes apart from `w`) · four activation rows (see
/// [`dot4_rows2_q45_0`]); every product equals [`dot_q8_0`]'s bit for bit.
///
/// # Safety
/// As [`dot_q8_0`]; `w` holds two rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot4_rows2_q8_0(
    w: *const u8,
    stride: usize,
    nb: usize,
    acts: [ActRow<'_>; 4],
) -> [[f32; 4]; 2] {
    let (w0, w1) = (w, w.add(stride));
    let mut acc0 = [_mm512_setzero_ps(); 4];
    let mut acc1 = [_mm512_setzero_ps(); 4];
    for g in 0..nb.div_ceil(4) {
        let r = group_len(nb, g);
        let fmask = ((1u16 << r) - 1) as __mmask8;
        let (lo0, hi0) = q8_bytes(w0.add(g * GROUP), r);
        let (lo1, hi1) = q8_bytes(w1.add(g * GROUP), r);
        let dw0 = load_f16x4(w0.add(nb * 32 + 8 * g), fmask);
        let dw1 = load_f16x4(w1.add(nb * 32 + 8 * g), fmask);
        for i in 0..4 {
            let (a_lo, a_hi) = act_group(&acts[i], g);
            let bias = q8_bias(&acts[i], g);
            let da = group4(acts[i].d, g);
            let isum0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo0, a_lo), hi0, a_hi);
            let isum1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(bias, lo1, a_lo), hi1, a_hi);
            acc0[i] = add_scaled(acc0[i], isum0, dw0, da);
            acc1[i] = add_scaled(acc1[i], isum1, dw1, da);
        }
    }
    [reduce4(acc0), reduce4(acc1)]
}

/// `acc + isum · (dw · da)`: one group's integer sums (16 lanes, four per block) scaled by the
/// weight and activation block scales, added to the accumulator.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn add_scaled(acc: __m512, isum: __m512i, dw: __m128, da: __m128) -> __m512 {
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), spread(_mm_mul_ps(dw, da)), acc)
}

/// The four values of group `g` in `values` (the four block scales, or scale-sums, of one
/// 128-value group of an activation row); `values` must hold them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn group4(values: &[f32], g: usize) -> __m128 {
    debug_assert!(values.len() >= 4 * g + 4);
    _mm_loadu_ps(values.as_ptr().add(4 * g))
}

/// The sums of four accumulators.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn reduce4(acc: [__m512; 4]) -> [f32; 4] {
    [0, 1, 2, 3].map(|i| _mm512_reduce_add_ps(acc[i]))
}
