//! AVX-512 (BW) kernels for the K-quant formats against Q8_K activations: the AVX2 scheme at
//! twice the width, 64 values per `maddubs` (two 32-value pieces of a super-block side by side).
#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

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
    let bytes = if FIVE { 176 } else { 144 };
    let qs_at = if FIVE { 48 } else { 16 };
    let mask = _mm512_set1_epi8(0x0F);
    let sixteen = _mm512_set1_epi8(16);
    let mut acc = _mm512_setzero_ps();
    let mut mins_total = 0f32;
    for b in 0..nb {
        let block = &w[b * bytes..(b + 1) * bytes];
        let (scales, mins) = k4_scales(&block[4..16]);
        let bsums = &act.kbsums[b * 16..(b + 1) * 16];
        let mut msum = 0i32;
        for s in 0..8 {
            msum += mins[s] as i32 * (bsums[2 * s] as i32 + bsums[2 * s + 1] as i32);
        }
        let a = act.kqs.as_ptr().add(b * SUPER_BLOCK);
        let high = if FIVE {
            _mm512_broadcast_i64x4(_mm256_loadu_si256(block.as_ptr().add(16) as *const __m256i))
        } else {
            _mm512_setzero_si512()
        };
        let mut isum = _mm512_setzero_si512();
        for pair in 0..2 {
            // Chunks 2 pair and 2 pair + 1 (32 bytes each) side by side.
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
            let base = 128 * pair;
            let p_lo = _mm512_maddubs_epi16(lo, pieces(a, base, base + 64));
            let p_hi = _mm512_maddubs_epi16(hi, pieces(a, base + 32, base + 96));
            let s = 4 * pair;
            let s_lo = _mm512_madd_epi16(p_lo, two_scales(scales[s] as i16, scales[s + 2] as i16));
            let s_hi =
                _mm512_madd_epi16(p_hi, two_scales(scales[s + 1] as i16, scales[s + 3] as i16));
            isum = _mm512_add_epi32(isum, _mm512_add_epi32(s_lo, s_hi));
        }
        let da = act.kd[b];
        acc = _mm512_fmadd_ps(
            _mm512_set1_ps(f16_at(block, 0) * da),
            _mm512_cvtepi32_ps(isum),
            acc,
        );
        mins_total += f16_at(block, 2) * da * msum as f32;
    }
    _mm512_reduce_add_ps(acc) - mins_total
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
    let mask = _mm512_set1_epi8(0x0F);
    // Piece k of both halves covers sub-blocks (2k, 2k + 1) and (8 + 2k, 9 + 2k): lane i of the
    // 32 i16 lanes takes scale (i / 16) * 8 + 2k + (i % 16) / 8.
    let index = |k: i16| {
        let mut lanes = [0i16; 32];
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = (i as i16 / 16) * 8 + 2 * k + (i as i16 % 16) / 8;
        }
        _mm512_loadu_si512(lanes.as_ptr() as *const __m512i)
    };
    let indices = [index(0), index(1), index(2), index(3)];
    let mut sum = 0f32;
    for b in 0..nb {
        let block = &w[b * 210..(b + 1) * 210];
        let p = block.as_ptr();
        let scales_i8 = &block[192..208];
        let bsums = &act.kbsums[b * 16..(b + 1) * 16];
        let mut offset = 0i32;
        for s in 0..16 {
            offset += scales_i8[s] as i8 as i32 * bsums[s] as i32;
        }
        let scales = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128(
            p.add(192) as *const __m128i
        )));
        let a = act.kqs.as_ptr().add(b * SUPER_BLOCK);
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
        let mut isum = _mm512_setzero_si512();
        for (k, &q) in q.iter().enumerate() {
            let prod = _mm512_maddubs_epi16(q, pieces(a, 32 * k, 128 + 32 * k));
            let sc = _mm512_permutexvar_epi16(indices[k], scales);
            isum = _mm512_add_epi32(isum, _mm512_madd_epi16(prod, sc));
        }
        let total = _mm512_reduce_add_epi32(isum) - 32 * offset;
        sum += f16_at(block, 208) * act.kd[b] * total as f32;
    }
    sum
}
