//! AVX-512 (BW) kernels for the K-quant formats against Q8_K activations: the AVX2 scheme at
//! twice the width, 64 values per `maddubs` (two 32-value pieces of a super-block side by side).
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2_kquant::hsum_epi32;
use super::{f16_at, k4_scales, ActRow, SUPER_BLOCK};

/// The 32-byte pieces of `a` at byte offsets `first` and `second`, side by side.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn pieces(a: *const i8, first: usize, second: usize) -> __m512i {
    _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(a.add(first) as *const __m256i)),
        _mm256_loadu_si256(a.add(second) as *const __m256i),
        1,
    )
}

/// Sixteen i16 lanes of `low` then sixteen of `high`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn two_scales(low: i16, high: i16) -> __m512i {
    _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set1_epi16(low)),
        _mm256_set1_epi16(high),
        1,
    )
}

/// Q4_K (`FIVE` false) or Q5_K (`FIVE` true) row of `nb` super-blocks · Q8_K activation row.
///
/// # Safety
/// The CPU must support AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; `w` holds `nb` blocks of the
/// format and `act` has a Q8_K form of `nb` super-blocks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_k<const FIVE: bool>(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    dotn_q4_k::<FIVE, 1>(w, nb, [act])[0]
}

/// Q4_K (`FIVE` false) or Q5_K (`FIVE` true) row · `N` Q8_K activation rows: each block's
/// values and scales are unpacked once and used `N` times. Every result equals [`dot_q4_k`]'s
/// bit for bit (the same operations in the same order per activation row).
///
/// # Safety
/// As [`dot_q4_k`], for each of the activation rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dotn_q4_k<const FIVE: bool, const N: usize>(
    w: &[u8],
    nb: usize,
    acts: [ActRow<'_>; N],
) -> [f32; N] {
    let bytes = if FIVE { 176 } else { 144 };
    let mut acc = [_mm512_setzero_ps(); N];
    let mut mins_total = [0f32; N];
    for b in 0..nb {
        let block = &w[b * bytes..(b + 1) * bytes];
        let (values, value_scales, mins) = q4_k_unpack::<FIVE>(block);
        let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
        for (i, act) in acts.iter().enumerate() {
            let (isum, msum) = q4_k_block_sums(&values, &value_scales, mins, act, b);
            let da = act.kd[b];
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(d * da), _mm512_cvtepi32_ps(isum), acc[i]);
            mins_total[i] += dmin * da * msum as f32;
        }
    }
    let mut sums = [0f32; N];
    for i in 0..N {
        sums[i] = _mm512_reduce_add_ps(acc[i]) - mins_total[i];
    }
    sums
}

/// The unsigned values of a Q4_K or Q5_K block as two pairs of chunks (low nibbles, high
/// nibbles; chunks `2 pair` and `2 pair + 1` side by side), the i16 scale of every lane, and the
/// block's eight 6-bit minimums, each twice, as sixteen i16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_unpack<const FIVE: bool>(
    block: &[u8],
) -> ([[__m512i; 2]; 2], [[__m512i; 2]; 2], __m256i) {
    let qs_at = if FIVE { 48 } else { 16 };
    let mask = _mm512_set1_epi8(0x0F);
    let sixteen = _mm512_set1_epi8(16);
    let (scales, mins) = k4_scales(&block[4..16]);
    let high = if FIVE {
        _mm512_broadcast_i64x4(_mm256_loadu_si256(block.as_ptr().add(16) as *const __m256i))
    } else {
        _mm512_setzero_si512()
    };
    let mut values = [[_mm512_setzero_si512(); 2]; 2];
    let mut value_scales = [[_mm512_setzero_si512(); 2]; 2];
    for pair in 0..2 {
        let x = _mm512_loadu_si512(block.as_ptr().add(qs_at + 64 * pair) as *const __m512i);
        let mut lo = _mm512_and_si512(x, mask);
        let mut hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), mask);
        if FIVE {
            let (c0, c1) = (2 * pair, 2 * pair + 1);
            let bits_lo = two_bytes(1 << (2 * c0), 1 << (2 * c1));
            let bits_hi = two_bytes(1 << (2 * c0 + 1), 1 << (2 * c1 + 1));
            lo = _mm512_or_si512(
                lo,
                _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(high, bits_lo), sixteen),
            );
            hi = _mm512_or_si512(
                hi,
                _mm512_maskz_mov_epi8(_mm512_test_epi8_mask(high, bits_hi), sixteen),
            );
        }
        let s = 4 * pair;
        values[pair] = [lo, hi];
        value_scales[pair] = [
            two_scales(scales[s] as i16, scales[s + 2] as i16),
            two_scales(scales[s + 1] as i16, scales[s + 3] as i16),
        ];
    }
    // Each minimum twice, as i16: lane pair s meets the two 16-value sums of sub-block s.
    let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(mins.as_ptr() as *const __m128i));
    let mins = _mm256_set_m128i(
        _mm_unpackhi_epi16(mins, mins),
        _mm_unpacklo_epi16(mins, mins),
    );
    (values, value_scales, mins)
}

/// Scaled integer sums of one unpacked Q4_K/Q5_K block against super-block `b` of `act` (i32
/// lanes), and the minimums weighted by the activation sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4_k_block_sums(
    values: &[[__m512i; 2]; 2],
    value_scales: &[[__m512i; 2]; 2],
    mins: __m256i,
    act: &ActRow<'_>,
    b: usize,
) -> (__m512i, i32) {
    let bsums = _mm256_loadu_si256(act.kbsums.as_ptr().add(b * 16) as *const __m256i);
    let msum = hsum_epi32(_mm256_madd_epi16(bsums, mins));
    let a = act.kqs.as_ptr().add(b * SUPER_BLOCK);
    let mut isum = _mm512_setzero_si512();
    for pair in 0..2 {
        let base = 128 * pair;
        let p_lo = _mm512_maddubs_epi16(values[pair][0], pieces(a, base, base + 64));
        let p_hi = _mm512_maddubs_epi16(values[pair][1], pieces(a, base + 32, base + 96));
        let s_lo = _mm512_madd_epi16(p_lo, value_scales[pair][0]);
        let s_hi = _mm512_madd_epi16(p_hi, value_scales[pair][1]);
        isum = _mm512_add_epi32(isum, _mm512_add_epi32(s_lo, s_hi));
    }
    (isum, msum)
}

/// Byte `low` in the first 32 lanes, `high` in the last 32.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn two_bytes(low: u8, high: u8) -> __m512i {
    _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set1_epi8(low as i8)),
        _mm256_set1_epi8(high as i8),
        1,
    )
}

/// Q6_K row of `nb` super-blocks · Q8_K activation row; both 128-value halves of a block at once.
///
/// # Safety
/// As [`dot_q4_k`], for a Q6_K row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_q6_k(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    dotn_q6_k::<1>(w, nb, [act])[0]
}

/// Q6_K row · `N` Q8_K activation rows, each block unpacked once (see [`dotn_q4_k`]); every
/// result equals [`dot_q6_k`]'s bit for bit.
///
/// # Safety
/// As [`dot_q6_k`], for each of the activation rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dotn_q6_k<const N: usize>(
    w: &[u8],
    nb: usize,
    acts: [ActRow<'_>; N],
) -> [f32; N] {
    let mask = _mm512_set1_epi8(0x0F);
    let indices = q6_k_scale_indices();
    let mut sum = [0f32; N];
    for b in 0..nb {
        let block = &w[b * 210..(b + 1) * 210];
        let (q, sc, scales) = q6_k_unpack(block.as_ptr(), mask, &indices);
        let d = f16_at(block, 208);
        for (i, act) in acts.iter().enumerate() {
            let offset = q6_k_offset(scales, act, b);
            let total = q6_k_block_sum(&q, &sc, act, b) - 32 * offset;
            sum[i] += d * act.kd[b] * total as f32;
        }
    }
    sum
}

/// For piece k of a Q6_K block (sub-blocks (2k, 2k + 1) and (8 + 2k, 9 + 2k)): lane i of the 32
/// i16 lanes takes scale (i / 16) * 8 + 2k + (i % 16) / 8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_scale_indices() -> [__m512i; 4] {
    let index = |k: i16| {
        let mut lanes = [0i16; 32];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = (i as i16 / 16) * 8 + 2 * k + (i as i16 % 16) / 8;
        }
        _mm512_loadu_si512(lanes.as_ptr() as *const __m512i)
    };
    [index(0), index(1), index(2), index(3)]
}

/// The four 64-value pieces of the Q6_K block at `p` (both 128-value halves side by side, values
/// 0..64), the i16 scale of every lane, and the sixteen sub-block scales as i16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_unpack(
    p: *const u8,
    mask: __m512i,
    indices: &[__m512i; 4],
) -> ([__m512i; 4], [__m512i; 4], __m256i) {
    let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
    let bits1 = pieces(p as *const i8, 0, 64);
    let bits2 = pieces(p as *const i8, 32, 96);
    let h = _mm512_loadu_si512(p.add(128) as *const __m512i);
    let h0 = _mm512_slli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(0x03)), 4);
    let h1 = _mm512_slli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(0x0C)), 2);
    let h2 = _mm512_and_si512(h, _mm512_set1_epi8(0x30));
    let h3 = _mm512_srli_epi16(_mm512_and_si512(h, _mm512_set1_epi8(-64)), 2);
    let q = [
        _mm512_or_si512(_mm512_and_si512(bits1, mask), h0),
        _mm512_or_si512(_mm512_and_si512(bits2, mask), h1),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bits1, 4), mask), h2),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(bits2, 4), mask), h3),
    ];
    let wide = _mm512_castsi256_si512(scales);
    let sc = [0, 1, 2, 3].map(|k| _mm512_permutexvar_epi16(indices[k], wide));
    (q, sc, scales)
}

/// Scaled integer sum of one unpacked Q6_K block (values stored plus 32) against super-block
/// `b` of `act`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_block_sum(q: &[__m512i; 4], sc: &[__m512i; 4], act: &ActRow<'_>, b: usize) -> i32 {
    let a = act.kqs.as_ptr().add(b * SUPER_BLOCK);
    let mut isum = _mm512_setzero_si512();
    for k in 0..4 {
        let prod = _mm512_maddubs_epi16(q[k], pieces(a, 32 * k, 128 + 32 * k));
        isum = _mm512_add_epi32(isum, _mm512_madd_epi16(prod, sc[k]));
    }
    _mm512_reduce_add_epi32(isum)
}

/// The Q6_K values are stored plus 32: the activation sums of super-block `b` weighted by the
/// block's sixteen sub-block scales (i16), which 32 times takes the offset back out.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6_k_offset(scales: __m256i, act: &ActRow<'_>, b: usize) -> i32 {
    let bsums = _mm256_loadu_si256(act.kbsums.as_ptr().add(b * 16) as *const __m256i);
    hsum_epi32(_mm256_madd_epi16(bsums, scales))
}
