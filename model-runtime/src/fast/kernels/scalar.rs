//! Portable reference kernels: one block at a time, integer block products, f32 accumulation
//! in block order.

use super::{act_offset, f16_at, q8_0_weight_offset, ActRow, BLOCK};

/// Q4_1 row (`nb` blocks) · activation row.
pub(super) fn dot_q4_1(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let qs = &w[b * 16..b * 16 + 16];
        let mut isum = 0i32;
        for (j, &byte) in qs.iter().enumerate() {
            isum += (byte & 0x0F) as i32 * act.qs[act_offset(b, j)] as i32;
            isum += (byte >> 4) as i32 * act.qs[act_offset(b, j + 16)] as i32;
        }
        let d = f16_at(w, nb * 16 + 2 * b);
        let m = f16_at(w, nb * 18 + 2 * b);
        acc += d * act.d[b] * isum as f32 + m * act.s[b];
    }
    acc
}

/// Q8_0 row (`nb` blocks) · activation row.
pub(super) fn dot_q8_0(w: &[u8], nb: usize, act: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    for b in 0..nb {
        let mut isum = 0i32;
        for j in 0..BLOCK {
            let q = w[q8_0_weight_offset(nb, b, j)] as i32 - 128;
            isum += q * act.qs[act_offset(b, j)] as i32;
        }
        let d = f16_at(w, nb * 32 + 2 * b);
        acc += d * act.d[b] * isum as f32;
    }
    acc
}
