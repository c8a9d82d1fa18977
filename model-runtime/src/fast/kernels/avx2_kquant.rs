//! AVX2 kernels (with FMA and F16C) for the K-quant formats against Q8_K activations: 32 values
//! per `maddubs`, sub-block scales applied by `madd`, one f32 step per super-block.
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::avx2::hsum256;
use super::{f16_at, k4_scales, ActRow, SUPER_BLOCK};

/// Q4_K (`FIVE` false) or Q5_K (`FIVE` true) row of `nb` super-blocks · Q8_K activation row.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `w` holds `nb` blocks of the format and `act` has a
/// Q8_K form of `nb` super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4_k<const FIVE: bool>(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let bytes = if FIVE { 176 } else { 144 };
    let qs_at = if FIVE { 48 } else { 16 };
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut mins_total = 0f32;
    for b in 0..nb {
        let block = &w[b * bytes..(b + 1) * bytes];
        let (scales, mins) = k4_scales(&block[4..16]);
        // Each minimum twice, as i16, against the two 16-value sums of its sub-block.
        let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(mins.as_ptr() as *const __m128i));
        let mins = _mm256_set_m128i(
            _mm_unpackhi_epi16(mins, mins),
            _mm_unpacklo_epi16(mins, mins),
        );
        let bsums = _mm256_loadu_si256(act.kbsums.as_ptr().add(b * 16) as *const __m256i);
        let msum = hsum_epi32(_mm256_madd_epi16(bsums, mins));
        let a = act.kqs.as_ptr().add(b * SUPER_BLOCK) as *const __m256i;
        let q = block.as_ptr().add(qs_at) as *const __m256i;
        let high = if FIVE {
            _mm256_loadu_si256(block.as_ptr().add(16) as *const __m256i)
        } else {
            _mm256_setzero_si256()
        };
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            let x = _mm256_loadu_si256(q.add(c));
            let mut lo = _mm256_and_si256(x, mask);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), mask);
            if FIVE {
                // Bit 2c of each qh byte is the fifth bit of the low nibble, bit 2c + 1 of the
                // high one: move it to bit 4.
                let bit = _mm256_set1_epi8(1 << (2 * c));
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit);
                lo = _mm256_or_si256(lo, _mm256_and_si256(set, _mm256_set1_epi8(16)));
                let bit = _mm256_set1_epi8(1 << (2 * c + 1));
                let set = _mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit);
                hi = _mm256_or_si256(hi, _mm256_and_si256(set, _mm256_set1_epi8(16)));
            }
            let p_lo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(a.add(2 * c)));
            let p_hi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(a.add(2 * c + 1)));
            let s_lo = _mm256_madd_epi16(p_lo, _mm256_set1_epi16(scales[2 * c] as i16));
            let s_hi = _mm256_madd_epi16(p_hi, _mm256_set1_epi16(scales[2 * c + 1] as i16));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(s_lo, s_hi));
        }
        let da = act.kd[b];
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(f16_at(block, 0) * da),
            _mm256_cvtepi32_ps(isum),
            acc,
        );
        mins_total += f16_at(block, 2) * da * msum as f32;
    }
    hsum256(acc) - mins_total
}

/// Q6_K row of `nb` super-blocks · Q8_K activation row.
///
/// # Safety
/// As [`dot_q4_k`], for a Q6_K row.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q6_k(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let block = &w[b * 210..(b + 1) * 210];
        let scales = &block[192..208];
        // The values are stored plus 32: take 32 times the scaled sums back out.
        let bsums = _mm256_loadu_si256(act.kbsums.as_ptr().add(b * 16) as *const __m256i);
        let scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(scales.as_ptr() as *const __m128i));
        let offset = hsum_epi32(_mm256_madd_epi16(bsums, scales16));
        let a = act.kqs.as_ptr().add(b * SUPER_BLOCK) as *const __m256i;
        let mut isum = _mm256_setzero_si256();
        for half in 0..2 {
            let ql = block.as_ptr().add(64 * half) as *const __m256i;
            let bits1 = _mm256_loadu_si256(ql);
            let bits2 = _mm256_loadu_si256(ql.add(1));
            let h = _mm256_loadu_si256(block.as_ptr().add(128 + 32 * half) as *const __m256i);
            let h0 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0C)), 2);
            let h2 = _mm256_and_si256(h, _mm256_set1_epi8(0x30));
            let h3 = _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(-64)), 2);
            let q = [
                _mm256_or_si256(_mm256_and_si256(bits1, mask), h0),
                _mm256_or_si256(_mm256_and_si256(bits2, mask), h1),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), mask), h2),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), mask), h3),
            ];
            for (k, &q) in q.iter().enumerate() {
                let p = _mm256_maddubs_epi16(q, _mm256_loadu_si256(a.add(4 * half + k)));
                let s = 8 * half + 2 * k;
                let sc = _mm256_set_m128i(
                    _mm_set1_epi16(scales[s + 1] as i8 as i16),
                    _mm_set1_epi16(scales[s] as i8 as i16),
                );
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, sc));
            }
        }
        let isum = _mm256_sub_epi32(isum, _mm256_setr_epi32(32 * offset, 0, 0, 0, 0, 0, 0, 0));
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(f16_at(block, 208) * act.kd[b]),
            _mm256_cvtepi32_ps(isum),
            acc,
        );
    }
    hsum256(acc)
}

/// Sum of eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_epi32(x: __m256i) -> i32 {
    let four = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    let two = _mm_add_epi32(four, _mm_shuffle_epi32(four, 0b01_00_11_10));
    let one = _mm_add_epi32(two, _mm_shuffle_epi32(two, 0b10_11_00_01));
    _mm_cvtsi128_si32(one)
}
