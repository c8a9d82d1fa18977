//! AVX2 kernels (with FMA and F16C): two blocks per step, `maddubs` products.
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::{group_len, ActRow, GROUP, GROUP_BLOCKS};

/// Sum of the eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum256(v: __m256) -> f32 {
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    hsum128(q)
}

/// Sum of the four lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum128(q: __m128) -> f32 {
    let h = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}

/// Sum of the four i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32_128(v: __m128i) -> i32 {
    let h = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
    let h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0b10_11_00_01));
    _mm_cvtsi128_si32(h)
}

/// Two f16 values at `p` as the low two lanes of an f32 vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16x2(p: *const u8) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32)))
}

/// Two f32 values at `p` as the low two lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f32x2(p: *const f32) -> __m128 {
    _mm_castpd_ps(_mm_load_sd(p as *const f64))
}

/// Signed i8 · i8 products of 32 lanes summed in groups of four into i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8_256(w: __m256i, a: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// 128-bit version of [`dot_i8_256`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8_128(w: __m128i, a: __m128i) -> __m128i {
    let p = _mm_maddubs_epi16(_mm_abs_epi8(w), _mm_sign_epi8(a, w));
    _mm_madd_epi16(p, _mm_set1_epi16(1))
}

/// Q4_1 row · activation row.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `w` is a Q4_1 row of `nb` blocks in the kernel
/// layout and `act` has the same number of blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_1(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let qs = w.as_ptr();
    let (d_ptr, m_ptr) = (qs.add(nb * 16), qs.add(nb * 18));
    let aq = act.qs.as_ptr() as *const u8;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = _mm256_setzero_ps();
    let mut acc_min = _mm_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let a_base = aq.add((b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS));
        let x = _mm256_loadu_si256(qs.add(b * 16) as *const __m256i);
        let lo = _mm256_and_si256(x, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
        let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
        let p = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, a_lo),
            _mm256_maddubs_epi16(hi, a_hi),
        );
        let isum = _mm256_madd_epi16(p, ones);
        let scale = _mm_mul_ps(
            load_f16x2(d_ptr.add(2 * b)),
            load_f32x2(act.d.as_ptr().add(b)),
        );
        let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        acc_min = _mm_fmadd_ps(
            load_f16x2(m_ptr.add(2 * b)),
            load_f32x2(act.s.as_ptr().add(b)),
            acc_min,
        );
        b += 2;
    }
    let mut total = hsum256(acc) + hsum128(acc_min);
    if b < nb {
        let a_base = aq.add((b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS));
        let mask = _mm_set1_epi8(0x0F);
        let x = _mm_loadu_si128(qs.add(b * 16) as *const __m128i);
        let lo = _mm_and_si128(x, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(x, 4), mask);
        let a_lo = _mm_loadu_si128(a_base as *const __m128i);
        let a_hi = _mm_loadu_si128(a_base.add(GROUP / 2) as *const __m128i);
        let p = _mm_add_epi16(_mm_maddubs_epi16(lo, a_lo), _mm_maddubs_epi16(hi, a_hi));
        let isum = hsum_epi32_128(_mm_madd_epi16(p, _mm_set1_epi16(1)));
        let d = half::f16::from_le_bytes([*d_ptr.add(2 * b), *d_ptr.add(2 * b + 1)]).to_f32();
        let m = half::f16::from_le_bytes([*m_ptr.add(2 * b), *m_ptr.add(2 * b + 1)]).to_f32();
        total += d * act.d[b] * isum as f32 + m * act.s[b];
    }
    total
}

/// Q8_0 row · activation row.
///
/// # Safety
/// As [`dot_q4_1`], for a Q8_0 row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let qs = w.as_ptr();
    let d_ptr = qs.add(nb * 32);
    let aq = act.qs.as_ptr() as *const u8;
    let flip = _mm256_set1_epi8(-128);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = _mm256_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let (g, k) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let r = group_len(nb, g);
        let w_base = qs.add(g * GROUP + 16 * k);
        let a_base = aq.add(g * GROUP + 16 * k);
        let w_lo = _mm256_xor_si256(_mm256_loadu_si256(w_base as *const __m256i), flip);
        let w_hi = _mm256_xor_si256(
            _mm256_loadu_si256(w_base.add(16 * r) as *const __m256i),
            flip,
        );
        let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
        let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
        let isum = _mm256_add_epi32(dot_i8_256(w_lo, a_lo), dot_i8_256(w_hi, a_hi));
        let scale = _mm_mul_ps(
            load_f16x2(d_ptr.add(2 * b)),
            load_f32x2(act.d.as_ptr().add(b)),
        );
        let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        b += 2;
    }
    let mut total = hsum256(acc);
    if b < nb {
        let (g, k) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let r = group_len(nb, g);
        let w_base = qs.add(g * GROUP + 16 * k);
        let a_base = aq.add(g * GROUP + 16 * k);
        let flip = _mm_set1_epi8(-128);
        let w_lo = _mm_xor_si128(_mm_loadu_si128(w_base as *const __m128i), flip);
        let w_hi = _mm_xor_si128(_mm_loadu_si128(w_base.add(16 * r) as *const __m128i), flip);
        let a_lo = _mm_loadu_si128(a_base as *const __m128i);
        let a_hi = _mm_loadu_si128(a_base.add(GROUP / 2) as *const __m128i);
        let isum = hsum_epi32_128(_mm_add_epi32(
            dot_i8_128(w_lo, a_lo),
            dot_i8_128(w_hi, a_hi),
        ));
        let d = half::f16::from_le_bytes([*d_ptr.add(2 * b), *d_ptr.add(2 * b + 1)]).to_f32();
        total += d * act.d[b] * isum as f32;
    }
    total
}

/// Four consecutive Q4_1 rows (`stride` bytes apart) · one activation row, for an even number
/// of blocks; each row's arithmetic is exactly [`dot_q4_1`]'s. Prefetches `ahead` bytes from
/// `distance` rows on.
///
/// # Safety
/// As [`dot_q4_1`]; `w` holds four rows, `nb` is even, and the prefetched bytes lie in the
/// same matrix.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_rows4_q4_1(
    w: *const u8,
    stride: usize,
    nb: usize,
    act: ActRow<'_>,
    distance: usize,
    ahead: usize,
) -> [f32; 4] {
    debug_assert!(nb.is_multiple_of(2));
    prefetch(w.add(distance * stride), ahead);
    let aq = act.qs.as_ptr() as *const u8;
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_min = [_mm_setzero_ps(); 4];
    let mut b = 0;
    while b < nb {
        let a_base = aq.add((b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS));
        let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
        let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
        let da = load_f32x2(act.d.as_ptr().add(b));
        let s = load_f32x2(act.s.as_ptr().add(b));
        for i in 0..4 {
            let row = w.add(i * stride);
            let x = _mm256_loadu_si256(row.add(b * 16) as *const __m256i);
            let lo = _mm256_and_si256(x, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
            let p = _mm256_add_epi16(
                _mm256_maddubs_epi16(lo, a_lo),
                _mm256_maddubs_epi16(hi, a_hi),
            );
            let isum = _mm256_madd_epi16(p, ones);
            let scale = _mm_mul_ps(load_f16x2(row.add(nb * 16 + 2 * b)), da);
            let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[i]);
            acc_min[i] = _mm_fmadd_ps(load_f16x2(row.add(nb * 18 + 2 * b)), s, acc_min[i]);
        }
        b += 2;
    }
    [0, 1, 2, 3].map(|i| hsum256(acc[i]) + hsum128(acc_min[i]))
}

/// Four consecutive Q8_0 rows · one activation row (see [`dot_rows4_q4_1`]).
///
/// # Safety
/// As [`dot_rows4_q4_1`], for Q8_0 rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_rows4_q8_0(
    w: *const u8,
    stride: usize,
    nb: usize,
    act: ActRow<'_>,
    distance: usize,
    ahead: usize,
) -> [f32; 4] {
    debug_assert!(nb.is_multiple_of(2));
    prefetch(w.add(distance * stride), ahead);
    let aq = act.qs.as_ptr() as *const u8;
    let flip = _mm256_set1_epi8(-128);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut b = 0;
    while b < nb {
        let (g, k) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let r = group_len(nb, g);
        let a_base = aq.add(g * GROUP + 16 * k);
        let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
        let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
        let da = load_f32x2(act.d.as_ptr().add(b));
        for (i, acc) in acc.iter_mut().enumerate() {
            let row = w.add(i * stride);
            let w_base = row.add(g * GROUP + 16 * k);
            let w_lo = _mm256_xor_si256(_mm256_loadu_si256(w_base as *const __m256i), flip);
            let w_hi = _mm256_xor_si256(
                _mm256_loadu_si256(w_base.add(16 * r) as *const __m256i),
                flip,
            );
            let isum = _mm256_add_epi32(dot_i8_256(w_lo, a_lo), dot_i8_256(w_hi, a_hi));
            let scale = _mm_mul_ps(load_f16x2(row.add(nb * 32 + 2 * b)), da);
            let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, *acc);
        }
        b += 2;
    }
    [0, 1, 2, 3].map(|i| hsum256(acc[i]))
}

/// Brings the bytes `[p, p + len)` towards the cache ahead of use.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn prefetch(p: *const u8, len: usize) {
    let mut at = 0;
    while at < len {
        _mm_prefetch(p.add(at) as *const i8, _MM_HINT_T0);
        at += 64;
    }
}

/// One Q4_1 row · four activation rows, for an even number of blocks; each product's
/// arithmetic is exactly [`dot_q4_1`]'s, the weights are unpacked once.
///
/// # Safety
/// As [`dot_q4_1`]; `nb` is even.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot4_q4_1(w: &[u8], nb: usize, acts: [ActRow<'_>; 4]) -> [f32; 4] {
    debug_assert!(nb.is_multiple_of(2));
    let qs = w.as_ptr();
    let (d_ptr, m_ptr) = (qs.add(nb * 16), qs.add(nb * 18));
    let mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_min = [_mm_setzero_ps(); 4];
    let mut b = 0;
    while b < nb {
        let offset = (b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS);
        let x = _mm256_loadu_si256(qs.add(b * 16) as *const __m256i);
        let lo = _mm256_and_si256(x, mask);
        let hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        let dw = load_f16x2(d_ptr.add(2 * b));
        let mw = load_f16x2(m_ptr.add(2 * b));
        for i in 0..4 {
            let a_base = (acts[i].qs.as_ptr() as *const u8).add(offset);
            let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
            let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
            let p = _mm256_add_epi16(
                _mm256_maddubs_epi16(lo, a_lo),
                _mm256_maddubs_epi16(hi, a_hi),
            );
            let isum = _mm256_madd_epi16(p, ones);
            let scale = _mm_mul_ps(dw, load_f32x2(acts[i].d.as_ptr().add(b)));
            let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[i]);
            acc_min[i] = _mm_fmadd_ps(mw, load_f32x2(acts[i].s.as_ptr().add(b)), acc_min[i]);
        }
        b += 2;
    }
    [0, 1, 2, 3].map(|i| hsum256(acc[i]) + hsum128(acc_min[i]))
}

/// One Q8_0 row · four activation rows (see [`dot4_q4_1`]).
///
/// # Safety
/// As [`dot_q8_0`]; `nb` is even.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot4_q8_0(w: &[u8], nb: usize, acts: [ActRow<'_>; 4]) -> [f32; 4] {
    debug_assert!(nb.is_multiple_of(2));
    let qs = w.as_ptr();
    let d_ptr = qs.add(nb * 32);
    let flip = _mm256_set1_epi8(-128);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut b = 0;
    while b < nb {
        let (g, k) = (b / GROUP_BLOCKS, b % GROUP_BLOCKS);
        let r = group_len(nb, g);
        let w_base = qs.add(g * GROUP + 16 * k);
        let w_lo = _mm256_xor_si256(_mm256_loadu_si256(w_base as *const __m256i), flip);
        let w_hi = _mm256_xor_si256(
            _mm256_loadu_si256(w_base.add(16 * r) as *const __m256i),
            flip,
        );
        let dw = load_f16x2(d_ptr.add(2 * b));
        for i in 0..4 {
            let a_base = (acts[i].qs.as_ptr() as *const u8).add(g * GROUP + 16 * k);
            let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
            let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
            let isum = _mm256_add_epi32(dot_i8_256(w_lo, a_lo), dot_i8_256(w_hi, a_hi));
            let scale = _mm_mul_ps(dw, load_f32x2(acts[i].d.as_ptr().add(b)));
            let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc[i]);
        }
        b += 2;
    }
    [0, 1, 2, 3].map(|i| hsum256(acc[i]))
}

/// 32 bytes, byte `i` all ones when bit `i` of `bits` is set (ggml's `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bytes_from_bits_32(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let bit_mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, bit_mask), _mm256_set1_epi64x(-1))
}

/// Q4_0 (`HIGH` false) or Q5_0 (`HIGH` true) row · activation row, two blocks per step.
///
/// # Safety
/// As [`dot_q4_1`], for a Q4_0 or Q5_0 row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q45_0<const HIGH: bool>(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let qs = w.as_ptr();
    let d_ptr = qs.add(if HIGH { nb * 20 } else { nb * 16 });
    let (high_lo, high_hi) = (qs.add(nb * 16), qs.add(nb * 18));
    let offset: i32 = if HIGH { 16 } else { 8 };
    let aq = act.qs.as_ptr() as *const u8;
    let mask = _mm256_set1_epi8(0x0F);
    let fifth = _mm256_set1_epi8(0x10);
    let ones = _mm256_set1_epi16(1);
    let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    let mut acc = _mm256_setzero_ps();
    let mut b = 0;
    while b + 2 <= nb {
        let a_base = aq.add((b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS));
        let x = _mm256_loadu_si256(qs.add(b * 16) as *const __m256i);
        let mut lo = _mm256_and_si256(x, mask);
        let mut hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
        if HIGH {
            let bits_lo = std::ptr::read_unaligned(high_lo.add(2 * b) as *const u32);
            let bits_hi = std::ptr::read_unaligned(high_hi.add(2 * b) as *const u32);
            lo = _mm256_or_si256(lo, _mm256_and_si256(bytes_from_bits_32(bits_lo), fifth));
            hi = _mm256_or_si256(hi, _mm256_and_si256(bytes_from_bits_32(bits_hi), fifth));
        }
        let a_lo = _mm256_loadu_si256(a_base as *const __m256i);
        let a_hi = _mm256_loadu_si256(a_base.add(GROUP / 2) as *const __m256i);
        let p = _mm256_add_epi16(
            _mm256_maddubs_epi16(lo, a_lo),
            _mm256_maddubs_epi16(hi, a_hi),
        );
        let bias = _mm256_setr_epi32(
            -offset * act.sum[b],
            0,
            0,
            0,
            -offset * act.sum[b + 1],
            0,
            0,
            0,
        );
        let isum = _mm256_add_epi32(_mm256_madd_epi16(p, ones), bias);
        let scale = _mm_mul_ps(
            load_f16x2(d_ptr.add(2 * b)),
            load_f32x2(act.d.as_ptr().add(b)),
        );
        let scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(scale), spread);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        b += 2;
    }
    let mut total = hsum256(acc);
    if b < nb {
        let a_base = aq.add((b / GROUP_BLOCKS) * GROUP + 16 * (b % GROUP_BLOCKS));
        let mut isum = -offset * act.sum[b];
        for j in 0..16 {
            let byte = *qs.add(b * 16 + j);
            let (mut lo, mut hi) = ((byte & 0x0F) as i32, (byte >> 4) as i32);
            if HIGH {
                let bits_lo = u16::from_le_bytes([*high_lo.add(2 * b), *high_lo.add(2 * b + 1)]);
                let bits_hi = u16::from_le_bytes([*high_hi.add(2 * b), *high_hi.add(2 * b + 1)]);
                lo |= (((bits_lo >> j) & 1) as i32) << 4;
                hi |= (((bits_hi >> j) & 1) as i32) << 4;
            }
            isum += lo * *(a_base.add(j) as *const i8) as i32;
            isum += hi * *(a_base.add(GROUP / 2 + j) as *const i8) as i32;
        }
        let d = half::f16::from_le_bytes([*d_ptr.add(2 * b), *d_ptr.add(2 * b + 1)]).to_f32();
        total += d * act.d[b] * isum as f32;
    }
    total
}
